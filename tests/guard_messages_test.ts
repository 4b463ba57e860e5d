/**
 * @module The refusals' wording (`lib/guard_messages.ts`), as Guards.paused gives it: the next
 * grant's time, a stale reading's age.
 */
import assert from "node:assert/strict";
import { guards, NOW, snap } from "./guards_fixture.ts";

Deno.test("Guards.paused says when the next grant comes: within the hour, an hour, hours, days", () => {
  const at = (ms: number) => {
    const grant = { time: NOW + ms, amount: null, kind: "daily" as const };
    return guards(snap(5, { nextGrant: grant })).g.paused()!.message;
  };
  const HOUR = 3_600_000;
  assert.match(at(HOUR / 2), /\(within the hour\)/);
  assert.match(at(HOUR), /\(in about an hour\)/);
  assert.match(at(1.4 * HOUR), /\(in about an hour\)/);
  assert.match(at(1.6 * HOUR), /\(in about 2 hours\)/);
  assert.match(at(47 * HOUR), /\(in about 47 hours\)/);
  assert.match(at(49 * HOUR), /\(in 2 days\)/);
});

Deno.test("Guards.paused mentions a stale snapshot's age and skips a grant in the past", () => {
  const grant = { time: NOW - 1000, amount: null, kind: "daily" as const };
  const { g } = guards(snap(5, { takenAt: NOW - 10 * 60_000, nextGrant: grant }));
  const refusal = g.paused()!;
  assert.match(refusal.message, /as of 10 minutes ago/);
  assert.doesNotMatch(refusal.message, /grants/);
});
