/**
 * @module Requests sent to Poe whose answers have not ended, by model: the cost tracker pairs no
 * answer by order while one of its model runs.
 */

/** A request sent to Poe, noted by {@linkcode InFlightRequests.sent}. */
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
 * The requests sent to Poe that are still running. Poe may bill an answer before the proxy sees it
 * end (a stream that lingers after its finish, a body slow to arrive), so while one runs, the
 * history entries read since it was sent may hold its own. As many as run at once: a scan is cheap.
 */
export class InFlightRequests {
  readonly #sent = new Set<Sent>();

  /** How many run. */
  get size(): number {
    return this.#sent.size;
  }

  /** Notes a request of `model` that arrived at `startedAt` (ms since the epoch), until ended. */
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
