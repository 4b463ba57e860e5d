/** @module The {@linkcode ModelRegistry}: lookup by name or alias, suggestions, pricing, caps. */
import { editDistance } from "./edit_distance.ts";
import { parseModelsFile } from "./models_file.ts";

/** What a model produces. The keys under `models:` in `models.yaml`. */
export type Modality = "text" | "image" | "video" | "audio";

/** One model of the registry. Frozen. */
export interface ModelEntry {
  /** The `poe_name`, exactly as written: the name sent to Poe. */
  readonly id: string;
  readonly modality: Modality;
  /** Point estimate: base points per message, or null when not given. */
  readonly base: number | null;
  /**
   * Point estimate per 1,000 tokens of the conversation (of a media model: of the newest user
   * message's text, see {@linkcode isMedia}), or null when not given.
   */
  readonly per1kTokens: number | null;
  /**
   * Point estimate per 1,000 answer tokens, when they cost more; null: `per1kTokens` applies to a
   * text model's answer, and a media model's answer (a URL) is not priced.
   */
  readonly per1kOutputTokens: number | null;
  /** This proxy's context cap for the model, in tokens, or null when not given. */
  readonly maxTokens: number | null;
  /** Other names clients may use, as written. */
  readonly aliases: readonly string[];
  /**
   * Names (`poe_name`s) to suggest when a message costs too much, as the file lists them: those of
   * another modality or never cheaper are left out of suggestions (see
   * {@linkcode ModelRegistry.cheaperFaults}).
   */
  readonly cheaper: readonly string[];
  /** `cheaper: []` written in the file: no model is suggested instead (a music model for speech). */
  readonly noCheaper?: boolean;
}

/** A name of a `cheaper:` list that is never suggested, and why. */
export interface CheaperFault {
  /** The model whose list names it. */
  readonly model: ModelEntry;
  /** The model it names. */
  readonly listed: ModelEntry;
  /**
   * `modality`: it makes something else (an image model offered for a text model); `dearer`: its
   * estimate is at least the model's own for any request.
   */
  readonly reason: "modality" | "dearer";
}

/** What {@linkcode ModelRegistry.standIn} found: the dearest priced model and its estimate. */
export interface StandIn {
  /** Its `poe_name`. */
  readonly id: string;
  readonly estimate: PointEstimate;
}

/** The `defaults:` section of `models.yaml`. */
export interface RegistryDefaults {
  /** Context cap for text models without their own `max_tokens`, or null for none. */
  readonly textMaxTokens: number | null;
}

/** Answer tokens a model's `base` points cover: a typical answer. */
export const ANSWER_IN_BASE = 1000;

/** A point estimate from {@linkcode ModelRegistry.estimatePoints}; exact values, not rounded. */
export interface PointEstimate {
  /** `base + tokens`. */
  readonly points: number;
  /** The per-message part. */
  readonly base: number;
  /** The per-token part: input and answer tokens at their prices per 1,000. */
  readonly tokens: number;
}

/** The registry of models loaded from `models.yaml`. Immutable; lookups are O(1). */
export class ModelRegistry {
  /** The `defaults:` section. */
  readonly defaults: RegistryDefaults;
  #entries: readonly ModelEntry[];
  #byName: ReadonlyMap<string, ModelEntry>;
  /** Each `cheaper:` list less its faults; models without a list (or with faults only) absent. */
  readonly #cheaper = new Map<ModelEntry, readonly ModelEntry[]>();
  readonly #faults: CheaperFault[] = [];

  private constructor(entries: readonly ModelEntry[], defaults: RegistryDefaults) {
    this.defaults = Object.freeze({ ...defaults });
    this.#entries = Object.freeze([...entries]);
    const byName = new Map<string, ModelEntry>();
    for (const e of entries) {
      for (const name of [e.id, ...e.aliases]) byName.set(name.toLowerCase(), e);
    }
    this.#byName = byName;
    for (const model of entries) {
      const kept: ModelEntry[] = [];
      for (const name of model.cheaper) {
        const listed = byName.get(name.toLowerCase())!;
        const reason = listed.modality !== model.modality
          ? "modality"
          : this.#neverCheaper(listed, model)
          ? "dearer"
          : null;
        if (reason === null) kept.push(listed);
        else this.#faults.push(Object.freeze({ model, listed, reason }));
      }
      if (kept.length > 0) this.#cheaper.set(model, Object.freeze(kept));
    }
    Object.freeze(this.#faults);
  }

  /**
   * Parses and validates the text of a `models.yaml` with {@linkcode parseModelsFile}.
   *
   * @param text The file's contents.
   * @param source The name used in error messages, such as `models.yaml` or its path.
   * @throws {ModelsError} (from `models_file.ts`) When the file is invalid: see
   * {@linkcode parseModelsFile}.
   */
  static parse(text: string, source: string): ModelRegistry {
    const file = parseModelsFile(text, source);
    return new ModelRegistry(file.entries, file.defaults);
  }

  /** The number of models. */
  get size(): number {
    return this.#entries.length;
  }

  /** All models, in file order. */
  list(): readonly ModelEntry[] {
    return this.#entries;
  }

  /** The model with this `poe_name` or alias, compared case-insensitively. */
  lookup(name: string): ModelEntry | undefined {
    return this.#byName.get(name.toLowerCase());
  }

  /** The context cap for a model: see {@linkcode contextCapOf}. */
  contextCap(entry: ModelEntry): number | null {
    return contextCapOf(entry.maxTokens, this.defaults.textMaxTokens, entry.modality);
  }

  /**
   * Up to `limit` model ids close to an unknown name, best first, for "model not found" messages:
   * names or aliases that contain it (or that it contains), then small edit distances.
   *
   * @param limit Default: 3.
   */
  suggest(name: string, limit = 3): string[] {
    const query = name.toLowerCase().trim();
    if (query.length === 0 || query.length > 64 || limit <= 0) return [];
    const best = new Map<ModelEntry, { tier: number; distance: number }>();
    const maxDistance = Math.max(1, Math.min(4, Math.floor(query.length / 3)));
    for (const [key, entry] of this.#byName) {
      const [short, long] = key.length < query.length ? [key, query] : [query, key];
      const contained = short.length >= 3 && long.includes(short);
      const distance = editDistance(query, key, contained ? Infinity : maxDistance);
      if (!contained && distance > maxDistance) continue;
      const tier = contained ? 0 : 1;
      const seen = best.get(entry);
      if (!seen || tier < seen.tier || (tier === seen.tier && distance < seen.distance)) {
        best.set(entry, { tier, distance });
      }
    }
    const order = new Map(this.#entries.map((e, i) => [e, i]));
    return [...best]
      .sort(([a, x], [b, y]) =>
        x.tier - y.tier || x.distance - y.distance || order.get(a)! - order.get(b)!
      )
      .slice(0, limit)
      .map(([e]) => e.id);
  }

  /**
   * The estimated points of one message: `base + per_1k_tokens * inputTokens / 1000 +
   * per_1k_output_tokens * (outputTokens - 1000) / 1000`. `base` covers a typical answer of up to
   * {@linkcode ANSWER_IN_BASE} tokens; longer answers pay the rest at the answer price
   * (`per_1k_tokens` when none is given), and without a base every answer token does. A media
   * model's answer tokens are priced only with an explicit `per_1k_output_tokens`: its answer is a
   * link, whatever `max_tokens` a request asks for. A missing part counts as 0; null when the
   * model has no price at all. Only used until Poe's Usage API reports the real cost, and by the
   * cost cap (with the answer tokens a request may produce).
   *
   * @param inputTokens Prompt tokens (or all tokens, when they are not told apart); negative or
   * non-finite counts as 0, as for `outputTokens`.
   */
  estimatePoints(entry: ModelEntry, inputTokens: number, outputTokens = 0): PointEstimate | null {
    if (entry.base === null && entry.per1kTokens === null && entry.per1kOutputTokens === null) {
      return null;
    }
    const count = (n: number) => Number.isFinite(n) && n > 0 ? n : 0;
    const base = entry.base ?? 0;
    const perIn = entry.per1kTokens ?? 0;
    const perOut = entry.per1kOutputTokens ?? (entry.modality === "text" ? perIn : 0);
    const beyondBase = count(outputTokens) - (entry.base === null ? 0 : ANSWER_IN_BASE);
    const tokens = (perIn * count(inputTokens) + perOut * Math.max(0, beyondBase)) / 1000;
    return { points: base + tokens, base, tokens };
  }

  /**
   * The most answer tokens whose estimate, with `inputTokens`, stays within `points` (0 when none
   * does); null when answer tokens cost nothing here (no price, a flat price, a media model).
   */
  answerTokensWithin(entry: ModelEntry, inputTokens: number, points: number): number | null {
    const perOut = entry.per1kOutputTokens ?? (entry.modality === "text" ? entry.per1kTokens : 0);
    if (perOut === null || !(perOut > 0)) return null;
    const left = points - this.estimatePoints(entry, inputTokens, 0)!.points;
    if (left < 0) return 0;
    return Math.floor((entry.base === null ? 0 : ANSWER_IN_BASE) + left * 1000 / perOut);
  }

  /**
   * Names to suggest instead of a model that costs too much: its `cheaper` list when set, less the
   * names of {@linkcode cheaperFaults} and those whose estimate for these tokens is not lower (a
   * model without a price, on either side, is kept: it cannot be compared), in the list's order;
   * else, or when none of the list is left, models of the same modality whose estimate for the
   * same tokens is lower, cheapest first. Either way, no model whose context cap cannot hold
   * `inputTokens` (it would drop the start of the conversation that was priced), nor, with
   * `maxPoints`, one whose estimate is over it (`MAX_POINTS_PER_MESSAGE` would refuse it too).
   * None for a model whose list is written empty (`cheaper: []`).
   *
   * @param limit Default: 3.
   */
  cheaperThan(
    entry: ModelEntry,
    inputTokens: number,
    outputTokens = 0,
    limit = 3,
    maxPoints = 0,
  ): string[] {
    if (limit <= 0 || entry.noCheaper) return [];
    const own = this.estimatePoints(entry, inputTokens, outputTokens);
    /** The estimate of a model that may be suggested, null when it has no price; false: not. */
    const fits = (other: ModelEntry): { points: number } | null | false => {
      const cap = this.contextCap(other);
      if (cap !== null && cap < inputTokens) return false;
      const estimate = this.estimatePoints(other, inputTokens, outputTokens);
      if (estimate === null) return null;
      if (maxPoints > 0 && estimate.points > maxPoints) return false;
      return own === null || estimate.points < own.points ? estimate : false;
    };
    const listed = this.#cheaper.get(entry)?.filter((other) => fits(other) !== false) ?? [];
    if (listed.length > 0) return listed.slice(0, limit).map((e) => e.id);
    if (own === null) return [];
    const cheaper: { id: string; points: number }[] = [];
    for (const other of this.#entries) {
      if (other === entry || other.modality !== entry.modality) continue;
      const estimate = fits(other);
      if (estimate) cheaper.push({ id: other.id, points: estimate.points });
    }
    // Array.prototype.sort is stable: equal estimates keep file order.
    return cheaper.sort((a, b) => a.points - b.points).slice(0, limit).map((c) => c.id);
  }

  /**
   * The names of `cheaper:` lists that are never suggested, in file order: a model of another
   * modality, or one whose estimate is at least the model's own for any request. Logged at startup
   * and on each reload.
   */
  cheaperFaults(): readonly CheaperFault[] {
    return this.#faults;
  }

  /**
   * For a model without a price, the dearest model of its modality that has one, by its estimate
   * for these tokens: what a request to it may cost at most, as far as `models.yaml` can tell.
   * Null for a model with a price, or when no model of its modality has one.
   */
  standIn(entry: ModelEntry, inputTokens: number, outputTokens = 0): StandIn | null {
    if (this.estimatePoints(entry, 0) !== null) return null;
    let dearest: StandIn | null = null;
    for (const other of this.#entries) {
      if (other.modality !== entry.modality) continue;
      const estimate = this.estimatePoints(other, inputTokens, outputTokens);
      if (estimate !== null && (dearest === null || estimate.points > dearest.estimate.points)) {
        dearest = { id: other.id, estimate };
      }
    }
    return dearest;
  }

  /**
   * Whether `other` never costs less than `model`, for any tokens in and out (false when either has
   * no price). Each estimate is linear in the input tokens, and in the answer tokens up to
   * {@linkcode ANSWER_IN_BASE} and beyond it, so the difference is nowhere negative when it is not
   * at no tokens and at that bend, and it grows with more of either.
   */
  #neverCheaper(other: ModelEntry, model: ModelEntry): boolean {
    const diff = (input: number, output: number) => {
      const a = this.estimatePoints(other, input, output);
      const b = this.estimatePoints(model, input, output);
      return a && b ? a.points - b.points : NaN;
    };
    const atNothing = diff(0, 0);
    const atBend = diff(0, ANSWER_IN_BASE);
    return atNothing >= 0 && atBend >= 0 && diff(1000, 0) >= atNothing &&
      diff(0, 2 * ANSWER_IN_BASE) >= atBend;
  }
}

/**
 * Whether a model makes images, video or audio. Such a model is priced per item (`base`), and a
 * text-to-speech one also by the text it reads (`per_1k_tokens`): the newest user message, which
 * is what the bot acts on, not the chat before it (never clipped for media models, so pricing it
 * would refuse a short request after a long chat). Its answer is a link: `max_tokens` does not
 * change its price.
 */
export function isMedia(entry: ModelEntry): boolean {
  return entry.modality !== "text";
}

/**
 * The context cap of a model: its own `max_tokens` when set (above 0), else
 * `defaults.text_max_tokens`, so one model can be given more or less than the rest; text models
 * only. Null means no cap.
 */
export function contextCapOf(
  modelMaxTokens: number | null,
  defaultTextMaxTokens: number | null,
  modality: string,
): number | null {
  if (modality !== "text") return null;
  if (modelMaxTokens !== null && modelMaxTokens > 0) return modelMaxTokens;
  return defaultTextMaxTokens !== null && defaultTextMaxTokens > 0 ? defaultTextMaxTokens : null;
}
