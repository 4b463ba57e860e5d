/**
 * @module Answers Poe may have billed that the proxy has not seen end, by model: the cost tracker
 * pairs no answer by order while one of its model runs so.
 */

/** An answer Poe may have billed, noted by {@linkcode InFlightRequests.sent}. */
export interface InFlight {
  /** Its answer ended, or it ended without one. Idempotent. */
  end(): void;
}

interface Sent {
  /** Lower-case. */
  model: string;
  /** When its request arrived, in milliseconds since the epoch. */
  arrivedAt: number;
}

/**
 * The answers still running that Poe may have billed: a stream whose finish came (it may linger
 * before its end), a JSON answer whose headers came (its body may be slow). While one runs, the
 * history entries read since its request arrived may hold its own. As many as run at once: a scan
 * is cheap.
 */
export class InFlightRequests {
  readonly #sent = new Set<Sent>();

  /** How many run. */
  get size(): number {
    return this.#sent.size;
  }

  /** Notes an answer of `model` whose request arrived at `startedAt` (ms since the epoch). */
  sent(model: string, startedAt: number): InFlight {
    const sent: Sent = { model: model.toLowerCase(), arrivedAt: startedAt };
    this.#sent.add(sent);
    return { end: () => void this.#sent.delete(sent) };
  }

  /** Whether a request of `model` (lower-case) that arrived at or before `at` still runs. */
  running(model: string, at: number): boolean {
    for (const s of this.#sent) {
      if (s.model === model && s.arrivedAt <= at) return true;
    }
    return false;
  }
}
