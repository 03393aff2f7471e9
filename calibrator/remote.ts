/**
 * The remote backend: runs calibration prompts against origin pools over HTTP — a fleet of GPU
 * hosts running the fairspec origin, vLLM or SGLang — and reads each request's acceptance counts
 * from the response (`metrics.speculative_decoding`, vLLM's names).
 *
 * - Bounded concurrency: `concurrencyPerUrl` requests in flight per origin URL, the pool's URLs
 *   sharing one queue of prompts; 429/503 answers are retried after their Retry-After (bounded).
 * - Online α from per-position counts: position k is reached by every draft whose first k − 1
 *   tokens were accepted, so α̂ = Σ_k accepted_k / Σ_k reached_k with reached_1 = drafts and
 *   reached_k = accepted_{k−1} — each reached position is one Bernoulli(α) trial.
 * - Speed-up is paired: the same prompt and seed at γ = 0 and at the pool's parameters, on the same
 *   host for fairspec pools (parameters travel per request), else against a γ = 0 pool.
 */
import type { Interval95 } from "../core/calibration.ts";
import { bootstrap, ratioOfSums } from "../core/bootstrap.ts";
import type { Rng } from "../core/rng.ts";
import { requestBodyFor, type Pool } from "../origin/pools.ts";
import type { SpeculativeParams } from "../origin/openai.ts";

export interface RemoteSample {
  latencyMs: number;
  completionTokens: number;
  chars: number;
  steps: number;
  drafts: number;
  draftTokens: number;
  accepted: number;
  acceptedPerPos: number[];
}

export interface RemoteRunOptions {
  temperature: number;
  topP?: number;
  maxTokens: number;
  /** Seed of prompt i is seed + i, so paired runs see the same randomness. */
  seed: number;
  wanted?: SpeculativeParams;
  concurrencyPerUrl?: number;
  timeoutMs?: number;
  retries?: number;
  fetch?: typeof fetch;
  model?: string;
}

export class RemoteError extends Error {}

async function postCompletion(url: string, body: Record<string, unknown>, o: RemoteRunOptions): Promise<RemoteSample> {
  const f = o.fetch ?? fetch;
  const endpoint = new URL("v1/completions", url.endsWith("/") ? url : `${url}/`).href;
  for (let attempt = 0; ; attempt++) {
    const t0 = performance.now();
    const res = await f(endpoint, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(o.timeoutMs ?? 120_000),
    }).catch((e: Error) => {
      throw new RemoteError(`${endpoint}: ${e.name === "TimeoutError" ? "timed out" : e.message}`);
    });
    const text = await res.text();
    const latencyMs = performance.now() - t0;
    if ((res.status === 429 || res.status === 503) && attempt < (o.retries ?? 5)) {
      const wait = Math.min(30, Number(res.headers.get("retry-after")) || 1);
      await new Promise((r) => setTimeout(r, wait * 1000));
      continue;
    }
    if (!res.ok) throw new RemoteError(`${endpoint}: HTTP ${res.status}: ${text.slice(0, 200)}`);
    const j = JSON.parse(text);
    const sd = j.metrics?.speculative_decoding ?? j.usage?.speculative_decoding ?? null;
    return {
      latencyMs,
      completionTokens: j.usage?.completion_tokens ?? 0,
      chars: [...String(j.choices?.[0]?.text ?? "")].length,
      steps: sd?.num_verifier_steps ?? j.usage?.completion_tokens ?? 0,
      drafts: sd?.num_drafts ?? 0,
      draftTokens: sd?.num_draft_tokens ?? 0,
      accepted: sd?.num_accepted_draft_tokens ?? 0,
      acceptedPerPos: sd?.num_accepted_tokens_per_pos ?? [],
    };
  }
}

/** Runs every prompt once on the pool; results in prompt order. */
export async function runOnPool(pool: Pool, prompts: readonly string[], o: RemoteRunOptions): Promise<RemoteSample[]> {
  const out: RemoteSample[] = new Array(prompts.length);
  let next = 0;
  const worker = async (url: string) => {
    while (next < prompts.length) {
      const i = next++;
      const body = requestBodyFor(
        pool,
        { model: o.model ?? pool.model ?? "fairspec", prompt: prompts[i]!, max_tokens: o.maxTokens, temperature: o.temperature, top_p: o.topP ?? 1, seed: o.seed + i },
        o.wanted,
      );
      out[i] = await postCompletion(url, body, o);
    }
  };
  const per = Math.max(1, o.concurrencyPerUrl ?? 2);
  await Promise.all(pool.urls.flatMap((u) => Array.from({ length: per }, () => worker(u))));
  return out;
}

/** α̂ from per-position acceptance counts (see the file comment). */
export function onlineAlpha(samples: readonly RemoteSample[], rng: Rng, resamples = 1000): Interval95 {
  const reached = (s: RemoteSample) => s.acceptedPerPos.reduce((acc, _, k) => acc + (k === 0 ? s.drafts : s.acceptedPerPos[k - 1]!), 0);
  const accepted = (s: RemoteSample) => s.acceptedPerPos.reduce((a, x) => a + x, 0);
  const b = bootstrap(samples, ratioOfSums(accepted, reached), rng, resamples);
  return { estimate: b.estimate, lo: b.lo, hi: b.hi };
}

export interface RemotePoolMeasurement {
  alpha: Interval95 | null;
  speedup: Interval95;
  msPerChar: number;
  meanAcceptanceLength: number | null;
}

/**
 * Paired measurement of a pool against γ = 0: on the same pool (fairspec) or on `baseline`
 * (a γ = 0 pool, needed for vLLM / SGLang pools whose γ is fixed).
 */
export async function measurePoolRemote(pool: Pool, prompts: readonly string[], o: RemoteRunOptions & { baseline?: Pool; rng: Rng; resamples?: number }): Promise<RemotePoolMeasurement> {
  const basePool = pool.kind === "fairspec" ? pool : o.baseline;
  if (!basePool) throw new RemoteError(`pool ${pool.id} (${pool.kind}) has a fixed γ: add a γ = 0 pool to the pools config to measure its speed-up against`);
  const spec = await runOnPool(pool, prompts, o);
  const base = await runOnPool(basePool, prompts, { ...o, wanted: { gamma: 0 } });
  const units = spec.map((s, i) => ({ s, b: base[i]! }));
  const sp = bootstrap(units, ratioOfSums((u) => u.b.latencyMs, (u) => u.s.latencyMs), o.rng, o.resamples ?? 1000);
  const drafted = spec.reduce((a, s) => a + s.drafts, 0);
  const steps = spec.reduce((a, s) => a + s.steps, 0);
  return {
    alpha: drafted > 0 ? onlineAlpha(spec, o.rng, o.resamples) : null,
    speedup: { estimate: sp.estimate, lo: sp.lo, hi: sp.hi },
    msPerChar: spec.reduce((a, s) => a + s.latencyMs, 0) / Math.max(1, spec.reduce((a, s) => a + s.chars, 0)),
    meanAcceptanceLength: steps > 0 ? 1 + spec.reduce((a, s) => a + s.accepted, 0) / steps : null,
  };
}
