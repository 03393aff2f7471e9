/**
 * The fairspec edge gateway as one Hono app. It knows nothing of the runtime: the database, the
 * task classifier, the clock, `fetch` and the config are injected; functions/worker.ts (Workers)
 * and functions/node.ts (Node) are thin entries around it.
 *
 * Per inference request: authenticate (API key → sha256 → cached lookup), rate-limit (token bucket
 * per key), read and check the body, detect the task (hint > classifier > tenant default), pick
 * the tenant policy's fitted parameters for (task, nearest target temperature) from the active
 * calibration run (cached, stale-while-revalidate), dispatch to the pool's origins (retries only
 * before the first byte), and relay the origin's bytes while reading the speculative counts for
 * telemetry, which is written in batches after the response.
 *
 *   POST /v1/chat/completions, POST /v1/completions   OpenAI wire format, stream and non-stream
 *   GET  /v1/models, GET /healthz
 *   GET  /v1/fairspec/policy                          the caller's own policy
 *   GET  /v1/fairspec/tenants/:id/policy              own: 200; another tenant's: 403
 *   GET|PUT /admin/tenants/:id/policy, GET /admin/runs, GET /admin/runs/active   (ADMIN_TOKEN)
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import type { Policy } from "../core/fit.ts";
import { requestBodyFor } from "../origin/pools.ts";
import { API_KEY_PATTERN, bearerToken, constantTimeEqual, sha256Hex } from "./auth.ts";
import { CacheMissError, SwrCache, type Background } from "./cache.ts";
import { policySchema, type EdgeConfig } from "./config.ts";
import type { EdgeDb, KeyRecord, ParamsSnapshot } from "./db.ts";
import {
  badGateway,
  badRequest,
  EdgeError,
  errorBody,
  errorResponse,
  forbidden,
  notFound,
  rateLimited,
  tooLarge,
  unauthorized,
  unavailable,
} from "./errors.ts";
import { choosePolicy, indexSnapshot, lookupParams, type ParamsIndex } from "./params.ts";
import { RateLimiter } from "./ratelimit.ts";
import { ClientGoneError, dispatch, planAttempts, resolvePool, type RoutePool } from "./routing.ts";
import { countsOf, nativeBodyOf, relayBody, type RelayOutcome, type SpecCounts } from "./stream.ts";
import { latestUserText, TASK_ID, withTimeout, type TaskClassifier, type TaskSource } from "./task.ts";
import { TelemetryBuffer } from "./telemetry.ts";

export interface Clock {
  /** Milliseconds, monotonic where the runtime allows (durations, TTLs). */
  now(): number;
  /** Wall time as ISO-8601 UTC (rows written to libSQL). */
  iso(): string;
}

// Wall time as ISO-8601, formatted once per millisecond (many requests share one).
let isoMs = -1;
let isoText = "";

export const systemClock: Clock = {
  now: () => performance.now(),
  iso: () => {
    const t = Date.now();
    if (t !== isoMs) {
      isoMs = t;
      isoText = new Date(t).toISOString();
    }
    return isoText;
  },
};

export interface EdgeDeps {
  config: EdgeConfig;
  db: EdgeDb;
  /** Bearer token of the admin routes; unset: the admin API answers 401 to everyone. */
  adminToken?: string | null;
  /** Sent to origins as `Authorization: Bearer …` (vLLM's --api-key); the tenant's key never is. */
  originToken?: string | null;
  classifier?: TaskClassifier | null;
  fetch?: typeof fetch;
  clock?: Clock;
  random?: () => number;
  /** sha256 hex of an API key; default WebCrypto (Node's entry passes node:crypto's, synchronous). */
  sha256?: (text: string) => string | Promise<string>;
  /** Structured events (outages, classifier failures); default: none. */
  log?: (event: string, fields: Record<string, unknown>) => void;
}

export interface EdgeApp {
  app: Hono;
  /** In-isolate state, for health, tests and benches. */
  state: {
    params: SwrCache<"active", ParamsIndex | null>;
    keys: SwrCache<string, KeyRecord | null>;
    telemetry: TelemetryBuffer;
  };
}

export type Kind = "chat" | "completion";

const looseStreamOptions = z.looseObject({ include_usage: z.boolean().nullable().optional() }).nullable().optional();
const common = {
  model: z.string({ error: "must be a string" }).min(1),
  stream: z.boolean().nullable().optional(),
  stream_options: looseStreamOptions,
  temperature: z.number().min(0).max(2).nullable().optional(),
  fairspec: z
    .strictObject({ task: z.string().regex(TASK_ID, { error: "must be a task id like 'en' or 'code-py'" }).optional() })
    .nullable()
    .optional(),
};
const part = z.looseObject({ type: z.string(), text: z.string().optional() });
const chatSchema = z.looseObject({
  ...common,
  messages: z
    .array(
      z.looseObject({
        role: z.string(),
        content: z.union([z.string(), z.array(part)], { error: "must be a string or an array of content parts" }).nullable().optional(),
      }),
    )
    .min(1),
});
const tokens = z.array(z.number().int().min(0));
const completionSchema = z.looseObject({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()), tokens, z.array(tokens)], { error: "must be a string, an array of strings, or token ids" }),
});

/** The request schemas (zod): what the gateway checks of a body (errors name the field). */
export const requestSchemas = { chat: chatSchema, completion: completionSchema } as const;

type ChatRequest = z.output<typeof chatSchema>;
type CompletionRequest = z.output<typeof completionSchema>;

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const isOptBool = (x: unknown) => x === undefined || x === null || typeof x === "boolean";
const isTokenIds = (x: unknown): boolean => {
  if (!Array.isArray(x)) return false;
  for (const t of x) if (typeof t !== "number" || !Number.isSafeInteger(t) || t < 0) return false;
  return true;
};

/**
 * The common, valid request, checked without zod: true only where the schema accepts the body
 * as it is (then the schema's output carries the same values), false for anything else, which
 * zod then checks (and words the error for). A subset of the schema by construction, never a
 * widening: test/edge-fastpaths.test.ts holds it to zod on generated bodies.
 */
export function plainlyValid(kind: Kind, body: Record<string, unknown>): boolean {
  const model = body.model;
  if (typeof model !== "string" || model.length === 0) return false;
  if (!isOptBool(body.stream)) return false;
  const so = body.stream_options;
  if (so !== undefined && so !== null && !(isRecord(so) && isOptBool(so.include_usage))) return false;
  const t = body.temperature;
  if (t !== undefined && t !== null && !(typeof t === "number" && t >= 0 && t <= 2)) return false;
  const fs = body.fairspec;
  if (fs !== undefined && fs !== null) {
    if (!isRecord(fs)) return false;
    for (const k in fs) if (k !== "task") return false;
    if (fs.task !== undefined && !(typeof fs.task === "string" && TASK_ID.test(fs.task))) return false;
  }
  if (kind === "chat") {
    const messages = body.messages;
    if (!Array.isArray(messages) || messages.length === 0) return false;
    for (const m of messages) {
      if (!isRecord(m) || typeof m.role !== "string") return false;
      const c = m.content;
      if (c === undefined || c === null || typeof c === "string") continue;
      if (!Array.isArray(c)) return false;
      for (const p of c) if (!isRecord(p) || typeof p.type !== "string" || (p.text !== undefined && typeof p.text !== "string")) return false;
    }
    return true;
  }
  const prompt = body.prompt;
  if (typeof prompt === "string") return true;
  if (!Array.isArray(prompt)) return false;
  if (prompt.every((x) => typeof x === "string")) return true;
  return isTokenIds(prompt) || prompt.every(isTokenIds);
}

function paramOf(path: readonly PropertyKey[]): string | null {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || null;
}

function validationFailure(error: z.ZodError): EdgeError {
  const i = error.issues[0]!;
  const path: PropertyKey[] = [...i.path];
  if (i.code === "unrecognized_keys" && i.keys[0] !== undefined) path.push(i.keys[0]);
  const param = paramOf(path);
  return badRequest(param ? `${param}: ${i.message}` : i.message, param, "invalid_value");
}

const decoder = new TextDecoder();

/** The body as text, refusing more than `max` bytes (413) whatever Content-Length claims. */
async function readBody(req: Request, max: number): Promise<string> {
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    const n = Number(declared);
    if (n > max) throw tooLarge(max);
    // HTTP framing holds the body to its Content-Length, so reading it whole is bounded — and on
    // Node it takes @hono/node-server's fast path (no web Request is built).
    if (Number.isInteger(n)) return req.text();
  }
  if (!req.body) return "";
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    total += r.value.length;
    if (total > max) {
      await reader.cancel().catch(() => {});
      throw tooLarge(max);
    }
    parts.push(r.value);
  }
  if (parts.length === 1) return decoder.decode(parts[0]);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return decoder.decode(all);
}

/** Largest non-stream body read whole (larger ones are relayed chunk by chunk). */
const MAX_WHOLE_BODY = 8 << 20;

/** A body, whole: at most `max` bytes, and no gap over `idleMs` between chunks. */
async function readWhole(body: ReadableStream<Uint8Array>, max: number, idleMs: number): Promise<Uint8Array<ArrayBuffer>> {
  const reader = body.getReader();
  const parts: Uint8Array<ArrayBuffer>[] = [];
  let total = 0;
  try {
    for (;;) {
      const r = (await withTimeout(reader.read(), idleMs, "the origin's response body")) as ReadableStreamReadResult<Uint8Array<ArrayBuffer>>;
      if (r.done) break;
      total += r.value.length;
      if (total > max) throw new Error(`the response body exceeds ${max} bytes`);
      parts.push(r.value);
    }
  } catch (e) {
    reader.cancel(e).catch(() => {});
    throw e;
  }
  if (parts.length === 1) return parts[0]!;
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "proxy-connection", "upgrade", "te", "trailer"]);

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits (from randomUUID). As
 * unique as a v4 and in time order, so telemetry's unique index on request_id is appended to
 * instead of being written all over (a v4 per row dirtied a random index page per row).
 */
export function uuidv7(ms: number = Date.now()): string {
  const r = crypto.randomUUID(); // xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx (V: the variant)
  if (ms !== uuidMs) {
    uuidMs = ms;
    const t = Math.floor(ms).toString(16).padStart(12, "0");
    uuidPrefix = `${t.slice(0, 8)}-${t.slice(8, 12)}-7`;
  }
  return uuidPrefix + r.slice(15, 18) + r.slice(18);
}
let uuidMs = NaN;
let uuidPrefix = "";

/** Milliseconds to 3 decimals, as `(Math.round(x * 1000) / 1000).toString()` gives them, without the float formatting. */
export function ms3(x: number): string {
  const n = Math.round(x * 1000);
  if (!Number.isSafeInteger(n) || n < 0) return (n / 1000).toString();
  const int = Math.floor(n / 1000);
  let frac = n - int * 1000;
  if (frac === 0) return String(int);
  let digits = 3;
  while (frac % 10 === 0) {
    frac /= 10;
    digits--;
  }
  return `${int}.${String(frac).padStart(digits, "0")}`;
}

export function createEdgeApp(deps: EdgeDeps): EdgeApp {
  const { config, db } = deps;
  const clock = deps.clock ?? systemClock;
  const now = () => clock.now();
  const doFetch = deps.fetch ?? ((input, init) => fetch(input, init));
  const random = deps.random ?? Math.random;
  const log = deps.log ?? (() => {});
  const adminToken = deps.adminToken || null;
  const cacheCfg = config.cache;

  const params = new SwrCache<"active", ParamsIndex | null>(now, { ttlMs: cacheCfg.paramsTtlMs, timeoutMs: cacheCfg.dbTimeoutMs, retryMs: cacheCfg.retryMs });
  const keys = new SwrCache<string, KeyRecord | null>(now, {
    ttlMs: (v) => (v ? cacheCfg.keyTtlMs : cacheCfg.negativeKeyTtlMs),
    timeoutMs: cacheCfg.dbTimeoutMs,
    retryMs: cacheCfg.retryMs,
    maxEntries: cacheCfg.maxKeys,
  });
  const telemetry = new TelemetryBuffer((rows) => db.insertTelemetry(rows), config.telemetry.maxBuffered, config.telemetry.batchRows);
  const limiter = new RateLimiter(now, config.rateLimit.burst, config.rateLimit.perSecond, cacheCfg.maxKeys);

  const defaultPool = resolvePool(config.defaultPool, null, config)!;
  // Resolved pools change only with the params index: resolved once per (index, pool id).
  let poolsOf: ParamsIndex | null = null;
  let pools = new Map<string, RoutePool | null>();
  const poolFor = (id: string, index: ParamsIndex | null): RoutePool | null => {
    if (index !== poolsOf) {
      poolsOf = index;
      pools = new Map();
    }
    let p = pools.get(id);
    if (p === undefined) {
      p = resolvePool(id, index, config);
      pools.set(id, p);
    }
    return p;
  };
  const fallbackPoolFor = (index: ParamsIndex | null): RoutePool | null => (config.fallbackPool ? poolFor(config.fallbackPool, index) : null);

  const background = (c: Context): Background => {
    let ctx: { waitUntil(p: Promise<unknown>): void } | undefined;
    try {
      ctx = c.executionCtx;
    } catch {
      ctx = undefined;
    }
    return (p) => {
      if (ctx) ctx.waitUntil(p);
      else void p.catch(() => {});
    };
  };

  const loadParams = async (): Promise<ParamsIndex | null> => {
    const snap: ParamsSnapshot | null = await db.loadSnapshot();
    return snap ? indexSnapshot(snap) : null;
  };

  /** The active run's index, or null (nothing ever loaded and the DB is unreachable, or no run active). Never throws. */
  const currentParams = async (bg: Background): Promise<{ index: ParamsIndex | null; state: string }> => {
    try {
      const r = await params.get("active", loadParams, bg);
      return { index: r.value, state: r.state };
    } catch (e) {
      log("params_unavailable", { error: (e as Error).message });
      return { index: null, state: "unavailable" };
    }
  };

  const hashKey = deps.sha256 ?? sha256Hex;
  // The sha256 of keys that authenticated lately, so a valid key is not hashed again on every
  // request. Bounded (cache.maxKeys, least recently used out); only keys that matched a stored,
  // unrevoked key get in. The hash is a function of the key alone (nothing here goes stale); the
  // record's stored hash is still compared in constant time on every request.
  const knownHashes = new Map<string, string>();
  const hashOf = (token: string): string | Promise<string> => {
    const h = knownHashes.get(token);
    if (h === undefined) return hashKey(token);
    knownHashes.delete(token);
    knownHashes.set(token, h);
    return h;
  };
  const rememberHash = (token: string, hash: string) => {
    if (knownHashes.has(token)) return;
    if (knownHashes.size >= cacheCfg.maxKeys) knownHashes.delete(knownHashes.keys().next().value!);
    knownHashes.set(token, hash);
  };
  const lookupKey = async (token: string, bg: Background): Promise<KeyRecord | null> => {
    const hash = await hashOf(token);
    let rec: KeyRecord | null;
    try {
      rec = (await keys.get(hash, () => db.findKey(hash), bg)).value;
    } catch (e) {
      if (!(e instanceof CacheMissError)) throw e;
      log("auth_unavailable", { error: e.message });
      // Fail closed: a key this isolate has never seen cannot be verified while libSQL is down.
      throw unavailable("This API key cannot be verified right now (the key store is unreachable and this key was not seen recently); retry shortly.", "auth_unavailable", 1);
    }
    if (!rec || rec.revoked || !constantTimeEqual(rec.keyHash, hash)) {
      knownHashes.delete(token);
      return null;
    }
    rememberHash(token, hash);
    return rec;
  };

  const authenticate = async (c: Context, bg: Background): Promise<KeyRecord> => {
    const token = bearerToken(c.req.header("authorization"));
    if (!token) throw unauthorized("Missing API key: send it as 'Authorization: Bearer <key>'.", "missing_api_key");
    if (!API_KEY_PATTERN.test(token)) throw unauthorized("Invalid API key.");
    const rec = await lookupKey(token, bg);
    if (!rec) throw unauthorized("Invalid API key.");
    return rec;
  };

  const authenticateAdmin = async (c: Context, bg: Background): Promise<void> => {
    const token = bearerToken(c.req.header("authorization"));
    if (token && adminToken && constantTimeEqual(token, adminToken)) return;
    // A valid tenant key is authenticated but not allowed here.
    if (token && API_KEY_PATTERN.test(token)) {
      const rec = await lookupKey(token, bg).catch(() => null);
      if (rec) throw forbidden("Tenant API keys cannot use the admin API.", "admin_only");
    }
    throw unauthorized(adminToken ? "Invalid admin token." : "The admin API is disabled (no ADMIN_TOKEN is set).", "invalid_admin_token");
  };

  const adminDb = async <T>(what: string, p: Promise<T>): Promise<T> => {
    try {
      return await withTimeout(p, cacheCfg.dbTimeoutMs * 2, what);
    } catch (e) {
      log("admin_db_error", { what, error: (e as Error).message });
      throw unavailable(`The calibration store is unreachable (${what}); retry shortly.`, "db_unavailable", 1);
    }
  };

  const app = new Hono();

  app.onError((e, c) => {
    if (e instanceof EdgeError) return errorResponse(e.status, e.body, e.headers);
    // A client that went away (also mid-body, where the body read rejects with "aborted") is not
    // a server fault: nobody gets the answer, and it is not logged as one.
    if (e instanceof ClientGoneError || c.req.raw.signal.aborted || (e as { code?: string }).code === "ECONNRESET" || e.message === "aborted") {
      return new Response(null, { status: 499 });
    }
    log("internal_error", { error: e.message, path: c.req.path });
    return errorResponse(500, errorBody(`internal error: ${e.message}`, "server_error", null, "internal_error"));
  });
  app.notFound((c) => errorResponse(404, errorBody(`No route ${c.req.method} ${c.req.path}.`, "not_found_error", null, "not_found")));

  app.get("/healthz", (c) => {
    const p = params.peek("active");
    const classified = deps.classifier?.stats;
    return c.json({
      status: "ok",
      params_version: p?.value?.runId ?? null,
      params_age_ms: p ? Math.round(p.ageMs) : null,
      params_fresh: p?.fresh ?? false,
      params_error: params.lastError("active"),
      telemetry_buffered: telemetry.buffered,
      // Texts classified and classifier runs in this isolate: texts / runs is the mean batch.
      classifier: classified ? { texts: classified.texts, runs: classified.runs } : null,
    });
  });

  app.get("/v1/models", async (c) => {
    await authenticate(c, background(c));
    return c.json({ object: "list", data: [{ id: config.model, object: "model", created: 0, owned_by: "fairspec" }] });
  });

  const policyView = async (rec: KeyRecord, bg: Background) => {
    const { index } = await currentParams(bg);
    const chosen = index ? choosePolicy(index, rec.policy, config.defaultPolicy) : null;
    return {
      object: "fairspec.policy",
      tenant_id: rec.tenantId,
      policy: rec.policy,
      default_policy: config.defaultPolicy,
      effective_policy_id: chosen?.id ?? null,
      effective_policy_source: chosen?.source ?? null,
      params_version: index?.runId ?? null,
    };
  };

  app.get("/v1/fairspec/policy", async (c) => {
    const bg = background(c);
    const rec = await authenticate(c, bg);
    return c.json(await policyView(rec, bg));
  });
  app.get("/v1/fairspec/tenants/:tenant/policy", async (c) => {
    const bg = background(c);
    const rec = await authenticate(c, bg);
    if (c.req.param("tenant") !== rec.tenantId) throw forbidden("This API key cannot read another tenant's policy.", "other_tenant");
    return c.json(await policyView(rec, bg));
  });
  const tenantWrite = async (c: Context) => {
    await authenticate(c, background(c));
    throw forbidden("Tenant API keys cannot change policies; an admin sets them (PUT /admin/tenants/:id/policy).", "admin_only");
  };
  app.on(["PUT", "POST", "PATCH", "DELETE"], "/v1/fairspec/policy", tenantWrite);
  app.on(["PUT", "POST", "PATCH", "DELETE"], "/v1/fairspec/tenants/:tenant/policy", tenantWrite);

  // ---- admin ----

  app.get("/admin/tenants/:tenant/policy", async (c) => {
    await authenticateAdmin(c, background(c));
    const id = c.req.param("tenant");
    const r = await adminDb("reading the policy", db.getTenantPolicy(id));
    if (!r) throw notFound(`No tenant '${id}'.`, "tenant_not_found", "tenant");
    return c.json({ object: "fairspec.policy", tenant_id: r.tenantId, policy: r.policy, updated_at: r.updatedAt });
  });

  app.put("/admin/tenants/:tenant/policy", async (c) => {
    await authenticateAdmin(c, background(c));
    const id = c.req.param("tenant");
    let json: unknown;
    try {
      json = JSON.parse(await readBody(c.req.raw, 64 * 1024));
    } catch (e) {
      if (e instanceof EdgeError) throw e;
      throw badRequest("The request body is not valid JSON.", null, "invalid_json");
    }
    const candidate = json && typeof json === "object" && "policy" in json ? (json as { policy: unknown }).policy : json;
    const parsed = policySchema.safeParse(candidate);
    if (!parsed.success) {
      const f = validationFailure(parsed.error);
      const p = f.body.error.param;
      throw badRequest(`invalid policy: ${f.body.error.message} — e.g. {"kind": "maxmin"} or {"kind": "floor", "ratio": 0.7}`, p ? `policy.${p}` : "policy");
    }
    const policy = parsed.data as Policy;
    const updatedAt = clock.iso();
    const ok = await adminDb("writing the policy", db.setTenantPolicy(id, policy, updatedAt));
    if (!ok) throw notFound(`No tenant '${id}'.`, "tenant_not_found", "tenant");
    // This isolate sees it at once; others within keyTtlMs (their cached keys carry the policy).
    keys.evict((_, v) => v?.tenantId === id);
    return c.json({ object: "fairspec.policy", tenant_id: id, policy, updated_at: updatedAt });
  });

  app.get("/admin/runs", async (c) => {
    await authenticateAdmin(c, background(c));
    const runs = await adminDb("listing runs", db.listRuns());
    return c.json({ object: "list", data: runs });
  });

  app.get("/admin/runs/active", async (c) => {
    await authenticateAdmin(c, background(c));
    const run = await adminDb("reading the active run", db.activeRun());
    if (!run) throw notFound("No calibration run is active.", "no_active_run");
    return c.json(run);
  });

  // ---- inference ----

  /** One telemetry row; the write goes after the response, one per window (handed to waitUntil). */
  const record = (bg: Background, tenantId: string, task: string, poolId: string, t0: number, counts: SpecCounts | null) => {
    telemetry.add({
      requestId: uuidv7(),
      tenantId,
      task,
      poolId,
      drafted: counts?.drafted ?? 0,
      accepted: counts?.accepted ?? 0,
      completionTokens: counts?.completionTokens ?? 0,
      latencyMs: now() - t0,
      createdAt: clock.iso(),
    });
    bg(telemetry.schedule(config.telemetry.flushDelayMs));
  };

  const handle = async (c: Context, kind: Kind, path: string): Promise<Response> => {
    const t0 = now();
    const bg = background(c);
    // Start the params read now: it overlaps authentication (and is cached almost always).
    const paramsP = currentParams(bg);

    const rec = await authenticate(c, bg);
    const tAuth = now();
    const wait = limiter.take(rec.keyId);
    if (wait > 0) throw rateLimited(wait, `Rate limit reached for this API key (${config.rateLimit.perSecond}/s, burst ${config.rateLimit.burst}); retry after ${wait} s.`);

    const text = await readBody(c.req.raw, config.maxBodyBytes);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw badRequest("The request body is not valid JSON.", null, "invalid_json");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw badRequest("The request body must be a JSON object.", null, "invalid_json");
    let req: ChatRequest | CompletionRequest;
    if (plainlyValid(kind, body)) req = body as ChatRequest | CompletionRequest;
    else {
      const checked = (kind === "chat" ? chatSchema : completionSchema).safeParse(body);
      if (!checked.success) throw validationFailure(checked.error);
      req = checked.data;
    }
    if (req.model !== config.model) throw notFound(`The model '${req.model}' does not exist; this gateway serves '${config.model}'.`, "model_not_found", "model");
    const stream = req.stream === true;
    const includeUsage = stream && req.stream_options?.include_usage === true;
    const temperature = req.temperature ?? 1;

    // Task: hint > classifier > tenant default.
    let task = rec.defaultTask;
    let source: TaskSource = "default";
    const hint = c.req.header("x-fairspec-task");
    if (hint !== undefined) {
      if (!TASK_ID.test(hint)) throw badRequest("x-fairspec-task: must be a task id like 'en' or 'code-py'.", "x-fairspec-task");
      task = hint;
      source = "header";
    } else if (req.fairspec?.task) {
      task = req.fairspec.task;
      source = "body";
    } else if (deps.classifier) {
      const input = latestUserText(body).slice(0, config.classifier.maxChars);
      if (input.trim()) {
        try {
          const r = await withTimeout(deps.classifier.classify(input), config.classifier.timeoutMs, "task classification");
          if (r.confidence >= config.classifier.minConfidence && TASK_ID.test(r.task)) {
            task = r.task;
            source = "classifier";
          }
        } catch (e) {
          log("classifier_error", { error: (e as Error).message });
        }
      }
    }
    const tTask = now();

    // Params → pool.
    const { index } = await paramsP;
    let pool = defaultPool;
    let wanted = {};
    let policyId: string | null = null;
    if (index) {
      const chosen = choosePolicy(index, rec.policy, config.defaultPolicy);
      policyId = chosen?.id ?? null;
      const p = chosen ? (lookupParams(index, chosen.id, task, temperature) ?? lookupParams(index, chosen.id, rec.defaultTask, temperature)) : undefined;
      const resolved = p ? poolFor(p.poolId, index) : null;
      if (p && resolved) {
        pool = resolved;
        wanted = { drafter: p.drafter, gamma: p.gamma, proposal_temperature: p.proposalTemperature };
      }
    }
    const version = index?.runId ?? "default";
    const tParams = now();

    // What the origin gets: no `fairspec` field; a usage chunk on every stream (for telemetry).
    // (requestBodyFor copies the body again: it is only copied here when something changes.)
    const stripUsage = stream && !includeUsage && config.telemetry.streamUsage;
    let forward = body;
    if ("fairspec" in body || stripUsage) {
      const { fairspec: _hint, ...rest } = body;
      forward = rest;
      if (stripUsage) forward.stream_options = { ...(req.stream_options ?? {}), include_usage: true };
    }
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: stream ? "text/event-stream" : "application/json",
      "x-fairspec-tenant": rec.tenantId,
      "x-fairspec-task": task,
    };
    if (deps.originToken) headers.authorization = `Bearer ${deps.originToken}`;

    const attempts = planAttempts(pool, wanted, fallbackPoolFor(index), config.maxAttempts, random);
    // Serialise every attempt's body before dispatching: a body that cannot be serialised (nested
    // deeper than the stack allows) is the client's input error, never an origin failure.
    const bodies = new Map<(typeof attempts)[number], string>();
    try {
      for (const a of attempts) bodies.set(a, JSON.stringify(requestBodyFor(a.pool, forward, a.wanted)));
    } catch {
      throw new EdgeError(400, errorBody("The request body is nested too deeply.", "invalid_request_error", null, "invalid_body"));
    }
    const tDispatch = now();
    const d = await dispatch(attempts, {
      fetch: doFetch,
      path,
      bodies,
      headers,
      clientSignal: c.req.raw.signal,
      headersTimeoutMs: stream ? config.timeouts.firstByteMs : config.timeouts.nonStreamMs,
      now,
    });
    const up = d.response;
    const overhead = tDispatch - t0;

    // A plain record (cheaper than Headers on both runtimes); origins send no repeated headers.
    const out: Record<string, string> = {};
    up.headers.forEach((v, k) => {
      if (!HOP_BY_HOP.has(k)) out[k] = v;
    });
    out["x-fairspec-task"] = task;
    out["x-fairspec-task-source"] = source;
    out["x-fairspec-pool"] = d.attempt.pool.id;
    out["x-fairspec-params-version"] = version;
    if (policyId) out["x-fairspec-policy"] = policyId;
    const overheadMs = ms3(overhead);
    out["x-fairspec-overhead-ms"] = overheadMs;
    out["server-timing"] =
      `edge;dur=${overheadMs};desc="gateway before dispatch", auth;dur=${ms3(tAuth - t0)}, task;dur=${ms3(tTask - tAuth)};desc="${source}", ` +
      `params;dur=${ms3(tParams - tTask)}, origin;dur=${ms3(d.ttfbMs)};desc="to headers, ${d.log.length} attempt${d.log.length > 1 ? "s" : ""}"`;

    // The fetch's own whole-body reader (node-fetch.ts), when it has one: no web stream for the
    // one-burst JSON answers; otherwise (Workers) `up.body`.
    const native = nativeBodyOf(up);
    if (native ? !native.hasBody : !up.body) return new Response(null, { status: up.status, headers: out });
    const ok = up.status >= 200 && up.status < 300;
    const ctype = up.headers.get("content-type") ?? "";
    const declared = Number(up.headers.get("content-length") ?? NaN);
    const mode = ctype.includes("text/event-stream") ? "sse" : ok && ctype.includes("json") ? "json" : "raw";
    if (mode === "json" && !(declared > MAX_WHOLE_BODY)) {
      // A non-stream answer arrives in one burst once generation is done: read it whole (bounded),
      // forward the same bytes. A body that breaks off becomes a clean 502 rather than truncated JSON.
      let bytes: Uint8Array;
      try {
        bytes = native ? await native.readWhole(MAX_WHOLE_BODY, config.timeouts.idleMs) : await readWhole(up.body!, MAX_WHOLE_BODY, config.timeouts.idleMs);
      } catch (e) {
        d.abort(e);
        throw badGateway(`The origin failed while sending its response (${d.attempt.pool.id} ${d.attempt.url}): ${(e as Error).message}.`, "origin_body_error");
      }
      let counts: SpecCounts | null = null;
      try {
        counts = countsOf(JSON.parse(decoder.decode(bytes)));
      } catch {
        // Not JSON after all: forwarded as is, without counts.
      }
      record(bg, rec.tenantId, task, d.attempt.pool.id, t0, counts);
      return new Response(bytes as Uint8Array<ArrayBuffer>, { status: up.status, headers: out });
    }
    let finished!: (v: { outcome: RelayOutcome; counts: SpecCounts | null }) => void;
    const done = new Promise<{ outcome: RelayOutcome; counts: SpecCounts | null }>((r) => (finished = r));
    const relayed = relayBody(up.body!, {
      mode,
      stripUsage: stripUsage && mode === "sse",
      idleMs: config.timeouts.idleMs,
      abort: d.abort,
      onEnd: (outcome, counts) => finished({ outcome, counts }),
    });
    bg(
      done.then(({ outcome, counts }) => {
        if (outcome === "done" && ok) record(bg, rec.tenantId, task, d.attempt.pool.id, t0, counts);
      }),
    );
    return new Response(relayed, { status: up.status, headers: out });
  };

  app.post("/v1/chat/completions", (c) => handle(c, "chat", "/v1/chat/completions"));
  app.post("/v1/completions", (c) => handle(c, "completion", "/v1/completions"));

  return { app, state: { params, keys, telemetry } };
}
