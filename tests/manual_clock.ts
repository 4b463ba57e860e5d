/** @module A hand-driven clock and timers for tests of pollers: time moves only when told. */
import type { Timers } from "../lib/deadlines.ts";

interface Pending {
  id: number;
  at: number;
  fn: () => void;
}

/** A clock whose `now()` and timers move only with {@linkcode ManualClock.advance}. */
export class ManualClock implements Timers {
  #now: number;
  #next = 1;
  #pending: Pending[] = [];

  constructor(start = Date.UTC(2026, 0, 15, 12)) {
    this.#now = start;
  }

  /** Milliseconds since the epoch. */
  now = (): number => this.#now;

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#pending.push({ id, at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(id: unknown): void {
    this.#pending = this.#pending.filter((p) => p.id !== id);
  }

  /** Timers not run yet. */
  get timers(): number {
    return this.#pending.length;
  }

  /** Lets promise callbacks run (several macrotask turns). */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  }

  /** Moves time forward by `ms`, running due timers in order and settling after each. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await this.settle();
    for (;;) {
      this.#pending.sort((a, b) => a.at - b.at || a.id - b.id);
      const due = this.#pending[0];
      if (!due || due.at > end) break;
      this.#pending.shift();
      this.#now = due.at;
      due.fn();
      await this.settle();
    }
    this.#now = end;
    await this.settle();
  }
}
