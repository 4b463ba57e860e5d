/**
 * @module The text of `models.yaml` read and validated into models and defaults; every error names
 * the path of what failed and, when it can, its line and column.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document } from "yaml";
import { editDistance } from "./edit_distance.ts";
import type { Modality, ModelEntry, RegistryDefaults } from "./models.ts";

/** The modalities in the order `models.yaml` documents them. */
export const MODALITIES: readonly Modality[] = ["text", "image", "video", "audio"];

/** Options of a {@linkcode ModelsError}. */
export interface ModelsErrorOptions {
  /** The path of the offending value, such as `models.text[3].per_1k_tokens`. Default: null. */
  path?: string | null;
  /** 1-based line in the source. Default: null. */
  line?: number | null;
  /** 1-based column in the source. Default: null. */
  column?: number | null;
}

/**
 * A `models.yaml` that cannot be loaded. The message names the source, then what failed and the
 * value: `Cannot load models.yaml: models.text[3].per_1k_tokens must be a number: got "ten"
 * (models.yaml:12:20)`.
 */
export class ModelsError extends Error {
  readonly source: string;
  readonly path: string | null;
  readonly line: number | null;
  readonly column: number | null;

  constructor(source: string, detail: string, options: ModelsErrorOptions = {}) {
    super(`Cannot load ${source}: ${detail}`);
    this.name = "ModelsError";
    this.source = source;
    this.path = options.path ?? null;
    this.line = options.line ?? null;
    this.column = options.column ?? null;
  }
}

const ROOT_KEYS = ["defaults", "models"];
const DEFAULTS_KEYS = ["text_max_tokens"];
const ENTRY_KEYS = [
  "poe_name",
  "base",
  "per_1k_tokens",
  "per_1k_output_tokens",
  "max_tokens",
  "aliases",
  "cheaper",
];
const MAX_NAME_LENGTH = 200;
const MAX_ALIAS_RESOLUTIONS = 1000;
// deno-lint-ignore no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

/** A `models.yaml`, validated. */
export interface ModelsFile {
  /** The models in file order, frozen, with `cheaper` names resolved to `poe_name`s. */
  readonly entries: readonly ModelEntry[];
  /** The `defaults:` section. */
  readonly defaults: RegistryDefaults;
}

/**
 * Parses and validates the text of a `models.yaml`.
 *
 * @param text The file's contents.
 * @param source The name used in error messages, such as `models.yaml` or its path.
 * @throws {ModelsError} On invalid YAML (with line and column), a wrong type or value, a
 * duplicate name or alias, an unknown key or modality, a `cheaper` name that is not in the file,
 * or a file without models.
 */
export function parseModelsFile(text: string, source: string): ModelsFile {
  const reader = new Reader(text, source);
  return { entries: reader.entries, defaults: reader.defaults };
}

/** A name or alias as written, with where it was written, for duplicate and reference errors. */
interface Named {
  readonly name: string;
  readonly path: string;
  readonly node: unknown;
}

/** Walks the YAML nodes (not plain values) so every error can carry a path and a position. */
class Reader {
  readonly entries: ModelEntry[] = [];
  readonly defaults: RegistryDefaults;
  #source: string;
  #doc: Document.Parsed;
  #lines = new LineCounter();
  #aliasResolutions = 0;

  constructor(text: string, source: string) {
    this.#source = source;
    this.#doc = parseDocument(text, { lineCounter: this.#lines, prettyErrors: false });
    const syntax = this.#doc.errors[0];
    if (syntax) {
      const { line, col } = this.#lines.linePos(syntax.pos[0]);
      const message = syntax.message.split("\n")[0];
      throw new ModelsError(source, `${source}:${line}:${col}: invalid YAML: ${message}`, {
        line,
        column: col,
      });
    }
    const root = this.#deref(this.#doc.contents);
    if (root === null || (isScalar(root) && root.value === null)) {
      this.#fail("", "the file is empty: it needs a models map with at least one model", null);
    }
    if (!isMap(root)) this.#fail("", `the top level must be a map: got ${this.#show(root)}`, root);
    const top = this.#mapOf(root, "", ROOT_KEYS, "unknown key");
    this.defaults = this.#defaults(top.get("defaults"));
    this.#models(top.get("models"));
  }

  #defaults(node: unknown): RegistryDefaults {
    const map = this.#deref(node);
    if (this.#isNull(map)) return { textMaxTokens: null };
    if (!isMap(map)) this.#bad("defaults", "must be a map", map);
    const keys = this.#mapOf(map, "defaults", DEFAULTS_KEYS, "unknown key");
    const textMaxTokens = this.#integer(keys.get("text_max_tokens"), "defaults.text_max_tokens");
    return { textMaxTokens };
  }

  #models(node: unknown): void {
    const map = this.#deref(node);
    const none = "no models defined: list at least one under models.text, models.image, " +
      "models.video or models.audio";
    if (this.#isNull(map)) this.#fail("models", none, map);
    if (!isMap(map)) this.#bad("models", "must be a map", map);
    const lists = this.#mapOf(map, "models", MODALITIES, "unknown modality");
    const names = new Map<string, Named & { entry: number }>();
    const refs: { entry: number; named: Named }[] = [];
    for (const modality of MODALITIES) {
      const path = `models.${modality}`;
      const seq = this.#deref(lists.get(modality));
      if (this.#isNull(seq)) continue;
      if (!isSeq(seq)) {
        this.#bad(path, "must be a list of models", seq);
      }
      seq.items.forEach((item, i) => {
        const { entry, named, cheaper } = this.#entry(item, `${path}[${i}]`, modality);
        for (const n of named) this.#claim(names, { ...n, entry: this.entries.length });
        for (const c of cheaper) refs.push({ entry: this.entries.length, named: c });
        this.entries.push(entry);
      });
    }
    if (this.entries.length === 0) this.#fail("models", none, map);
    const resolved = this.entries.map(() => new Set<string>());
    for (const { entry, named } of refs) {
      const target = names.get(named.name.toLowerCase());
      const self = this.entries[entry];
      if (!target) {
        this.#bad(named.path, "must name a model in this file", named.node);
      }
      const id = this.entries[target.entry].id;
      if (id === self.id) {
        this.#bad(named.path, "must name another model", named.node);
      }
      resolved[entry].add(id);
    }
    this.entries.forEach((e, i) => {
      this.entries[i] = Object.freeze({ ...e, cheaper: Object.freeze([...resolved[i]]) });
    });
  }

  #entry(node: unknown, path: string, modality: Modality) {
    const item = this.#deref(node);
    const blank = {
      modality,
      base: null,
      per1kTokens: null,
      per1kOutputTokens: null,
      maxTokens: null,
      cheaper: [],
    };
    if (isScalar(item) && typeof item.value === "string") {
      const id = this.#name(item, path);
      const entry: ModelEntry = { id, ...blank, aliases: Object.freeze([]) };
      return { entry, named: [{ name: id, path, node: item }], cheaper: [] as Named[] };
    }
    if (!isMap(item)) {
      this.#bad(path, "must be a model name or a map with poe_name", item);
    }
    const keys = this.#mapOf(item, path, ENTRY_KEYS, "unknown key");
    if (!keys.has("poe_name")) this.#fail(path, `${path} must have a poe_name`, item);
    const idNode = this.#deref(keys.get("poe_name"));
    const id = this.#name(idNode, `${path}.poe_name`);
    const aliases = this.#names(keys.get("aliases"), `${path}.aliases`);
    const entry: ModelEntry = {
      ...blank,
      id,
      base: this.#number(keys.get("base"), `${path}.base`),
      per1kTokens: this.#number(keys.get("per_1k_tokens"), `${path}.per_1k_tokens`),
      per1kOutputTokens: this.#number(
        keys.get("per_1k_output_tokens"),
        `${path}.per_1k_output_tokens`,
      ),
      maxTokens: this.#integer(keys.get("max_tokens"), `${path}.max_tokens`),
      aliases: Object.freeze(aliases.map((a) => a.name)),
    };
    const named = [{ name: id, path: `${path}.poe_name`, node: idNode }, ...aliases];
    return { entry, named, cheaper: this.#names(keys.get("cheaper"), `${path}.cheaper`) };
  }

  #claim<T extends Named>(names: Map<string, T>, named: T): void {
    const key = named.name.toLowerCase();
    const first = names.get(key);
    if (first) {
      const detail = `${named.path} ${q(named.name)} duplicates ${first.path} ${q(first.name)} ` +
        "(names and aliases are case-insensitive)";
      this.#fail(named.path, detail, named.node);
    }
    names.set(key, named);
  }

  /** The keys of a map, checked against `allowed`. */
  #mapOf(map: unknown, path: string, allowed: readonly string[], unknown: string) {
    const out = new Map<string, unknown>();
    for (const pair of isMap(map) ? map.items : []) {
      const keyNode = this.#deref(pair.key);
      const key = isScalar(keyNode) ? String(keyNode.value) : this.#show(keyNode);
      const keyPath = path === "" ? key : `${path}.${key}`;
      if (!isScalar(keyNode) || !allowed.includes(key)) {
        const near = allowed.find((a) => editDistance(a, key.toLowerCase(), 2) <= 2);
        const hint = near ? `did you mean ${near}?` : `expected ${allowed.join(", ")}`;
        this.#fail(keyPath, `${unknown} ${keyPath}: ${hint}`, keyNode);
      }
      out.set(key, pair.value);
    }
    return out;
  }

  #name(node: unknown, path: string): string {
    const n = this.#deref(node);
    const value = isScalar(n) ? n.value : undefined;
    if (typeof value !== "string" || value.trim() === "") {
      this.#bad(path, "must be a non-empty string", n);
    }
    let problem = "";
    if (CONTROL_CHARS.test(value)) problem = "must not contain control characters";
    else if (value.trim() !== value) problem = "must not start or end with spaces";
    else if (value.length > MAX_NAME_LENGTH) {
      problem = `must be at most ${MAX_NAME_LENGTH} characters`;
    }
    if (problem) this.#bad(path, problem, n);
    return value;
  }

  #names(node: unknown, path: string): Named[] {
    const seq = this.#deref(node);
    if (this.#isNull(seq)) return [];
    if (!isSeq(seq)) {
      this.#bad(path, "must be a list of names", seq);
    }
    return seq.items.map((item, i) => {
      const p = `${path}[${i}]`;
      return { name: this.#name(item, p), path: p, node: this.#deref(item) };
    });
  }

  #number(node: unknown, path: string): number | null {
    const n = this.#deref(node);
    if (this.#isNull(n)) return null;
    const value = isScalar(n) ? n.value : undefined;
    if (typeof value !== "number") {
      this.#bad(path, "must be a number", n);
    }
    if (!Number.isFinite(value)) {
      this.#bad(path, "must be a finite number", n);
    }
    if (value < 0) this.#bad(path, "must not be negative", n);
    return value;
  }

  #integer(node: unknown, path: string): number | null {
    const value = this.#number(node, path);
    if (value !== null && (!Number.isSafeInteger(value) || value === 0)) {
      this.#bad(path, "must be a positive integer", this.#deref(node));
    }
    return value;
  }

  #isNull(node: unknown): boolean {
    return node === null || node === undefined || (isScalar(node) && node.value === null);
  }

  /** Resolves YAML aliases (`*name`), with a cap against alias bombs. */
  #deref(node: unknown): unknown {
    if (!isAlias(node)) return node;
    if (++this.#aliasResolutions > MAX_ALIAS_RESOLUTIONS) {
      this.#fail("", `too many YAML aliases (over ${MAX_ALIAS_RESOLUTIONS})`, node);
    }
    const target = node.resolve(this.#doc);
    if (target === undefined) this.#fail("", `unresolved YAML alias *${node.source}`, node);
    return target;
  }

  #show(node: unknown): string {
    if (isMap(node)) return "a map";
    if (isSeq(node)) return "a list";
    const value = isScalar(node) ? node.value : null;
    if (typeof value === "string") return q(value);
    if (typeof value === "number" && !Number.isFinite(value) && isScalar(node)) {
      return node.source ?? String(value);
    }
    return String(value);
  }

  /** Fails with `<path> <problem>: got <value>`. */
  #bad(path: string, problem: string, node: unknown): never {
    this.#fail(path, `${path} ${problem}: got ${this.#show(node)}`, node);
  }

  #fail(path: string, detail: string, node: unknown): never {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    if (!range) throw new ModelsError(this.#source, detail, { path: path || null });
    const { line, col } = this.#lines.linePos(range[0]);
    throw new ModelsError(this.#source, `${detail} (${this.#source}:${line}:${col})`, {
      path: path || null,
      line,
      column: col,
    });
  }
}

/** A value quoted for a message: JSON escaping shows control characters; long ones are cut. */
function q(value: string): string {
  return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
}
