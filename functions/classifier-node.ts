/**
 * Node loader for the task classifier (the Node edge, tests): the committed model in
 * `models/task-classifier/`, run by onnxruntime-web's wasm backend on one thread, the same
 * runtime the edge Worker uses; concurrent requests' texts batched per event-loop pass.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { createTaskClassifier, type OrtLike, type TaskClassifier, type TaskClassifierMeta } from "./classifier.ts";

export const TASK_CLASSIFIER_DIR = fileURLToPath(new URL("../models/task-classifier/", import.meta.url));

const cache = new Map<string, Promise<TaskClassifier>>();

export async function loadTaskClassifierFiles(dir = TASK_CLASSIFIER_DIR): Promise<{ model: Uint8Array; meta: TaskClassifierMeta }> {
  const d = dir.endsWith("/") ? dir : `${dir}/`;
  const [model, meta] = await Promise.all([readFile(`${d}model.onnx`), readFile(`${d}meta.json`, "utf8")]);
  return { model: new Uint8Array(model.buffer, model.byteOffset, model.byteLength), meta: JSON.parse(meta) as TaskClassifierMeta };
}

/** The classifier from `dir` (default: the committed one), created once per process and directory. */
export function loadTaskClassifier(dir = TASK_CLASSIFIER_DIR): Promise<TaskClassifier> {
  let c = cache.get(dir);
  if (!c) {
    c = (async () => {
      const m = await import("onnxruntime-web");
      const ort = (m.default ?? m) as unknown as OrtLike & { env: { wasm: { numThreads?: number } } };
      ort.env.wasm.numThreads = 1; // no worker threads: as in a Worker, and deterministic
      const { model, meta } = await loadTaskClassifierFiles(dir);
      // Requests read in one pass of the event loop share a run (see BatchingOptions.defer).
      return createTaskClassifier(ort, model, meta, { defer: (run) => void setImmediate(run) });
    })();
    c.catch(() => cache.delete(dir));
    cache.set(dir, c);
  }
  return c;
}
