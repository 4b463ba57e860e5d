/**
 * @module Makes Poe's streamed chunks what OpenAI clients expect. Poe relays each provider's own
 * habits: some streams start without `delta.role`, Google models send tool call deltas without
 * `index`, and may leave out a call's `type`. The `openai` SDK's stream helpers (`stream()`,
 * `runTools()`) refuse all three, so every stream gets them. Google models also send every call
 * with `id: ""`: a client matches its tool results to calls by id, so each call gets one.
 */
import { toolCallId } from "./openai_types.ts";

// deno-lint-ignore no-explicit-any
type Chunk = Record<string, any>;

/** The per-stream state that completes the chunks of one answer. */
export class StreamShaper {
  #roleSent = false;
  #nextIndex = 0;
  #lastIndex = -1;
  #lastId: string | null = null;
  /** Indexes of the calls whose first delta went out. */
  #opened = new Set<number>();

  /** A delta went out: from now on a chunk without tool calls needs no change. */
  get started(): boolean {
    return this.#roleSent;
  }

  /** Completes one parsed chunk in place; returns whether it changed. */
  shape(chunk: Chunk): boolean {
    const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
    if (!choice || typeof choice !== "object") return false;
    let delta = choice.delta;
    if (!delta || typeof delta !== "object") return false;
    let changed = false;
    if (!this.#roleSent) {
      this.#roleSent = true;
      if (delta.role === undefined || delta.role === null) {
        const { role: _, ...rest } = delta;
        delta = choice.delta = { role: "assistant", ...rest };
        changed = true;
      }
    }
    if (Array.isArray(delta.tool_calls)) {
      const calls: unknown[] = delta.tool_calls;
      for (let i = 0; i < calls.length; i++) {
        const call = calls[i];
        if (call && typeof call === "object") {
          let shaped = this.#index(call as Chunk, i);
          if (!this.#opened.has(shaped.index)) {
            this.#opened.add(shaped.index);
            // OpenAI names the type and id in a call's first delta; the SDK's snapshot requires
            // the type.
            if (shaped.type === undefined || shaped.type === null) {
              shaped = { ...shaped, type: "function" };
            }
            if (typeof shaped.id !== "string" || shaped.id === "") {
              shaped = { ...shaped, id: toolCallId() };
            }
          } else if (shaped.id === "" || shaped.id === null) {
            // A later delta's empty id would contradict the one given: left out, as OpenAI does.
            // (Repeating the id is no better: openai-python's accumulator joins the strings.)
            const { id: _, ...rest } = shaped;
            shaped = rest;
          }
          if (shaped !== call) {
            calls[i] = shaped;
            changed = true;
          }
        }
      }
    }
    return changed;
  }

  /**
   * A call delta with an index, as given or counted. A delta opens the next call when it has a new
   * `id`, or no id but a function name (Gemini sends whole calls with `id: ""`), or follows another
   * call in the same delta; else it continues the last call (arguments sent in pieces).
   */
  #index(call: Chunk, position: number): Chunk {
    const id = typeof call.id === "string" && call.id !== "" ? call.id : null;
    if (typeof call.index === "number") {
      this.#lastIndex = call.index;
      this.#nextIndex = Math.max(this.#nextIndex, call.index + 1);
      if (id !== null) this.#lastId = id;
      return call;
    }
    const named = typeof call.function?.name === "string" && call.function.name !== "";
    const opens = id !== null ? id !== this.#lastId : named || position > 0 || this.#lastIndex < 0;
    if (opens) {
      this.#lastIndex = this.#nextIndex++;
      this.#lastId = id;
    }
    return { index: this.#lastIndex, ...call };
  }
}

/** Whether a finish chunk's delta also carries part of the answer (text, tool calls, reasoning). */
export function carriesDelta(delta: unknown): boolean {
  if (!delta || typeof delta !== "object") return false;
  for (const [key, value] of Object.entries(delta)) {
    if (key !== "role" && value !== null && value !== undefined && value !== "") return true;
  }
  return false;
}
