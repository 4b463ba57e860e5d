/** @module RegistryReloader: a valid file replaces the registry, a bad one is logged and ignored. */
import assert from "node:assert/strict";
import { type LoadedRegistry, RegistryReloader } from "../lib/registry_reload.ts";
import { ModelRegistry } from "../lib/models.ts";
import { memoryLogger } from "../lib/log.ts";

const SMALL_YAML = "models:\n  text:\n    - GPT-4o-mini\n    - Claude-Haiku-4.5\n";
const BAD_YAML = "models:\n  text:\n    - poe_name: [1\n";

/** A registry of `n` made-up models. */
function registryOf(n: number): ModelRegistry {
  const names = Array.from({ length: n }, (_, i) => `    - Model-${i}\n`).join("");
  return ModelRegistry.parse(`models:\n  text:\n${names}`, `${n}.yaml`);
}

Deno.test("RegistryReloader swaps in a valid file and keeps the old registry on a bad one", async () => {
  const logger = memoryLogger();
  let text = SMALL_YAML;
  const reloader = new RegistryReloader({
    initial: ModelRegistry.parse("models:\n  text:\n    - One\n", "first.yaml"),
    load: () =>
      Promise.resolve({ registry: ModelRegistry.parse(text, "m.yaml"), source: "m.yaml" }),
    logger,
  });
  const before = reloader.registry;
  assert.equal(await reloader.reload(), true);
  assert.equal(reloader.registry.size, 2);
  assert.equal(before.size, 1, "a request holding the old registry keeps it");
  text = BAD_YAML;
  assert.equal(await reloader.reload(), false);
  assert.equal(reloader.registry.size, 2);
  const failed = logger.lines.find((l) => l.includes("models reload failed"))!;
  assert.match(failed, /ERROR/);
  assert.match(failed, /m\.yaml:\d+:\d+/, "the ModelsError's position is logged");
  // Reloads run one after another, so the newest file wins.
  text = "models:\n  text:\n    - A\n    - B\n    - C\n";
  const first = reloader.reload();
  text = SMALL_YAML + "    - Third\n";
  await Promise.all([first, reloader.reload()]);
  assert.equal(reloader.registry.size, 3);
});

Deno.test("RegistryReloader.registry is the initial one until a reload succeeds", async () => {
  const initial = registryOf(1);
  const reloader = new RegistryReloader({
    initial,
    load: () => Promise.reject(new Error("no file")),
    logger: memoryLogger(),
  });
  assert.equal(reloader.registry, initial);
  assert.equal(await reloader.reload(), false);
  assert.equal(reloader.registry, initial);
});

Deno.test("RegistryReloader logs a success with the source and both sizes", async () => {
  const logger = memoryLogger();
  const reloader = new RegistryReloader({
    initial: registryOf(1),
    load: () => Promise.resolve({ registry: registryOf(3), source: "/etc/poe-proxy/models.yaml" }),
    logger,
  });
  assert.equal(await reloader.reload(), true);
  assert.equal(logger.lines.length, 1);
  assert.match(
    logger.lines[0],
    / INFO {2}models reloaded source=\/etc\/poe-proxy\/models\.yaml models=3 previous=1$/,
  );
});

Deno.test("RegistryReloader never throws: a load that throws anything, at once or later, is logged", async () => {
  const failures: [() => Promise<LoadedRegistry>, string][] = [
    [() => Promise.reject("a plain string"), 'error="a plain string"'],
    [() => {
      throw new TypeError("thrown before any promise");
    }, 'error="thrown before any promise"'],
    [() => Promise.resolve(null as unknown as LoadedRegistry), "error="],
  ];
  for (const [load, error] of failures) {
    const logger = memoryLogger();
    const reloader = new RegistryReloader({ initial: registryOf(2), load, logger });
    assert.equal(await reloader.reload(), false);
    assert.equal(reloader.registry.size, 2);
    assert.equal(logger.lines.length, 1);
    assert.match(logger.lines[0], /ERROR models reload failed; keeping the previous models /);
    assert.ok(logger.lines[0].includes(error), logger.lines[0]);
    assert.match(logger.lines[0], /models=2$/);
  }
});

Deno.test("RegistryReloader runs reloads one at a time, in order, so the file read last wins", async () => {
  // The first load is slow, the second fast: without the queue the first would land last.
  const gates = [Promise.withResolvers<void>(), Promise.withResolvers<void>()];
  const started: number[] = [];
  let running = 0;
  let overlapped = false;
  let call = 0;
  const reloader = new RegistryReloader({
    initial: registryOf(1),
    load: async () => {
      const n = call++;
      started.push(n);
      overlapped ||= running > 0;
      running++;
      await gates[n].promise;
      running--;
      return { registry: registryOf(n === 0 ? 5 : 7), source: `load ${n}` };
    },
    logger: memoryLogger(),
  });
  const first = reloader.reload();
  const second = reloader.reload();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(started, [0], "the second waits for the first");
  gates[1].resolve();
  gates[0].resolve();
  assert.deepEqual(await Promise.all([first, second]), [true, true]);
  assert.equal(overlapped, false);
  assert.equal(reloader.registry.size, 7);
});

Deno.test("RegistryReloader: a failed reload does not stop the ones queued after it", async () => {
  const results: (ModelRegistry | Error)[] = [new Error("bad file"), registryOf(4)];
  const reloader = new RegistryReloader({
    initial: registryOf(1),
    load: () => {
      const next = results.shift()!;
      return next instanceof Error
        ? Promise.reject(next)
        : Promise.resolve({ registry: next, source: "m.yaml" });
    },
    logger: memoryLogger(),
  });
  assert.deepEqual(await Promise.all([reloader.reload(), reloader.reload()]), [false, true]);
  assert.equal(reloader.registry.size, 4);
});

Deno.test("RegistryReloader warns, as at startup, about max_tokens on a media model it reloaded", async () => {
  const logger = memoryLogger();
  const reloader = new RegistryReloader({
    initial: registryOf(1),
    load: () =>
      Promise.resolve({
        registry: ModelRegistry.parse(
          "models:\n  image:\n    - {poe_name: Image-One, max_tokens: 100}\n",
          "m.yaml",
        ),
        source: "m.yaml",
      }),
    logger,
  });
  assert.equal(await reloader.reload(), true);
  const line = logger.lines.find((l) => l.includes("max_tokens ignored"));
  assert.ok(line, logger.lines.join("\n"));
  assert.match(line, /WARN/);
  assert.match(line, /ignored for: Image-One/);
});

Deno.test("RegistryReloader warns, as at startup, about cheaper lists naming another modality's model", async () => {
  const logger = memoryLogger();
  const reloader = new RegistryReloader({
    initial: registryOf(1),
    load: () =>
      Promise.resolve({
        registry: ModelRegistry.parse(
          "models:\n  text:\n    - {poe_name: Text-One, base: 9, cheaper: [Image-One]}\n" +
            "  image:\n    - {poe_name: Image-One, base: 1}\n",
          "m.yaml",
        ),
        source: "m.yaml",
      }),
    logger,
  });
  assert.equal(await reloader.reload(), true);
  const line = logger.lines.find((l) => l.includes("cheaper ignored"));
  assert.ok(line, logger.lines.join("\n"));
  assert.match(line, /WARN/);
  assert.match(line, /Text-One \(a text model\) lists Image-One, an image model/);
});

Deno.test("RegistryReloader warns, as at startup, about models without a price under POINTS_CUTOFF", async () => {
  const load = () =>
    Promise.resolve({
      registry: ModelRegistry.parse(
        "models:\n  text:\n    - Bare\n    - {poe_name: Priced, base: 9}\n  video:\n    - Veo-3\n",
        "m.yaml",
      ),
      source: "m.yaml",
    });
  const logger = memoryLogger();
  const reloader = new RegistryReloader({
    initial: registryOf(1),
    load,
    logger,
    guards: { pointsCutoff: 5000, maxPointsPerMessage: 0 },
  });
  assert.equal(await reloader.reload(), true);
  const line = logger.lines.find((l) => l.includes("cutoff blind"));
  assert.ok(line, logger.lines.join("\n"));
  assert.match(line, /WARN/);
  assert.match(line, /Bare is held at the estimate of the dearest priced model/);
  assert.match(line, /Veo-3 holds nothing/);
  // No cutoff set: nothing to warn about.
  const quiet = memoryLogger();
  await new RegistryReloader({ initial: registryOf(1), load, logger: quiet }).reload();
  assert.equal(quiet.lines.some((l) => l.includes("cutoff blind")), false);
});
