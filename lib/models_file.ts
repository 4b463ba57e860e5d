/**
 * @module The text of `models.yaml` read and validated into models and defaults; every error names
 * the path of what failed and, when it can, its line and column.
 */
import { isMap, isScalar, isSeq } from "yaml";
import type { Modality, ModelEntry, RegistryDefaults } from "./models.ts";
import { type Named, quote, YamlNodes } from "./yaml_nodes.ts";

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

/** Reads the models file's schema: its sections, entries, names and their references. */
class Reader {
  readonly entries: ModelEntry[] = [];
  readonly defaults: RegistryDefaults;
  #nodes: YamlNodes;

  constructor(text: string, source: string) {
    const nodes = new YamlNodes(text, source, (detail, at) => new ModelsError(source, detail, at));
    this.#nodes = nodes;
    const root = nodes.root;
    if (root === null || (isScalar(root) && root.value === null)) {
      nodes.fail("", "the file is empty: it needs a models map with at least one model", null);
    }
    if (!isMap(root)) nodes.fail("", `the top level must be a map: got ${nodes.show(root)}`, root);
    const top = nodes.mapOf(root, "", ROOT_KEYS, "unknown key");
    this.defaults = this.#defaults(top.get("defaults"));
    this.#models(top.get("models"));
  }

  #defaults(node: unknown): RegistryDefaults {
    const map = this.#nodes.deref(node);
    if (this.#nodes.isNull(map)) return { textMaxTokens: null };
    if (!isMap(map)) this.#nodes.bad("defaults", "must be a map", map);
    const keys = this.#nodes.mapOf(map, "defaults", DEFAULTS_KEYS, "unknown key");
    const textMaxTokens = this.#nodes.integer(
      keys.get("text_max_tokens"),
      "defaults.text_max_tokens",
    );
    return { textMaxTokens };
  }

  #models(node: unknown): void {
    const map = this.#nodes.deref(node);
    const none = "no models defined: list at least one under models.text, models.image, " +
      "models.video or models.audio";
    if (this.#nodes.isNull(map)) this.#nodes.fail("models", none, map);
    if (!isMap(map)) this.#nodes.bad("models", "must be a map", map);
    const lists = this.#nodes.mapOf(map, "models", MODALITIES, "unknown modality");
    const names = new Map<string, Named & { entry: number }>();
    const refs: { entry: number; named: Named }[] = [];
    for (const modality of MODALITIES) {
      const path = `models.${modality}`;
      const seq = this.#nodes.deref(lists.get(modality));
      if (this.#nodes.isNull(seq)) continue;
      if (!isSeq(seq)) {
        this.#nodes.bad(path, "must be a list of models", seq);
      }
      seq.items.forEach((item, i) => {
        const { entry, named, cheaper } = this.#entry(item, `${path}[${i}]`, modality);
        for (const n of named) this.#claim(names, { ...n, entry: this.entries.length });
        for (const c of cheaper) refs.push({ entry: this.entries.length, named: c });
        this.entries.push(entry);
      });
    }
    if (this.entries.length === 0) this.#nodes.fail("models", none, map);
    const resolved = this.entries.map(() => new Set<string>());
    for (const { entry, named } of refs) {
      const target = names.get(named.name.toLowerCase());
      const self = this.entries[entry];
      if (!target) {
        this.#nodes.bad(named.path, "must name a model in this file", named.node);
      }
      const id = this.entries[target.entry].id;
      if (id === self.id) {
        this.#nodes.bad(named.path, "must name another model", named.node);
      }
      resolved[entry].add(id);
    }
    this.entries.forEach((e, i) => {
      this.entries[i] = Object.freeze({ ...e, cheaper: Object.freeze([...resolved[i]]) });
    });
  }

  #entry(node: unknown, path: string, modality: Modality) {
    const item = this.#nodes.deref(node);
    const blank = {
      modality,
      base: null,
      per1kTokens: null,
      per1kOutputTokens: null,
      maxTokens: null,
      cheaper: [],
    };
    if (isScalar(item) && typeof item.value === "string") {
      const id = this.#nodes.name(item, path);
      const entry: ModelEntry = { id, ...blank, aliases: Object.freeze([]) };
      return { entry, named: [{ name: id, path, node: item }], cheaper: [] as Named[] };
    }
    if (!isMap(item)) {
      this.#nodes.bad(path, "must be a model name or a map with poe_name", item);
    }
    const keys = this.#nodes.mapOf(item, path, ENTRY_KEYS, "unknown key");
    if (!keys.has("poe_name")) this.#nodes.fail(path, `${path} must have a poe_name`, item);
    const idNode = this.#nodes.deref(keys.get("poe_name"));
    const id = this.#nodes.name(idNode, `${path}.poe_name`);
    const aliases = this.#nodes.names(keys.get("aliases"), `${path}.aliases`);
    const entry: ModelEntry = {
      ...blank,
      id,
      base: this.#nodes.number(keys.get("base"), `${path}.base`),
      per1kTokens: this.#nodes.number(keys.get("per_1k_tokens"), `${path}.per_1k_tokens`),
      per1kOutputTokens: this.#nodes.number(
        keys.get("per_1k_output_tokens"),
        `${path}.per_1k_output_tokens`,
      ),
      maxTokens: this.#nodes.integer(keys.get("max_tokens"), `${path}.max_tokens`),
      aliases: Object.freeze(aliases.map((a) => a.name)),
    };
    const named = [{ name: id, path: `${path}.poe_name`, node: idNode }, ...aliases];
    const cheaper = this.#nodes.names(keys.get("cheaper"), `${path}.cheaper`);
    // Written empty: no suggestion at all, where no list at all suggests the modality's cheaper.
    if (keys.has("cheaper") && cheaper.length === 0) {
      return { entry: { ...entry, noCheaper: true }, named, cheaper };
    }
    return { entry, named, cheaper };
  }

  #claim<T extends Named>(names: Map<string, T>, named: T): void {
    const key = named.name.toLowerCase();
    const first = names.get(key);
    if (first) {
      const detail =
        `${named.path} ${quote(named.name)} duplicates ${first.path} ${quote(first.name)} ` +
        "(names and aliases are case-insensitive)";
      this.#nodes.fail(named.path, detail, named.node);
    }
    names.set(key, named);
  }
}
