/** @module The default log writer: lines batched, none lost on exit or on a crash. */
import assert from "node:assert/strict";

const LOG = new URL("../lib/log.ts", import.meta.url).href;

async function run(ending: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = `import { createLogger } from "${LOG}";
const logger = createLogger();
logger.info("first", { n: 1 });
logger.info("second", { n: 2 });
${ending}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("log: info lines written in one batch reach stdout in order, whatever ends the process", async () => {
  const endings: [string, number][] = [
    ["", 0],
    ["Deno.exit(3);", 3],
    ['throw new Error("crash");', 1],
    ['Promise.reject(new Error("crash"));', 1],
    ['setTimeout(() => { throw new Error("crash"); }, 0);', 1],
    ['logger.warn("warned", {});', 0],
  ];
  for (const [ending, code] of endings) {
    const r = await run(ending);
    assert.equal(r.code, code, ending);
    assert.match(r.stdout, /INFO {2}first n=1\n.*INFO {2}second n=2\n/s, ending || "(end)");
  }
});
