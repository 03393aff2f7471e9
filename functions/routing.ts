/**
 * Pools → origins: resolving a pool id to URLs (the run's pool overlaid by the deployment's
 * config), ordering the origins to try (weighted), and dispatching with retries that happen only
 * before the first byte.
 *
 * A request goes to one origin of its pool, chosen at random by weight; on a connect error, a
 * time-out before the response headers, a 5xx or a 429 it goes to the next origin of the pool, then
 * to the fallback pool — at most `maxAttempts` origins in all. Once an origin's response headers
 * arrived with another status (2xx, 4xx), that response is the answer: no retry after the first
 * byte, ever (the client may already have part of it).
 */
import type { SpeculativeParams } from "../origin/openai.ts";
import type { Pool } from "../origin/pools.ts";
import type { EdgeConfig } from "./config.ts";
import { badGateway, EdgeError, errorBody, gatewayTimeout, rateLimited } from "./errors.ts";
import type { ParamsIndex } from "./params.ts";

export interface RoutePool extends Pool {
  /** One weight per URL (0 = drained). */
  weights: number[];
}

export interface Attempt {
  pool: RoutePool;
  url: string;
  /** The speculative parameters wanted on this pool (fairspec pools only). */
  wanted: SpeculativeParams;
}

/** A pool id → the pool to route to: the run's fitted pool with the config's deployment (URLs, model, weights). */
export function resolvePool(id: string, index: ParamsIndex | null, config: EdgeConfig): RoutePool | null {
  const cfg = config.pools.find((p) => p.id === id);
  const run = index?.pools.get(id);
  let pool: Pool;
  if (cfg && run) pool = { ...cfg, drafter: run.drafter, gamma: run.gamma, proposal_temperature: run.proposalTemperature };
  else if (cfg) pool = cfg;
  else if (run) pool = { id, kind: run.kind, urls: run.urls, drafter: run.drafter, gamma: run.gamma, proposal_temperature: run.proposalTemperature };
  else return null;
  if (pool.urls.length === 0) return null;
  const w = config.weights[id];
  const weights = w && w.length === pool.urls.length ? w : pool.urls.map(() => 1);
  if (!weights.some((x) => x > 0)) return null;
  return { ...pool, weights };
}

/** The URLs with weight > 0 in a random order where heavier ones tend to come first (Efraimidis–Spirakis). */
export function weightedOrder(urls: readonly string[], weights: readonly number[], random: () => number): string[] {
  if (urls.length === 1) return weights[0]! > 0 ? [urls[0]!] : [];
  return urls
    .map((url, i) => ({ url, w: weights[i] ?? 0 }))
    .filter((x) => x.w > 0)
    .map((x) => ({ url: x.url, key: Math.pow(Math.max(random(), 1e-12), 1 / x.w) }))
    .sort((a, b) => b.key - a.key)
    .map((x) => x.url);
}

/** The origins to try, in order: the chosen pool's, then (keeping at least one slot) the fallback pool's. */
export function planAttempts(primary: RoutePool, wanted: SpeculativeParams, fallback: RoutePool | null, maxAttempts: number, random: () => number): Attempt[] {
  const fb = fallback && fallback.id !== primary.id ? fallback : null;
  const own = weightedOrder(primary.urls, primary.weights, random).map((url) => ({ pool: primary, url, wanted }));
  const theirs = fb ? weightedOrder(fb.urls, fb.weights, random).map((url) => ({ pool: fb, url, wanted: {} })) : [];
  const nOwn = Math.min(own.length, theirs.length > 0 ? Math.max(1, maxAttempts - 1) : maxAttempts);
  return [...own.slice(0, nOwn), ...theirs].slice(0, maxAttempts);
}

export interface AttemptLog {
  pool: string;
  url: string;
  outcome: "ok" | "retry-status" | "timeout" | "connect-error";
  status: number | null;
  ms: number;
  error: string | null;
}

export interface Dispatched {
  response: Response;
  attempt: Attempt;
  /** Aborts the origin request (client gone, idle timeout). */
  abort: (reason?: unknown) => void;
  log: AttemptLog[];
  /** ms from the first attempt's start to the chosen response's headers. */
  ttfbMs: number;
}

export interface DispatchOptions {
  fetch: typeof fetch;
  /** e.g. "/v1/chat/completions" */
  path: string;
  /** Each attempt's serialised request body. */
  bodies: ReadonlyMap<Attempt, string>;
  headers: Record<string, string>;
  clientSignal?: AbortSignal;
  headersTimeoutMs: number;
  now: () => number;
}

/** The client left before any origin answered: nothing to send. */
export class ClientGoneError extends Error {
  override name = "ClientGoneError";
}

class HeadersTimeout extends Error {
  override name = "HeadersTimeout";
}

/**
 * Forwards the client's abort to one attempt's request. A listener object rather than a closure
 * per attempt: bundlers that keep function names (tsx, wrangler) give every named closure an
 * `Object.defineProperty` call when it is created, and this one is created per request.
 */
class ForwardClientAbort {
  constructor(private readonly ac: AbortController) {}
  handleEvent(): void {
    this.ac.abort(new ClientGoneError("the client went away"));
  }
}

const joinUrl = (base: string, path: string) => (base.endsWith("/") ? base.slice(0, -1) : base) + path;

const describe = (e: unknown): string => {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const cause = err?.cause;
  return cause?.code ?? cause?.message ?? err?.message ?? String(e);
};

export async function dispatch(attempts: readonly Attempt[], o: DispatchOptions): Promise<Dispatched> {
  const log: AttemptLog[] = [];
  const start = o.now();
  let last429: Response | null = null;
  for (let i = 0; i < attempts.length; i++) {
    const attempt = attempts[i]!;
    if (o.clientSignal?.aborted) throw new ClientGoneError("the client went away");
    const t0 = o.now();
    const ac = new AbortController();
    const onClientAbort = new ForwardClientAbort(ac);
    o.clientSignal?.addEventListener("abort", onClientAbort, { once: true });
    const timer = setTimeout(() => ac.abort(new HeadersTimeout(`no response headers within ${o.headersTimeoutMs} ms`)), o.headersTimeoutMs);
    let res: Response;
    try {
      res = await o.fetch(joinUrl(attempt.url, o.path), { method: "POST", headers: o.headers, body: o.bodies.get(attempt)!, signal: ac.signal });
    } catch (e) {
      clearTimeout(timer);
      o.clientSignal?.removeEventListener("abort", onClientAbort);
      const reason = ac.signal.aborted ? ac.signal.reason : e;
      if (reason instanceof ClientGoneError) throw reason;
      const timeout = reason instanceof HeadersTimeout;
      log.push({ pool: attempt.pool.id, url: attempt.url, outcome: timeout ? "timeout" : "connect-error", status: null, ms: o.now() - t0, error: timeout ? (reason as Error).message : describe(e) });
      continue;
    }
    clearTimeout(timer);
    const retryable = res.status >= 500 || res.status === 429;
    if (retryable && i < attempts.length - 1) {
      log.push({ pool: attempt.pool.id, url: attempt.url, outcome: "retry-status", status: res.status, ms: o.now() - t0, error: null });
      await res.body?.cancel().catch(() => {});
      o.clientSignal?.removeEventListener("abort", onClientAbort);
      continue;
    }
    if (retryable) {
      log.push({ pool: attempt.pool.id, url: attempt.url, outcome: "retry-status", status: res.status, ms: o.now() - t0, error: null });
      if (res.status === 429) last429 = res;
      await res.body?.cancel().catch(() => {});
      o.clientSignal?.removeEventListener("abort", onClientAbort);
      break;
    }
    log.push({ pool: attempt.pool.id, url: attempt.url, outcome: "ok", status: res.status, ms: o.now() - t0, error: null });
    return { response: res, attempt, abort: ac.abort.bind(ac), log, ttfbMs: o.now() - start };
  }
  throw failure(log, last429);
}

function failure(log: readonly AttemptLog[], last429: Response | null): EdgeError {
  // What the tenant sees names pools and outcomes only: origin URLs (hosts, ports, credentials)
  // are deployment internals; the attempt log with URLs goes to the operator's log.
  const summary = log.map((l) => `${l.pool}: ${l.status ?? l.outcome}`).join("; ");
  const n = log.length;
  if (last429) {
    const ra = Number(last429.headers.get("retry-after"));
    const retry = Number.isFinite(ra) && ra >= 1 ? Math.ceil(ra) : 1;
    return rateLimited(retry, `Every origin tried is at capacity (${summary}); retry after ${retry} s.`, "origin_busy");
  }
  if (n > 0 && log.every((l) => l.outcome === "timeout")) return gatewayTimeout(`No origin answered in time (${n} tried: ${summary}).`);
  if (n === 0) return new EdgeError(502, errorBody("No origin is configured for this route.", "server_error", null, "no_origin"));
  return badGateway(`No origin could serve the request (${n} tried: ${summary}).`);
}
