/**
 * @module What the SSE relay does with Poe's events: watches them into a summary, passes most on as
 * they came, changes or holds the few it must, and makes the events that end the answer.
 */
import type { EventSourceMessage } from "eventsource-parser";
import { TextShape } from "./data_answer.ts";
import { completionId } from "./openai_types.ts";
import {
  answerTextOf,
  type Chunk,
  chunkBase,
  type ChunkIds,
  dataEvent,
  footerChunk,
  isPlainDelta,
  openAiErrorEvent,
  SHUTDOWN_EVENT,
} from "./sse_events.ts";
import type { RelayOptions, StreamEnding, StreamSummary } from "./sse.ts";
import { carriesDelta, StreamShaper } from "./stream_shape.ts";
import { opensAnswer } from "./stream_start.ts";
import { functionCallDelta } from "./legacy_functions.ts";

/** Options of {@linkcode RelayEvents}: those of {@linkcode RelayOptions} that concern events. */
export type RelayEventsOptions = Pick<
  RelayOptions,
  | "includeUsage"
  | "finish"
  | "redact"
  | "estimateUsage"
  | "onFinishReason"
  | "model"
  | "legacyFunctions"
>;

/**
 * The events of one relayed answer. Each of Poe's events goes to {@linkcode RelayEvents.onEvent},
 * which hands what goes to the client to `emit`: the event's original `data` text, or the few
 * this proxy changes re-encoded (chunks {@linkcode StreamShaper} completes, usage moved to a chunk
 * of its own). The finish and usage chunks are held for the end when a footer or cost may be
 * added to them.
 */
export class RelayEvents {
  /** What was seen of the answer so far. */
  readonly summary: StreamSummary = {
    id: null,
    model: null,
    created: null,
    usage: null,
    finishReason: null,
    toolCalls: false,
    answered: false,
    error: false,
    finishAdded: false,
    dataText: false,
    hasText: false,
    droppedEvents: 0,
  };
  /** Poe's `[DONE]`, or its error, was read: what follows it is ignored. */
  sawDone = false;
  /** The last event read was not JSON (nor `[DONE]`). */
  lastUnparsed = false;
  /**
   * The body ended: its last event (completed by the relay) is parsed, not passed on by the fast
   * path, which would pass a cut one as it is.
   */
  atEnd = false;
  /**
   * An event carried part of the answer ({@linkcode opensAnswer}); a role chunk does not, and a
   * model may think in silence after it.
   */
  opened = false;
  readonly #options: RelayEventsOptions;
  readonly #emit: (event: string) => void;
  /** The finish chunk is held for {@linkcode RelayOptions.finish}, which may add a footer. */
  readonly holdForEnding: boolean;
  readonly #shaper = new StreamShaper();
  readonly #text = new TextShape();
  #heldFinish: Chunk | null = null;
  #heldUsage: Chunk | null = null;
  /** The id, time and model of the chunks this proxy makes, once made: the same in each. */
  #ids: ChunkIds | null = null;
  /**
   * The answer's events, kept as they came while they may need counting: parsed only at the end,
   * and only when Poe sent no usage. Dropped once usage is seen.
   */
  #kept: string[] | null;
  /** The characters in {@linkcode #kept}. */
  #keptChars = 0;
  /**
   * The answer's text of events kept earlier: past {@linkcode KEPT_CHARS}, the kept events are
   * read for their text and let go. Poe sends its usage last, so a long answer's events (each
   * repeating the id, model and more around a few characters) were all held to the end.
   */
  #keptText: string[] = [];

  constructor(options: RelayEventsOptions, emit: (event: string) => void) {
    this.#options = options;
    this.#emit = emit;
    this.holdForEnding = options.finish !== undefined;
    this.#kept = options.estimateUsage ? [] : null;
  }

  /** Takes one of Poe's events (a bound function, for the SSE parser's `onEvent`). */
  readonly onEvent = (event: EventSourceMessage): void => {
    const summary = this.summary;
    const options = this.#options;
    const data = event.data;
    // Events after it (in the same read) would reach the client after the finish chunk.
    if (this.sawDone) return;
    if (data === "[DONE]") {
      this.sawDone = true;
      return;
    }
    if (
      this.opened && summary.id !== null && this.#shaper.started && !this.#text.watching &&
      !this.atEnd && isPlainDelta(data)
    ) {
      this.#keep(data);
      this.#emit(dataEvent(data));
      return;
    }
    let chunk: Chunk | null = null;
    this.lastUnparsed = false;
    try {
      chunk = JSON.parse(data);
    } catch {
      // Not JSON: the SDKs would end the whole stream on it.
      this.lastUnparsed = true;
    }
    if (event.event === "error" || chunk?.error) {
      summary.error = true;
      const poe = chunk?.error ?? chunk ?? data;
      const error = typeof poe === "string" ? { message: poe } : poe;
      this.#emit(openAiErrorEvent(error, options.redact));
      // Poe's error ends the answer: the client gets `[DONE]` after it now, not once Poe also
      // goes silent for IDLE_TIMEOUT_SECONDS, and no finish or usage held from before it.
      this.sawDone = true;
      this.#heldFinish = null;
      this.#heldUsage = null;
      return;
    }
    // A JSON object without choices (Poe's `event: ping`, `{}`) ends the SDKs' streams too
    // (`chunk.choices is not iterable`); a usage chunk without them gets an empty list.
    if (
      chunk === null || typeof chunk !== "object" ||
      (!Array.isArray(chunk.choices) && !chunk.usage)
    ) {
      summary.droppedEvents++;
      return;
    }
    if (!this.opened) this.opened = opensAnswer(chunk);
    summary.id ??= typeof chunk.id === "string" ? chunk.id : null;
    summary.model ??= typeof chunk.model === "string" ? chunk.model : null;
    summary.created ??= typeof chunk.created === "number" ? chunk.created : null;
    if (chunk.usage && typeof chunk.usage === "object") {
      summary.usage = chunk.usage;
      this.#kept = null;
      this.#keptText = [];
    }
    this.#keep(data);
    let changed = this.#shaper.shape(chunk);
    const choices = Array.isArray(chunk.choices) ? chunk.choices : [];
    const choice = choices[0];
    const calls = choice?.delta?.tool_calls;
    if (Array.isArray(calls) && calls.length > 0) summary.toolCalls = summary.answered = true;
    if (options.legacyFunctions && choice && functionCallDelta(choice)) changed = true;
    const delta = choice?.delta;
    if (typeof delta?.content === "string") {
      this.#text.add(delta.content);
      if (delta.content !== "") summary.answered = true;
    }
    if (!summary.answered && (nonEmpty(delta?.reasoning_content) || nonEmpty(delta?.reasoning))) {
      summary.answered = true;
    }
    if (choice?.finish_reason) {
      if (summary.finishReason === null) options.onFinishReason?.();
      summary.finishReason = choice.finish_reason;
      summary.answered = true;
    }
    if (choices.length === 0 && chunk.usage) {
      // The usage chunk is the last before [DONE] anyway: kept until the end, where it may
      // gain the cost.
      if (options.includeUsage) {
        this.#heldUsage = Array.isArray(chunk.choices) ? chunk : { ...chunk, choices: [] };
      }
      return;
    }
    if (options.includeUsage && chunk.usage) {
      // OpenAI sends usage in a chunk of its own, last: made at the end from `summary.usage`.
      delete chunk.usage;
      changed = true;
    }
    if (this.holdForEnding && choice?.finish_reason) {
      if (carriesDelta(choice.delta)) {
        // The finish chunk also carries the end of the answer: that goes out now, and the
        // footer after it, not inside the text.
        const { usage: _, ...rest } = chunk;
        this.#emit(
          dataEvent(JSON.stringify({ ...rest, choices: [{ ...choice, finish_reason: null }] })),
        );
        choice.delta = {};
        // The end's logprobs went out with it: the finish chunk must not repeat them.
        if (choice.logprobs) choice.logprobs = null;
      }
      this.#heldFinish = chunk;
      return;
    }
    this.#emit(changed ? dataEvent(JSON.stringify(chunk)) : dataEvent(data));
  };

  /**
   * Settles the summary once Poe's stream is over: a stream Poe ended without a finish_reason
   * gets one, then whether the text is data, and the usage. False when there was no answer at all.
   */
  settle(): boolean {
    const summary = this.summary;
    if (summary.finishReason === null && !summary.error) {
      if (summary.id === null && !this.#shaper.started) return false;
      // Some models end a stream silently; OpenAI's clients need a finish_reason to end on.
      summary.finishReason = !summary.toolCalls
        ? "stop"
        : this.#options.legacyFunctions
        ? "function_call"
        : "tool_calls";
      summary.finishAdded = true;
      this.#heldFinish = {
        ...chunkBase(this.#chunkIds()),
        choices: [{ index: 0, delta: {}, finish_reason: summary.finishReason }],
      };
    }
    summary.dataText = this.#text.data;
    summary.hasText = this.#text.visible;
    this.#settleUsage();
    return true;
  }

  /**
   * Adds the events that end a settled answer to `pending`: the footer, then the held finish and
   * usage chunks, with the ending's usage fields merged in.
   */
  end(ending: StreamEnding | null, pending: string[]): void {
    if (ending?.footer) {
      pending.push(dataEvent(JSON.stringify(footerChunk(this.#chunkIds(), ending.footer))));
    }
    for (const chunk of [this.#heldFinish, this.#heldUsage]) {
      if (!chunk) continue;
      if (ending?.usage && chunk.usage) chunk.usage = { ...chunk.usage, ...ending.usage };
      pending.push(dataEvent(JSON.stringify(chunk)));
    }
  }

  /** Adds the events that end an answer the proxy's shutdown cuts off to `pending`. */
  cut(pending: string[]): void {
    const summary = this.summary;
    if (summary.finishReason !== null && !summary.error) {
      // The answer is whole (its usage or footer may still be awaited): it ends as answered,
      // without the footer. An error would have the client ask, and pay, again.
      this.#settleUsage();
      for (const chunk of [this.#heldFinish, this.#heldUsage]) {
        if (chunk) pending.push(dataEvent(JSON.stringify(chunk)));
      }
    } else {
      summary.error = true;
      pending.push(SHUTDOWN_EVENT);
    }
  }

  /** Counts the usage Poe sent none of, and makes the usage chunk the client asked for. */
  #settleUsage(): void {
    const summary = this.summary;
    if (this.#kept !== null && summary.usage === null && !summary.error) {
      summary.usage = this.#options.estimateUsage!(
        this.#keptText.join("") + answerTextOf(this.#kept),
      );
      this.#kept = null;
      this.#keptText = [];
    }
    if (
      this.#options.includeUsage && this.#heldUsage === null && summary.usage !== null &&
      !summary.error
    ) {
      this.#heldUsage = { ...chunkBase(this.#chunkIds()), choices: [], usage: summary.usage };
    }
  }

  /** Characters held for counting: the kept events' and the text read from earlier ones. */
  get heldChars(): number {
    return this.#keptChars + this.#keptText.reduce((n, t) => n + t.length, 0);
  }

  /** Keeps an event for counting, while it may be needed; past a size, as its text only. */
  #keep(data: string): void {
    if (this.#kept === null) return;
    this.#kept.push(data);
    this.#keptChars += data.length;
    if (this.#keptChars > KEPT_CHARS) {
      this.#keptText.push(answerTextOf(this.#kept));
      this.#kept = [];
      this.#keptChars = 0;
    }
  }

  /**
   * Poe's id, time and model for the chunks this proxy makes, with what Poe never sent made once
   * for the whole stream (the model: the one the client asked for). Made at the answer's end.
   */
  #chunkIds(): ChunkIds {
    const { id, model, created } = this.summary;
    return this.#ids ??= {
      id: id ?? completionId(),
      model: model ?? this.#options.model ?? null,
      created: created ?? Math.floor(Date.now() / 1000),
    };
  }
}

/** Kept events up to this many characters are read for their text only at the end (most answers). */
const KEPT_CHARS = 256 * 1024;

function nonEmpty(value: unknown): boolean {
  return typeof value === "string" && value !== "";
}
