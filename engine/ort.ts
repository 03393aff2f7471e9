/**
 * The one file of the engine that imports ONNX Runtime (Node side; the edge's Worker has its own).
 *
 * - `node`: onnxruntime-node, native CPU kernels; on GPU hosts pass `executionProviders: ["cuda"]`
 *   (the CUDA provider must then be installed with onnxruntime-node's GPU files).
 * - `web`: onnxruntime-web (WebAssembly), the build that also runs in browsers and Workers.
 */
import type * as Ort from "onnxruntime-common";

export type OrtBackend = "node" | "web";
export type OrtModule = Pick<typeof Ort, "InferenceSession" | "Tensor">;

export interface OrtOptions {
  backend?: OrtBackend;
  /** onnxruntime-node only: e.g. ["cuda", "cpu"]. Default ["cpu"]. */
  executionProviders?: string[];
  /** Intra-op threads per session. 1 is fastest for these small models on a shared 2-core host. */
  threads?: number;
}

const loaded = new Map<OrtBackend, Promise<OrtModule>>();

export function loadOrt(backend: OrtBackend = "node"): Promise<OrtModule> {
  let p = loaded.get(backend);
  if (!p) {
    p =
      backend === "node"
        ? import("onnxruntime-node").then((m) => (m.default ?? m) as unknown as OrtModule)
        : import("onnxruntime-web").then((m) => {
            const ort = (m.default ?? m) as unknown as OrtModule & { env: Ort.Env };
            ort.env.wasm.numThreads = 1; // no worker threads: deterministic and Workers-compatible
            return ort;
          });
    loaded.set(backend, p);
  }
  return p;
}

export async function createSession(model: Uint8Array, opts: OrtOptions = {}): Promise<Ort.InferenceSession> {
  const backend = opts.backend ?? "node";
  const ort = await loadOrt(backend);
  const sessionOptions: Ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: "all",
    intraOpNumThreads: opts.threads ?? 1,
    interOpNumThreads: 1,
    executionMode: "sequential",
  };
  if (backend === "node") sessionOptions.executionProviders = (opts.executionProviders ?? ["cpu"]) as Ort.InferenceSession.ExecutionProviderConfig[];
  else sessionOptions.executionProviders = ["wasm"];
  return ort.InferenceSession.create(model, sessionOptions);
}
