/**
 * The engine's public surface: load models, run (speculative) generation, read plain-data stats.
 */
export type { CausalLM, LMSession } from "./causal-lm.ts";
export { loadOnnxCausalLM } from "./onnx-lm.ts";
export type { OrtBackend, OrtOptions } from "./ort.ts";
export { loadTokenizer, type Tokenizer } from "./tokenizer.ts";
export { argmax, softmax, targetDistribution, overlap, sampleIndex, type TargetParams } from "./sampling.ts";
export { verifyDraft, residual, type Verification } from "./rejection-sampler.ts";
export {
  generate,
  speculativeSteps,
  summarize,
  maxNewTokensFor,
  type GenerateOptions,
  type Generation,
  type GenerationStats,
  type StepStats,
  type StepEvent,
  type FinishReason,
} from "./speculative.ts";
