import { fileURLToPath } from "node:url";
import type { CausalLM } from "../../engine/causal-lm.ts";
import { loadOnnxCausalLM } from "../../engine/onnx-lm.ts";
import type { OrtBackend } from "../../engine/ort.ts";

export const MODELS_DIR = fileURLToPath(new URL("../../models/", import.meta.url));
const cache = new Map<string, Promise<CausalLM>>();

/** The committed models (verifier, drafter-base, drafter-balanced), loaded once per test file. */
export function model(name: string, backend: OrtBackend = "node"): Promise<CausalLM> {
  const key = `${backend}:${name}`;
  let m = cache.get(key);
  if (!m) cache.set(key, (m = loadOnnxCausalLM(MODELS_DIR + name, { backend })));
  return m;
}
