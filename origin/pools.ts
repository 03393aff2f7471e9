/**
 * Origin pools: one config format for every kind of inference server the edge routes to.
 *
 *   { "pools": [ { "id", "kind": "fairspec" | "vllm" | "sglang", "urls": [...],
 *                  "drafter", "gamma", "proposal_temperature", "model"?, "chat_template"? } ] }
 *
 * For `fairspec` pools drafter / gamma / proposal_temperature are the defaults of the origin, and
 * each request may override them in the `speculative` extension field. For `vllm` and `sglang`
 * pools they are the server's fixed launch settings (`--speculative-config`,
 * `--speculative-num-draft-tokens`…), recorded here so later code (calibration, routing, reports)
 * treats every pool alike; requests to them carry no extension.
 *
 * Runtime-neutral except `loadPoolsConfig`, which reads a file through a lazy `node:fs` import so
 * the edge (Workers) can use the rest.
 */
import { z } from "zod";
import { MAX_GAMMA, type SpeculativeParams } from "./openai.ts";

export const POOL_KINDS = ["fairspec", "vllm", "sglang"] as const;
export type PoolKind = (typeof POOL_KINDS)[number];

const poolSchema = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i, { error: "must be letters, digits, '.', '_' or '-'" }),
    kind: z.enum(POOL_KINDS),
    urls: z.array(z.url({ protocol: /^https?$/, error: "must be an http(s) URL like http://127.0.0.1:8100" })).min(1),
    /** fairspec: a drafter name the origin loaded ("base", "balanced"); vllm/sglang: the draft model or method. null = none. */
    drafter: z.string().min(1).nullable(),
    /** Draft tokens per verifier step; 0 = no speculation. */
    gamma: z.number().int().min(0).max(64),
    /** null = the request's temperature (fairspec) / the server's default (vllm, sglang). */
    proposal_temperature: z.number().min(0).nullable(),
    /** The `model` requests to this pool must name; omitted: keep the client's. */
    model: z.string().min(1).optional(),
    /** fairspec only: a Jinja chat template overriding the model's (see origin/chat-template.ts). */
    chat_template: z.string().min(1).nullable().optional(),
  })
  .superRefine((p, ctx) => {
    if (p.gamma > 0 && p.drafter === null) ctx.addIssue({ code: "custom", path: ["drafter"], message: `gamma ${p.gamma} needs a drafter (or set gamma to 0)` });
    if (p.kind === "fairspec" && p.gamma > MAX_GAMMA) ctx.addIssue({ code: "custom", path: ["gamma"], message: `a fairspec origin accepts gamma 0..${MAX_GAMMA}` });
    if (p.kind !== "fairspec" && p.chat_template != null) ctx.addIssue({ code: "custom", path: ["chat_template"], message: `only fairspec pools take a chat template (${p.kind} servers use their own)` });
  });

export type Pool = z.infer<typeof poolSchema>;

const configSchema = z
  .strictObject({
    $schema: z.string().optional(),
    pools: z.array(poolSchema).min(1),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.pools.forEach((p, i) => {
      if (seen.has(p.id)) ctx.addIssue({ code: "custom", path: ["pools", i, "id"], message: `duplicate pool id '${p.id}'` });
      seen.add(p.id);
    });
  });

export type PoolsConfig = z.infer<typeof configSchema>;

/** A config that does not validate; the message names the field (e.g. `pools[1].gamma`). */
export class PoolsConfigError extends Error {}

function fieldPath(path: readonly PropertyKey[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s;
}

/** Validate parsed JSON as a pools config. `source` names the file in error messages. */
export function parsePoolsConfig(json: unknown, source = "pools config"): PoolsConfig {
  const r = configSchema.safeParse(json);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path: PropertyKey[] = [...issue.path];
  if (issue.code === "unrecognized_keys" && issue.keys[0] !== undefined) path.push(issue.keys[0]);
  const where = fieldPath(path);
  throw new PoolsConfigError(`${source}: ${where ? `${where}: ` : ""}${issue.message}`);
}

/** Read and validate a JSON pools config file (Node only). */
export async function loadPoolsConfig(path: string): Promise<PoolsConfig> {
  const { readFile } = await import("node:fs/promises");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PoolsConfigError(err.code === "ENOENT" ? `${path}: no such file (see origin/pools.example.json for the format)` : `${path}: ${err.message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PoolsConfigError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  return parsePoolsConfig(json, path);
}

export function findPool(config: PoolsConfig, id: string): Pool {
  const pool = config.pools.find((p) => p.id === id);
  if (!pool) throw new PoolsConfigError(`no pool '${id}' — the config has: ${config.pools.map((p) => p.id).join(", ")}`);
  return pool;
}

export interface EffectiveParams {
  drafter: string | null;
  gamma: number;
  proposal_temperature: number | null;
}

/**
 * The speculative parameters a request to this pool runs with: the wanted ones on a fairspec pool
 * (over its defaults), always the fixed ones on vLLM / SGLang — so callers treat all kinds alike.
 */
export function effectiveParams(pool: Pool, wanted: SpeculativeParams = {}): EffectiveParams {
  const fixed = { drafter: pool.drafter, gamma: pool.gamma, proposal_temperature: pool.proposal_temperature };
  if (pool.kind !== "fairspec") return fixed;
  const gamma = wanted.gamma ?? fixed.gamma;
  if (gamma === 0) return { drafter: null, gamma: 0, proposal_temperature: null };
  return {
    drafter: wanted.drafter === undefined ? fixed.drafter : wanted.drafter,
    gamma,
    proposal_temperature: wanted.proposal_temperature === undefined ? fixed.proposal_temperature : wanted.proposal_temperature,
  };
}

/**
 * The OpenAI request body to send to a pool. fairspec: the body plus the `speculative` extension
 * (the wanted parameters over the pool's defaults); vLLM / SGLang: the body without any extension
 * (their parameters are fixed at launch). `model` is set to the pool's when it names one.
 */
export function requestBodyFor<B extends Record<string, unknown>>(pool: Pool, body: B, wanted: SpeculativeParams = {}): Record<string, unknown> {
  const { speculative: _drop, ...rest } = body;
  const out: Record<string, unknown> = { ...rest };
  if (pool.model) out.model = pool.model;
  if (pool.kind === "fairspec") out.speculative = effectiveParams(pool, wanted);
  return out;
}

/** fairspec origins answer GET /healthz; vLLM and SGLang answer GET /health. */
export function healthUrl(pool: Pool, url: string): string {
  return new URL(pool.kind === "fairspec" ? "healthz" : "health", url.endsWith("/") ? url : `${url}/`).href;
}

export interface UrlHealth {
  url: string;
  ok: boolean;
  status: number | null;
  ms: number;
  error: string | null;
}

/** Probe every URL of a pool at once; each probe gives up after `timeoutMs`. Never throws. */
export async function checkPoolHealth(pool: Pool, opts: { timeoutMs?: number; fetch?: typeof fetch } = {}): Promise<UrlHealth[]> {
  const doFetch = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? 2000;
  return Promise.all(
    pool.urls.map(async (url): Promise<UrlHealth> => {
      const t0 = performance.now();
      try {
        const res = await doFetch(healthUrl(pool, url), { signal: AbortSignal.timeout(timeoutMs) });
        await res.body?.cancel();
        return { url, ok: res.ok, status: res.status, ms: performance.now() - t0, error: res.ok ? null : `HTTP ${res.status}` };
      } catch (e) {
        const err = e as Error;
        const error = err.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : ((err.cause as Error | undefined)?.message ?? err.message);
        return { url, ok: false, status: null, ms: performance.now() - t0, error };
      }
    }),
  );
}
