/** @module Pairing of finished answers with the `points_history` entries that record their cost. */
import { breakdownTokens, type PointsEntry } from "./usage_api.ts";

/** Prompt and completion token counts of an answer or of an entry's cost breakdown. */
export interface TokenCounts {
  prompt: number;
  completion: number;
}

/** What {@linkcode pairEntries} needs to know about an answer looking for its entry. */
export interface PairableAnswer {
  /** The model name sent to Poe, lower-case; compared with `bot_name` lower-cased. */
  readonly model: string;
  /** Entries created before this, in µs since the epoch, are not its own. */
  readonly startedAtUs: number;
  /** The answer's token counts, when Poe reported them; a matching entry is preferred. */
  readonly tokens: TokenCounts | null;
  /**
   * The prompt count of an answer Poe reported no answer tokens for (a tool call, whose tokens
   * Poe bills all the same): an entry of that prompt count, the only one of its model since the
   * answer's start, is its own, when no other answer of its model has that count.
   */
  readonly promptTokens?: number | null;
  /** When its request arrived, in milliseconds on this machine's clock. */
  readonly arrivedAt: number;
  /**
   * When Poe was done with it, at the latest, in milliseconds on this machine's clock: when the
   * proxy saw the answer end. Infinity when unknown: its client left, and Poe may bill the answer
   * when it notices, or write it to the end first.
   */
  readonly finishedAt: number;
}

/** Options of {@linkcode pairEntries}. */
export interface PairOptions<A extends PairableAnswer> {
  /**
   * Whether every entry since the answer's start was read. Answers of a model are paired by order
   * only when each of them is covered: the entries are counted. Token matches do not need it.
   */
  covered: (answer: A) => boolean;
  /**
   * Whether the answer waits in the foreground; such answers get token matches first.
   * Default: none waits.
   */
  waiting?: (answer: A) => boolean;
  /** Entries already attributed, by `query_id`; they are never paired again. Default: none. */
  claimed?: { has(queryId: string): boolean };
  /**
   * The `api_key_name` of this proxy's own entries, once known: entries of the account's other
   * keys (another app spending the same points) are paired only by their token counts (not at all
   * with `keyNameConfigured`), never by order. Default: none set apart.
   */
  keyName?: string | null;
  /**
   * Whether `keyName` was configured (`POE_API_KEY_NAME`) rather than learnt: entries of other
   * keys are then never paired, not even by their token counts. Default: false.
   */
  keyNameConfigured?: boolean;
  /**
   * With a configured `keyName`: called for an answer left without an entry whose token counts
   * match an entry of another key, a sign that the configured name may be wrong.
   */
  onOtherKey?: (answer: A, entry: PointsEntry) => void;
  /**
   * Whether a request of this model (lower-case) is still running at Poe and was sent before the
   * entries were read: Poe may bill an answer before the proxy sees it end, so one of them may be
   * its own, and no answer of that model is paired by order. Default: none runs.
   */
  busy?: (model: string) => boolean;
}

interface Candidate {
  entry: PointsEntry;
  taken: boolean;
  /** Made by another key than the configured one: never paired, only noticed. */
  foreign: boolean;
}

/** Entries already attributed, by `query_id`, forgetting the oldest past `max`. */
export class ClaimedEntries {
  readonly #max: number;
  readonly #ids = new Set<string>();
  /** Claims in the order made, as a ring: the slot to fill next holds the oldest. */
  readonly #order: (string | undefined)[];
  #next = 0;

  /** Remembers at most `max` entries. Default: 20,000. */
  constructor(max = 20_000) {
    this.#max = Math.max(1, max);
    this.#order = new Array(this.#max);
  }

  /** How many entries are remembered. */
  get size(): number {
    return this.#ids.size;
  }

  /** Whether the entry with this `query_id` was claimed (and not yet forgotten). */
  has(queryId: string): boolean {
    return this.#ids.has(queryId);
  }

  /** Claims an entry; past `max`, the oldest claim is forgotten. */
  add(queryId: string): void {
    if (this.#ids.has(queryId)) return;
    const oldest = this.#order[this.#next];
    if (oldest !== undefined) this.#ids.delete(oldest);
    this.#order[this.#next] = queryId;
    this.#next = (this.#next + 1) % this.#max;
    this.#ids.add(queryId);
  }
}

function tokenKey(model: string, tokens: TokenCounts): string {
  return `${model}\n${tokens.prompt}\n${tokens.completion}`;
}

function oldestFirst(a: Candidate, b: Candidate): number {
  return a.entry.creation_time - b.entry.creation_time;
}

function ascending(a: number, b: number): number {
  return a - b;
}

/** How many values of `sorted` (ascending) are below `x`, or with `orEqual`, at most `x`. */
function countBelow(sorted: readonly number[], x: number, orEqual = false): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < x || (orEqual && sorted[mid] === x)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Whether two answers overlapped in time: neither was over before the other arrived. Their
 * entries may then be in either order (Poe may stamp an entry when it receives the request or
 * when it is done), and an answer whose end is unknown overlaps every later one.
 */
export function overlap(
  a: Pick<PairableAnswer, "arrivedAt" | "finishedAt">,
  b: Pick<PairableAnswer, "arrivedAt" | "finishedAt">,
): boolean {
  return a.finishedAt >= b.arrivedAt && b.finishedAt >= a.arrivedAt;
}

/**
 * Pairs answers with unclaimed entries of usage type `API` and of their model, created since each
 * answer started. First by tokens: an entry whose token breakdown equals the answer's tokens.
 * Then by order, only where the order leaves no doubt ({@linkcode pairByOrder}): an answer that
 * overlapped no other one of its model still looking, when there are exactly as many entries as
 * answers. One answer and one new entry are paired; two answers that ran at the same time with
 * no token counts are not, nor an answer whose client left (it may never be billed) and a later
 * one: each keeps its estimate rather than maybe the other's cost. Entries with a negative
 * `cost_points` are skipped; those with 0 (not final) are paired by order only, and the caller
 * decides what to do with them. Each entry goes to one answer at most. Entries of another key
 * than `keyName` are never paired by order, nor at all when that name was configured.
 *
 * Entries are grouped by model (and by token counts) once, so pairing costs about answers +
 * entries, not their product. Token matches go to waiting answers first: entries with the same
 * model and tokens cost the same, and an answer watched in the background must not take the entry
 * a waiting answer needs (each answer after it would then wait for the next one's).
 *
 * @returns the entry found for each answer paired; answers left out found none.
 */
export function pairEntries<A extends PairableAnswer>(
  answers: readonly A[],
  entries: readonly PointsEntry[],
  options: PairOptions<A>,
): Map<A, PointsEntry> {
  const { covered, waiting = () => false, claimed, keyName, keyNameConfigured, onOtherKey, busy } =
    options;
  const assigned = new Map<A, PointsEntry>();
  if (answers.length === 0 || entries.length === 0) return assigned;
  const models = new Set<string>();
  // Entries older than every answer belong to none: skipped before any string is looked at.
  let oldest = Infinity;
  for (const a of answers) {
    models.add(a.model);
    if (a.startedAtUs < oldest) oldest = a.startedAtUs;
  }
  const byModel = new Map<string, Candidate[]>();
  const byTokens = new Map<string, Candidate[]>();
  for (const e of entries) {
    if (e.creation_time < oldest || e.cost_points < 0) continue;
    if (e.usage_type !== "API" && e.usage_type.toUpperCase() !== "API") continue;
    const model = e.bot_name.toLowerCase();
    if (!models.has(model) || claimed?.has(e.query_id)) continue;
    // Another key's entry is never taken by order alone; unless the name was configured, a token
    // match may still take it, so a renamed key is seen (and learnt) again.
    const otherKey = !!keyName && typeof e.api_key_name === "string" &&
      e.api_key_name !== keyName;
    const foreign = otherKey && keyNameConfigured === true;
    if (foreign && !onOtherKey) continue;
    const c: Candidate = { entry: e, taken: false, foreign };
    if (!otherKey) {
      let list = byModel.get(model);
      if (!list) byModel.set(model, list = []);
      list.push(c);
    }
    if (e.cost_points === 0) continue;
    const t = breakdownTokens(e);
    if (t === null) continue;
    const key = tokenKey(model, t);
    let same = byTokens.get(key);
    if (!same) byTokens.set(key, same = []);
    same.push(c);
  }
  for (const list of byModel.values()) list.sort(oldestFirst);
  for (const list of byTokens.values()) list.sort(oldestFirst);
  // Answers whose tokens only another key's entry matches, with that entry.
  const otherKeyMatch = new Map<A, PointsEntry>();
  if (byTokens.size > 0) {
    for (const first of [true, false]) {
      for (const a of answers) {
        if (!a.tokens || waiting(a) !== first) continue;
        const list = byTokens.get(tokenKey(a.model, a.tokens));
        for (const c of list ?? []) {
          if (c.taken || c.entry.creation_time < a.startedAtUs) continue;
          if (c.foreign) {
            if (!otherKeyMatch.has(a)) otherKeyMatch.set(a, c.entry);
            continue;
          }
          c.taken = true;
          assigned.set(a, c.entry);
          break;
        }
      }
    }
  }
  if (byModel.size > 0) pairByPrompt(answers, byModel, assigned);
  if (byModel.size > 0) {
    const unpaired = new Map<string, A[]>();
    for (const a of answers) {
      if (assigned.has(a) || !byModel.has(a.model)) continue;
      let group = unpaired.get(a.model);
      if (!group) unpaired.set(a.model, group = []);
      group.push(a);
    }
    for (const [model, group] of unpaired) {
      if (busy?.(model)) continue;
      pairByOrder(group, byModel.get(model)!, covered, assigned);
    }
  }
  for (const [a, e] of otherKeyMatch) {
    if (!assigned.has(a)) onOtherKey!(a, e);
  }
  return assigned;
}

/**
 * Pairs the answers known by their prompt count alone (`promptTokens`): two agents' tool calls at
 * once are never paired by order. Only where neither side is in doubt: one answer of the model
 * with that count, and one unclaimed entry of it since the answer's start.
 */
function pairByPrompt<A extends PairableAnswer>(
  answers: readonly A[],
  byModel: ReadonlyMap<string, Candidate[]>,
  assigned: Map<A, PointsEntry>,
): void {
  for (const a of answers) {
    const prompt = a.promptTokens;
    if (prompt == null || a.tokens || assigned.has(a)) continue;
    const rivals = answers.some((b) =>
      b !== a && b.model === a.model && (b.promptTokens ?? b.tokens?.prompt) === prompt
    );
    if (rivals) continue;
    let match: Candidate | null = null;
    let count = 0;
    for (const c of byModel.get(a.model) ?? []) {
      if (c.taken || c.entry.cost_points <= 0 || c.entry.creation_time < a.startedAtUs) continue;
      if (breakdownTokens(c.entry)?.prompt !== prompt) continue;
      match = c;
      count++;
    }
    if (count !== 1) continue;
    match!.taken = true;
    assigned.set(a, match!.entry);
  }
}

/**
 * Pairs by order the answers of one model that no token match paired, where the order is sure.
 * Every entry since the oldest answer's start must have been read (`covered`), and there must be
 * exactly as many of those entries left as answers: each answer billed once and shown, none of
 * someone else. Then an answer that overlapped no other one (each other was over before it
 * arrived, or arrived after it was over) has the entry of its rank: as many older entries as
 * answers over before it arrived. Answers that overlapped keep no entry, as their entries could
 * be in either order; so does the whole group when an entry of that rank is older than its
 * answer's start, or records other token counts than its answer's (the count was wrong).
 */
function pairByOrder<A extends PairableAnswer>(
  group: readonly A[],
  list: readonly Candidate[],
  covered: (answer: A) => boolean,
  assigned: Map<A, PointsEntry>,
): void {
  let from = Infinity;
  for (const a of group) {
    if (!covered(a)) return;
    if (a.startedAtUs < from) from = a.startedAtUs;
  }
  const left: Candidate[] = [];
  for (const c of list) {
    if (!c.taken && c.entry.creation_time >= from) left.push(c);
  }
  const n = group.length;
  if (left.length !== n) return;
  const arrivals = group.map((a) => a.arrivedAt).sort(ascending);
  // An end before the arrival (this machine's clock stepped back) counts as the arrival.
  const end = (a: A) => Math.max(a.arrivedAt, a.finishedAt);
  const ends = group.map(end).sort(ascending);
  const found: [A, Candidate][] = [];
  for (const a of group) {
    const before = countBelow(ends, a.arrivedAt);
    const after = n - countBelow(arrivals, end(a), true);
    if (before + after !== n - 1) continue;
    const c = left[before];
    if (c.entry.creation_time < a.startedAtUs || contradicts(a, c.entry)) return;
    found.push([a, c]);
  }
  for (const [a, c] of found) {
    c.taken = true;
    assigned.set(a, c.entry);
  }
}

/** Whether an entry's cost breakdown names other token counts than an answer's own. */
function contradicts(answer: PairableAnswer, entry: PointsEntry): boolean {
  const { tokens, promptTokens } = answer;
  if (tokens === null && promptTokens == null) return false;
  const t = breakdownTokens(entry);
  if (t === null) return false;
  return tokens !== null
    ? t.prompt !== tokens.prompt || t.completion !== tokens.completion
    : t.prompt !== promptTokens;
}
