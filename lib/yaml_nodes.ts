/**
 * @module A parsed YAML document read node by node (not as plain values), so that every error can
 * name the path of what failed and, when it can, its line and column.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document } from "yaml";
import { editDistance } from "./edit_distance.ts";
import { MODEL_NAME } from "./chat_request.ts";

/** Keys other tools name a model by, for which `poe_name` is suggested. */
const NAME_KEYS = new Set(["name", "model", "id", "model_name", "bot", "bot_name"]);

/** Where a read failed: the path of the value and its 1-based line and column, when known. */
export interface NodePosition {
  path?: string | null;
  line?: number | null;
  column?: number | null;
}

/** Makes the error a failed read throws, from what failed (`detail`) and where. */
export type NodeError = (detail: string, at: NodePosition) => Error;

const MAX_NAME_LENGTH = 128;
const MAX_ALIAS_RESOLUTIONS = 1000;
// deno-lint-ignore no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * `<<`, a merge key: a plain string in a YAML 1.2 document, a symbol in a `%YAML 1.1` one or when
 * tagged `!!merge`.
 */
function isMergeKey(node: unknown): boolean {
  if (!isScalar(node)) return false;
  const value = node.value;
  return value === "<<" || (typeof value === "symbol" && value.description === "<<");
}

/** A name or alias as written, with where it was written, for duplicate and reference errors. */
export interface Named {
  readonly name: string;
  readonly path: string;
  readonly node: unknown;
}

/** The nodes of one YAML document, read with a path for every error and a cap on aliases. */
export class YamlNodes {
  /** The document's top node, aliases resolved. */
  readonly root: unknown;
  #source: string;
  #doc: Document.Parsed;
  #lines = new LineCounter();
  #aliasResolutions = 0;
  #error: NodeError;

  /**
   * @param source The name used in error messages, such as `models.yaml` or its path.
   * @throws From `error`, on invalid YAML (with line and column).
   */
  constructor(text: string, source: string, error: NodeError) {
    this.#source = source;
    this.#error = error;
    this.#doc = parseDocument(text, { lineCounter: this.#lines, prettyErrors: false });
    const syntax = this.#doc.errors[0];
    if (syntax) {
      const { line, col } = this.#lines.linePos(syntax.pos[0]);
      const message = syntax.message.split("\n")[0];
      throw error(`${source}:${line}:${col}: invalid YAML: ${message}`, { line, column: col });
    }
    this.root = this.deref(this.#doc.contents);
  }

  /**
   * The keys of a map, checked against `allowed`. A merge key (`<<: *base`, YAML 1.1, which
   * PyYAML reads) adds the keys of the map or maps it names that the map does not set itself.
   */
  mapOf(map: unknown, path: string, allowed: readonly string[], unknown: string) {
    const out = new Map<string, unknown>();
    const merged: unknown[] = [];
    for (const pair of isMap(map) ? map.items : []) {
      const keyNode = this.deref(pair.key);
      if (isMergeKey(keyNode)) {
        merged.push(pair.value);
        continue;
      }
      const key = isScalar(keyNode) ? String(keyNode.value) : this.show(keyNode);
      const keyPath = path === "" ? key : `${path}.${key}`;
      if (!isScalar(keyNode) || !allowed.includes(key)) {
        const lower = key.toLowerCase();
        // What other tools call a model's name: the nearest by spelling (`base`) would mislead.
        const near = NAME_KEYS.has(lower) && allowed.includes("poe_name")
          ? "poe_name"
          : allowed.find((a) => editDistance(a, lower, 2) <= 2);
        const hint = near ? `did you mean ${near}?` : `expected ${allowed.join(", ")}`;
        this.fail(keyPath, `${unknown} ${keyPath}: ${hint}`, keyNode);
      }
      out.set(key, pair.value);
    }
    for (const value of merged) {
      const node = this.deref(value);
      // The first map named wins over later ones, as in YAML's merge.
      for (const item of isSeq(node) ? node.items : [node]) {
        const source = this.deref(item);
        if (!isMap(source)) this.bad(`${path}.<<`, "must name a map or a list of maps", source);
        for (const [key, v] of this.mapOf(source, path, allowed, unknown)) {
          if (!out.has(key)) out.set(key, v);
        }
      }
    }
    return out;
  }

  /**
   * A name: a non-empty string of printable ASCII without surrounding spaces, not too long; what a
   * chat request may name (`MODEL_NAME`), so that a name listed can be used.
   */
  name(node: unknown, path: string): string {
    const n = this.deref(node);
    const value = isScalar(n) ? n.value : undefined;
    if (typeof value !== "string" || value.trim() === "") {
      this.bad(path, "must be a non-empty string", n);
    }
    let problem = "";
    if (CONTROL_CHARS.test(value)) problem = "must not contain control characters";
    else if (value.trim() !== value) problem = "must not start or end with spaces";
    else if (value.length > MAX_NAME_LENGTH) {
      problem = `must be at most ${MAX_NAME_LENGTH} characters`;
    } else if (!MODEL_NAME.test(value)) {
      problem = "must be printable ASCII (letters, digits, punctuation, spaces)";
    }
    if (problem) this.bad(path, problem, n);
    return value;
  }

  /** A list of names, with where each was written; none when null. */
  names(node: unknown, path: string): Named[] {
    const seq = this.deref(node);
    if (this.isNull(seq)) return [];
    if (!isSeq(seq)) {
      this.bad(path, "must be a list of names", seq);
    }
    return seq.items.map((item, i) => {
      const p = `${path}[${i}]`;
      return { name: this.name(item, p), path: p, node: this.deref(item) };
    });
  }

  /** A finite number, not negative; null when null. */
  number(node: unknown, path: string): number | null {
    const n = this.deref(node);
    if (this.isNull(n)) return null;
    const value = isScalar(n) ? n.value : undefined;
    if (typeof value !== "number") {
      // `200_000` is a number to PyYAML (the Python proxy's files), `"226"` to Python's float().
      const digits = typeof value === "string" && /^\s*\d[\d_]*(\.\d+)?\s*$/.test(value);
      this.bad(
        path,
        digits
          ? `must be a number, written without quotes or underscores (${
            value.replace(/[_\s]/g, "")
          })`
          : "must be a number",
        n,
      );
    }
    if (!Number.isFinite(value)) {
      this.bad(path, "must be a finite number", n);
    }
    if (value < 0) this.bad(path, "must not be negative", n);
    return value;
  }

  /** A positive safe integer; null when null. */
  integer(node: unknown, path: string): number | null {
    const value = this.number(node, path);
    if (value !== null && (!Number.isSafeInteger(value) || value === 0)) {
      this.bad(path, "must be a positive integer", this.deref(node));
    }
    return value;
  }

  /** Whether a node is missing or YAML null. */
  isNull(node: unknown): boolean {
    return node === null || node === undefined || (isScalar(node) && node.value === null);
  }

  /** Resolves YAML aliases (`*name`), with a cap against alias bombs. */
  deref(node: unknown): unknown {
    if (!isAlias(node)) return node;
    if (++this.#aliasResolutions > MAX_ALIAS_RESOLUTIONS) {
      this.fail("", `too many YAML aliases (over ${MAX_ALIAS_RESOLUTIONS})`, node);
    }
    const target = node.resolve(this.#doc);
    if (target === undefined) this.fail("", `unresolved YAML alias *${node.source}`, node);
    return target;
  }

  /** A node as an error message shows it: its kind, or its value quoted. */
  show(node: unknown): string {
    if (isMap(node)) return "a map";
    if (isSeq(node)) return "a list";
    const value = isScalar(node) ? node.value : null;
    if (typeof value === "string") return quote(value);
    if (typeof value === "number" && !Number.isFinite(value) && isScalar(node)) {
      return node.source ?? String(value);
    }
    return String(value);
  }

  /** Fails with `<path> <problem>: got <value>`. */
  bad(path: string, problem: string, node: unknown): never {
    this.fail(path, `${path} ${problem}: got ${this.show(node)}`, node);
  }

  /** Fails with `detail`, and the node's line and column when it has a position. */
  fail(path: string, detail: string, node: unknown): never {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    if (!range) throw this.#error(detail, { path: path || null });
    const { line, col } = this.#lines.linePos(range[0]);
    throw this.#error(`${detail} (${this.#source}:${line}:${col})`, {
      path: path || null,
      line,
      column: col,
    });
  }
}

/** A value quoted for a message: JSON escaping shows control characters; long ones are cut. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
}
