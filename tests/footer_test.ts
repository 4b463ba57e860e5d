import assert from "node:assert/strict";
import { type FooterFacts, formatFooter, stripFooter, stripFooters } from "../lib/footer.ts";
import type { ChatMessage } from "../lib/openai_types.ts";

const USAGE = { prompt_tokens: 1000, completion_tokens: 234, total_tokens: 1234 };

function facts(over: Partial<FooterFacts> = {}): FooterFacts {
  return {
    usage: USAGE,
    points: { estimated: false, points: 339 },
    balance: 1_234_567,
    warnAbove: 5000,
    cap: 0,
    cheaper: [],
    ...over,
  };
}

Deno.test("formatFooter writes the earlier proxy's three lines after a blank line", () => {
  assert.equal(
    formatFooter(facts()),
    "\n\n---\n📊 Tokens: 1234 (Input: 1000, Output: 234)\n💰 Points: 339\n" +
      "🏦 Current balance: 1,234,567 points",
  );
});

Deno.test("formatFooter marks estimates with their base and token parts", () => {
  const text = formatFooter(
    facts({ points: { estimated: true, points: 300, base: 226, tokens: 74 } }),
  );
  assert.match(text, /\n💰 Points \(est\.\): 300 \(Base: 226, Tokens: 74\.0\)\n/);
});

Deno.test("formatFooter marks token counts made here, Poe having sent none", () => {
  const text = formatFooter(facts({ usage: { ...USAGE, tokens_estimated: true } }));
  assert.match(text, /^\n\n---\n📊 Tokens \(est\.\): 1234 \(Input: 1000, Output: 234\)\n/);
});

Deno.test("formatFooter shows n/a and unknown for missing facts, and a stale balance's age", () => {
  const text = formatFooter(facts({ usage: null, points: null, balance: null }));
  assert.match(text, /📊 Tokens: n\/a\n💰 Points: n\/a\n🏦 Current balance: unknown$/);
  const stale = formatFooter(facts({ balanceAgeMs: 5 * 60_000 }));
  assert.match(stale, /🏦 Current balance: 1,234,567 points \(as of 5 min ago\)$/);
});

Deno.test("formatFooter warns over POINTS_PER_MESSAGE_WARN with up to three cheaper models", () => {
  const text = formatFooter(facts({
    points: { estimated: false, points: 6000 },
    cheaper: ["A", "B", "C", "D"],
  }));
  assert.ok(
    text.endsWith(
      "\n⚠️ This message cost more than 5,000 points. Consider starting a new chat, or a cheaper model: A, B, C.",
    ),
  );
  const none = formatFooter(facts({ points: { estimated: false, points: 6000 } }));
  assert.ok(none.endsWith("Consider starting a new chat."));
  // The answer cost most of it: a new chat would cost as much.
  const answer = formatFooter(facts({
    points: { estimated: false, points: 6000 },
    cheaper: ["A"],
    inputHeavy: false,
  }));
  assert.ok(answer.endsWith("\n⚠️ This message cost more than 5,000 points. Cheaper models: A."));
  assert.equal(stripFooter(`Hi.${answer}`), "Hi.");
  assert.ok(
    formatFooter(facts({ points: { estimated: false, points: 6000 }, inputHeavy: false }))
      .endsWith("\n⚠️ This message cost more than 5,000 points."),
  );
  assert.ok(
    !formatFooter(facts({ warnAbove: 0, points: { estimated: false, points: 9e9 } })).includes(
      "⚠️",
    ),
  );
});

Deno.test("formatFooter warns about a media model naming only cheaper models, and stripFooter removes it", () => {
  const dear = { estimated: false as const, points: 84_000 };
  const named = formatFooter(facts({ points: dear, cheaper: ["Kling-2.1"], media: true }));
  assert.ok(
    named.endsWith("\n⚠️ This message cost more than 5,000 points. Cheaper models: Kling-2.1."),
    named,
  );
  const alone = formatFooter(facts({ points: dear, media: true, cap: 10_000 }));
  assert.match(alone, /\n⚠️ This message cost more than 5,000 points\.\n⛔ /);
  for (const footer of [named, alone]) {
    assert.doesNotMatch(footer, /new chat/);
    assert.equal(stripFooter(`![fox.png](https://x/y)${footer}`), "![fox.png](https://x/y)");
  }
});

Deno.test("formatFooter says when the cost went over MAX_POINTS_PER_MESSAGE, and shows clipping", () => {
  const text = formatFooter(facts({
    points: { estimated: false, points: 12_000 },
    cap: 10_000,
    clipped: { dropped: 3, tokensBefore: 250_000, tokensAfter: 190_000 },
  }));
  const lines = text.split("\n");
  assert.equal(lines[6], "✂️ Context clipped: dropped 3 messages (250,000 → 190,000 tokens)");
  assert.match(lines[7], /^⚠️/);
  assert.equal(lines[8], "⛔ This message went over MAX_POINTS_PER_MESSAGE (10,000 points).");
  // An answer stopped at the limit the cap set says so, before it says it went over.
  const cut = formatFooter(facts({
    points: { estimated: false, points: 10_050 },
    cap: 10_000,
    cutAt: 25_571,
  })).split("\n");
  assert.deepEqual(cut.slice(-2), [
    "⛔ Answer stopped at 25,571 tokens, as far as MAX_POINTS_PER_MESSAGE (10,000 points) allows.",
    "⛔ This message went over MAX_POINTS_PER_MESSAGE (10,000 points).",
  ]);
  // A dropped part too large to count: its figure is an estimate, and says so.
  const about = formatFooter(facts({
    clipped: { dropped: 100_000, tokensBefore: 310_000, tokensAfter: 1_990, approximate: true },
  }));
  assert.equal(
    about.split("\n")[6],
    "✂️ Context clipped: dropped 100000 messages (about 310,000 → 1,990 tokens)",
  );
  // Kept messages beyond the request's counting budget: the kept figure is one too, and the
  // footer is still stripped when the answer is sent back.
  const both = formatFooter(facts({
    clipped: {
      dropped: 9,
      tokensBefore: 900_000,
      tokensAfter: 120_000,
      approximate: true,
      approximateAfter: true,
    },
  }));
  assert.equal(
    both.split("\n")[6],
    "✂️ Context clipped: dropped 9 messages (about 900,000 → about 120,000 tokens)",
  );
  assert.equal(stripFooter(`Hello.${both}`), "Hello.");
});

/** Usages Poe may send with a figure missing, or not a number. */
// deno-lint-ignore no-explicit-any
const ODD_USAGES: any[] = [
  { prompt_tokens: 7, total_tokens: 12 },
  { completion_tokens: 5, total_tokens: 12 },
  { total_tokens: 12 },
  { prompt_tokens: 7, completion_tokens: 5 },
  { prompt_tokens: "7", completion_tokens: null, total_tokens: "12" },
  {},
];

Deno.test("formatFooter never prints NaN for a usage with a figure missing, or not a number", () => {
  const lines = ODD_USAGES.map((usage) => formatFooter(facts({ usage })).split("\n")[3]);
  assert.deepEqual(lines, [
    "📊 Tokens: 12 (Input: 7, Output: 5)",
    "📊 Tokens: 12",
    "📊 Tokens: 12",
    "📊 Tokens: 12 (Input: 7, Output: 5)",
    "📊 Tokens: n/a",
    "📊 Tokens: n/a",
  ]);
  const nan = formatFooter(facts({ points: { estimated: false, points: NaN } }));
  assert.match(nan, /\n💰 Points: n\/a\n/);
});

Deno.test("stripFooter removes the footers earlier versions wrote with Output: NaN", () => {
  const old = "\n\n---\n📊 Tokens: NaN (Input: 7, Output: NaN)\n💰 Points (est.): 140 " +
    "(Base: 140, Tokens: 0.4)\n🏦 Current balance: unknown";
  assert.equal(stripFooter(`Hello.${old}`), "Hello.");
});

Deno.test("stripFooter removes the clipping line earlier versions wrote, without about", () => {
  const old = "\n\n---\n📊 Tokens: 2100 (Input: 2000, Output: 100)\n💰 Points: 339\n" +
    "🏦 Current balance: 1,234 points\n✂️ Context clipped: dropped 100001 messages " +
    "(1,505,845 → 1,998 tokens)";
  assert.equal(stripFooter(`Hello.${old}`), "Hello.");
});

Deno.test("stripFooter removes every footer formatFooter writes, and only those", () => {
  const variants: FooterFacts[] = [
    facts(),
    facts({ usage: null, points: null, balance: null }),
    facts({ points: { estimated: true, points: 300, base: 226, tokens: 74.04 } }),
    facts({ balanceAgeMs: 3 * 3_600_000 }),
    facts({ usage: { ...USAGE, tokens_estimated: true } }),
    ...ODD_USAGES.map((usage) => facts({ usage })),
    // Estimates piled up while the Usage API failed: a balance under zero.
    facts({
      balance: -1_234,
      points: { estimated: true, points: 1_500, base: 140, tokens: 1_360 },
    }),
    facts({ usage: { prompt_tokens: -1, completion_tokens: 3, total_tokens: 2 } }),
    facts({
      points: { estimated: false, points: 123_456 },
      cap: 100_000,
      cheaper: ["GPT-5-mini", "GPT-5-nano"],
      clipped: { dropped: 1, tokensBefore: 10, tokensAfter: 5 },
    }),
    facts({ clipped: { dropped: 9, tokensBefore: 1_234_567, tokensAfter: 99, approximate: true } }),
    facts({ points: { estimated: false, points: 900 }, cap: 1_000, cutAt: 5_571 }),
    facts({ points: { estimated: false, points: 1_200 }, cap: 1_000, cutAt: 5_571 }),
  ];
  for (const f of variants) {
    const footer = formatFooter(f);
    assert.equal(stripFooter(`Hello there.${footer}`), "Hello there.");
    assert.equal(stripFooter(`Hello there.${footer}\n`), "Hello there.");
    assert.equal(stripFooter(footer), "");
    assert.equal(stripFooter(footer.trimStart()), "");
  }
});

Deno.test("stripFooter removes exact footers wherever they are, and nothing else", () => {
  const footer = formatFooter(facts());
  const untouched = [
    "No footer here.",
    `Edited${footer.replace("Points: 339", "Points: lots")}`,
    "---\n📊 Tokens: 12 (Input: 10, Output: 2)",
    `Inline text---\n📊 Tokens: 12 (Input: 10, Output: 2)`,
  ];
  for (const text of untouched) assert.equal(stripFooter(text), text, text);
  const cleaned: [string, string][] = [
    [`Quoted:${footer}\nand then more text.`, "Quoted:\nand then more text."],
    [`Single newline\n${footer.trimStart()}`, "Single newline"],
    [`Two${footer}${footer.replace("339", "abc")}`, `Two${footer.replace("339", "abc")}`],
    [`A${footer}\nB${footer}`, "A\nB"],
    // Cline and its forks mark an answer they cut at a tool's result, after the footer.
    [
      `<read_file>x</read_file>${footer}\n\n[Response interrupted by a tool use result.]`,
      "<read_file>x</read_file>\n\n[Response interrupted by a tool use result.]",
    ],
    // A Continue button's continuation, glued to the footer's last line (SillyTavern adds a
    // space, Open WebUI nothing).
    [`Hello there.${footer} The end.`, "Hello there. The end."],
    [`Hello there.${footer}And then`, "Hello there.And then"],
    [`Hello there.${formatFooter(facts({ balanceAgeMs: 120_000 }))} More.`, "Hello there. More."],
    // After a warning line naming cheaper models (names have no spaces): the continuation stays
    // whole, up to its own last period.
    [
      `Chapter one ends here.${
        formatFooter(facts({
          points: { estimated: false, points: 6000 },
          cheaper: ["GPT-5-mini", "Claude-Haiku-4.5"],
        }))
      } Chapter two: the knight rode on. The gate was open`,
      "Chapter one ends here. Chapter two: the knight rode on. The gate was open",
    ],
    [
      `Here is your image.${
        formatFooter(facts({
          points: { estimated: false, points: 84_000 },
          cheaper: ["Kling-2.1"],
          media: true,
        }))
      } Enjoy! Really.`,
      "Here is your image. Enjoy! Really.",
    ],
    // Line ends turned into CRLF by a client.
    [`Windows${footer.replaceAll("\n", "\r\n")}\r\n`, "Windows"],
  ];
  for (const [text, want] of cleaned) assert.equal(stripFooter(text), want, text);
});

Deno.test("stripFooters cleans strings and text parts of every role but tool results, keeps everything else", () => {
  const footer = formatFooter(facts());
  const messages: ChatMessage[] = [
    { role: "system", content: `sys${footer}` },
    { role: "user", content: `user${footer}` },
    { role: "assistant", content: `one${footer}`, name: "bot" },
    {
      role: "assistant",
      content: [{ type: "text", text: "two" }, { type: "text", text: `more${footer}` }],
    },
    {
      role: "assistant",
      content: [{ type: "text", text: "three" }, { type: "text", text: footer }],
    },
    { role: "assistant", content: null, tool_calls: [] },
    { role: "tool", content: `tool${footer}`, tool_call_id: "x" },
  ];
  const out = stripFooters(messages);
  assert.notEqual(out, messages);
  // Clients resend answers as user text, footers included.
  assert.deepEqual(out[0], { role: "system", content: "sys" });
  assert.deepEqual(out[1], { role: "user", content: "user" });
  assert.deepEqual(out[2], { role: "assistant", content: "one", name: "bot" });
  assert.deepEqual(out[3].content, [{ type: "text", text: "two" }, { type: "text", text: "more" }]);
  assert.deepEqual(out[4].content, [{ type: "text", text: "three" }]);
  assert.equal(out[5], messages[5]);
  assert.equal(out[6], messages[6]);
  // The input is not mutated.
  assert.equal(messages[2].content, `one${footer}`);
});

Deno.test("stripFooters returns the same array when nothing changed", () => {
  const messages: ChatMessage[] = [
    { role: "user", content: "hi" },
    { role: "assistant", content: "hello" },
    { role: "assistant", content: [{ type: "text", text: "x" }] },
  ];
  assert.equal(stripFooters(messages), messages);
});

Deno.test("stripFooter is fast on a huge answer full of lookalike lines", () => {
  const bulk = "\n\n---\n📊 Tokens: 1 (Input: 1, Output: x)\n".repeat(50_000);
  const t0 = performance.now();
  assert.equal(stripFooter(bulk), bulk);
  assert.ok(performance.now() - t0 < 200);
});

Deno.test("stripFooter takes out the footers the Python proxy wrote, in each of its layouts", () => {
  const real = "\n\n---\n📊 Tokens: 1234 (Input: 1000, Output: 234)\n💰 Points: 339\n" +
    "🏦 Current balance: 1234567 points";
  const estimate = "\n\n---\n📊 Tokens: 1234 (Input: 1000, Output: 234)\n" +
    "💰 Points (est.): 300.0 (Base: 226, Tokens: 74.0)\n🏦 Current balance: 1234567 points";
  const noUsage = "\n\n---\n💰 Points: 339\n🏦 Current balance: 1234567 points";
  const warned = real + "\n\n⚠️ High cost detected for this response.\n" +
    "- Your current chat might have long context. Consider starting a new chat to reduce context length.\n" +
    "- Or try a cheaper model: GPT-4.1-mini, o4-mini, Mistral-Small-3.1\n";
  for (const footer of [real, estimate, noUsage, warned]) {
    assert.equal(stripFooter(`Answer.${footer}`), "Answer.", JSON.stringify(footer));
  }
  // A text that only looks like one keeps its lines.
  const prose = "Notes:\n---\n💰 Points: a lot\n🏦 Current balance: fine";
  assert.equal(stripFooter(prose), prose);
});
