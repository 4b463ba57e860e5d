/**
 * @module Where the models come from (`MODELS_FILE`, ./models.yaml or the copy embedded in the
 * program) and reading them, at startup and on a reload. The files themselves are read by main.ts,
 * through the function it passes.
 */
import { StartupError } from "./command_line.ts";
import type { Config } from "./config.ts";
import { ModelRegistry } from "./models.ts";
import type { LoadedRegistry } from "./registry_reload.ts";

/** How the embedded models file is named in messages and logs. */
const EMBEDDED_SOURCE = "(embedded models.yaml)";

/**
 * Where the models come from: a file, named in messages by `label` (`MODELS_FILE "/m.yaml"`,
 * `./models.yaml`), or (`file` null) the copy embedded in the program.
 */
export interface ModelsSource {
  file: string | null;
  label: string;
}

/** The models and the place they were read from, which a reload reads again. */
export interface LoadedModels extends LoadedRegistry {
  from: ModelsSource;
}

/**
 * Reads the text of a models file, as `Deno.readTextFile` does; `file` null is the copy embedded
 * in the program (`deno compile --include models.yaml`).
 */
export type ReadModelsText = (file: string | null) => Promise<string>;

/** Reads and validates `from`; a file that cannot be read is an error, never the embedded copy. */
async function readModels(from: ModelsSource, read: ReadModelsText): Promise<LoadedModels> {
  const file = from.file;
  if (file === null) {
    const text = await read(null);
    return { registry: ModelRegistry.parse(text, EMBEDDED_SOURCE), source: EMBEDDED_SOURCE, from };
  }
  let text: string;
  try {
    text = await read(file);
  } catch (err) {
    throw new StartupError(
      `Cannot read ${from.label}: ${(err as Error).message}${dockerPathHint(file, err)}`,
      { cause: err },
    );
  }
  return { registry: ModelRegistry.parse(text, file), source: file, from };
}

/** The path the Python proxy's `.env` names: its Docker image's copy of the models. */
const PYTHON_DOCKER_MODELS = "/app/models.yaml";

/**
 * A hint for a `.env` brought from the Python proxy, whose `MODELS_FILE` names a path of its
 * Docker image that does not exist outside one.
 */
function dockerPathHint(file: string, err: unknown): string {
  if (file !== PYTHON_DOCKER_MODELS || !(err instanceof Deno.errors.NotFound)) return "";
  return ". That path exists in the Docker image only: outside Docker, delete the MODELS_FILE line " +
    "to use the built-in models, or point it at your file";
}

/**
 * Loads the models: `MODELS_FILE`; else ./models.yaml, or the embedded copy only when there is no
 * ./models.yaml (one that cannot be read is an error: its models must not be replaced unseen).
 * A reload passes the place the models came from: a file is read again and nothing else, so a
 * moved or unreadable file keeps the old models; the embedded copy gives way to a ./models.yaml
 * put there since (a systemd unit's working directory).
 */
export async function loadRegistry(
  config: Pick<Config, "modelsFile">,
  read: ReadModelsText,
  previous?: ModelsSource,
): Promise<LoadedModels> {
  if (config.modelsFile !== null) {
    return await readModels({
      file: config.modelsFile,
      label: `MODELS_FILE ${JSON.stringify(config.modelsFile)}`,
    }, read);
  }
  const local = { file: "models.yaml", label: "./models.yaml" };
  if (previous !== undefined && previous.file !== null) return await readModels(local, read);
  try {
    return await readModels(local, read);
  } catch (err) {
    if (!(err instanceof StartupError && err.cause instanceof Deno.errors.NotFound)) throw err;
  }
  return await readModels({ file: null, label: EMBEDDED_SOURCE }, read);
}
