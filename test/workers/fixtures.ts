/**
 * Node-side fixtures shared by the edge tests (test/edge-*.test.ts), the workerd suite's
 * globalSetup and bench/edge.ts: a calibration store seeded through calibrator/store.ts, and a
 * trivial OpenAI-compatible origin (exact wire format: it uses origin/openai.ts's builders) with
 * fault modes.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { CalibrationRun, TaskParams } from "../../core/calibration.ts";
import { openStore } from "../../calibrator/store.ts";
import {
  chatChunk,
  chatCompletion,
  completionChunk,
  textCompletion,
  usage,
  usageChunk,
  type EffectiveSpeculative,
  type ResponseHead,
  type SpecCounts,
} from "../../origin/openai.ts";

export const TASKS = ["en", "ja", "code-py"] as const;

export interface SeedPools {
  /** fairspec pool: drafter base, γ 4 */
  base: string[];
  /** fairspec pool: drafter balanced, γ 3, τ 0.7 */
  balanced: string[];
  /** vLLM pool: fixed server-side */
  vllm: string[];
}

/**
 * Params of the seeded run (pool per policy / task / target temperature):
 *
 *   throughput: en → pool-base, ja → pool-base, code-py → pool-vllm            (T 0 and 1 alike)
 *   maxmin:     en → pool-bal at T 0, pool-base at T 1; ja → pool-bal; code-py → pool-vllm
 */
export function seededRun(p: SeedPools): CalibrationRun {
  const pools = {
    "pool-base": { drafter: "base", gamma: 4, proposalTemperature: null },
    "pool-bal": { drafter: "balanced", gamma: 3, proposalTemperature: 0.7 },
    "pool-vllm": { drafter: "base", gamma: 5, proposalTemperature: null },
  } as const;
  const choose = (policy: string, task: string, t: number): keyof typeof pools => {
    if (task === "code-py") return "pool-vllm";
    if (policy === "throughput") return "pool-base";
    if (task === "ja") return "pool-bal";
    return t === 0 ? "pool-bal" : "pool-base";
  };
  const params: TaskParams[] = [];
  for (const policyId of ["throughput", "maxmin"]) {
    for (const task of TASKS) {
      for (const t of [0, 1]) {
        const poolId = choose(policyId, task, t);
        const pool = pools[poolId];
        params.push({
          policyId,
          task,
          targetTemperature: t,
          poolId,
          drafter: pool.drafter,
          gamma: pool.gamma,
          proposalTemperature: pool.proposalTemperature,
          predictedSpeedup: { estimate: 1.8, lo: 1.6, hi: 2 },
          measuredSpeedup: null,
          msPerChar: null,
        });
      }
    }
  }
  return {
    configHash: "edge-test",
    hardware: { cpu: "test" },
    startedAt: "2025-06-01T10:00:00.000Z",
    finishedAt: "2025-06-01T11:00:00.000Z",
    summary: { worstSpeedup: { throughput: 1.5, maxmin: 1.7 }, meanSpeedup: { throughput: 2, maxmin: 1.8 }, unfairnessU: 0.02, unfairnessUAfter: null },
    measurements: [],
    pools: [
      { id: "pool-base", kind: "fairspec", ...pools["pool-base"], urls: p.base },
      { id: "pool-bal", kind: "fairspec", ...pools["pool-bal"], urls: p.balanced },
      { id: "pool-vllm", kind: "vllm", ...pools["pool-vllm"], urls: p.vllm },
    ],
    policies: [
      { id: "throughput", policy: { kind: "throughput" }, maxPools: 3 },
      { id: "maxmin", policy: { kind: "maxmin" }, maxPools: 3 },
    ],
    params,
  };
}

export interface Seeded {
  runId: string;
  /** Raw API keys (shown once by the store). */
  keys: { acme: string; globex: string; initech: string; revoked: string };
}

/**
 * Creates (and migrates) the store at `path`, saves and activates the run, and creates tenants:
 * acme (default task en, policy maxmin), globex (default ja, throughput), initech (default
 * code-py, no policy); plus a revoked key of acme.
 */
export async function seedStore(path: string, pools: SeedPools): Promise<Seeded> {
  const store = await openStore(`file:${path}`);
  try {
    const runId = await store.saveRun(seededRun(pools));
    await store.activate(runId);
    await store.createTenant({ id: "acme", name: "Acme", defaultTask: "en" });
    await store.setTenantPolicy("acme", { kind: "maxmin" });
    await store.createTenant({ id: "globex", name: "Globex", defaultTask: "ja" });
    await store.setTenantPolicy("globex", { kind: "throughput" });
    await store.createTenant({ id: "initech", name: "Initech", defaultTask: "code-py" });
    const acme = await store.createApiKey("acme");
    const globex = await store.createApiKey("globex");
    const initech = await store.createApiKey("initech");
    const revoked = await store.createApiKey("acme");
    await store.revokeApiKey(revoked.id);
    return { runId, keys: { acme: acme.key, globex: globex.key, initech: initech.key, revoked: revoked.key } };
  } finally {
    store.close();
  }
}

// ---------------------------------------------------------------------------------------------
// A trivial origin.

/**
 * ok            answers (stream or not)
 * fail500       500 with an OpenAI error body
 * busy429       429 with Retry-After: 3
 * bad400        400 with an OpenAI error body (a client error: never retried)
 * hang          accepts, never sends headers
 * die-mid-stream   streams two events then resets the connection (non-stream: half the JSON, reset)
 * stall-mid-stream streams two events then goes silent (connection kept open)
 */
export type OriginMode = "ok" | "fail500" | "busy429" | "bad400" | "hang" | "die-mid-stream" | "stall-mid-stream";

export interface RecordedRequest {
  path: string;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

export interface TrivialOrigin {
  url: string;
  name: string;
  requests: RecordedRequest[];
  /** Requests whose client went away before the response ended. */
  readonly aborted: number;
  setMode(mode: OriginMode): void;
  close(): Promise<void>;
}

export const ORIGIN_TEXT = ["Hello", " from", " the", " origin."];

/** Deterministic counts for a request's resolved γ: 4 verifier steps, ~60 % accepted. */
export function fakeCounts(gamma: number): SpecCounts {
  const drafts = gamma > 0 ? 4 : 0;
  const draftTokens = drafts * gamma;
  const accepted = Math.floor(draftTokens * 0.6);
  const perPos = Array.from({ length: gamma }, (_, i) => Math.max(0, drafts - i));
  return { steps: 4, drafts, draftTokens, accepted, acceptedPerPos: perPos };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (b: Buffer) => parts.push(b));
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", reject);
  });
}

/**
 * An OpenAI-compatible origin that answers at once with fixed text. `name` is echoed in the
 * `x-origin` header and the response's `system_fingerprint`-free `model` is the request's.
 * Control over HTTP too (for tests inside workerd): `POST /__mode {"mode"}`, `GET /__requests`.
 */
export async function startTrivialOrigin(name: string, o: { port?: number; record?: boolean } = {}): Promise<TrivialOrigin> {
  let mode: OriginMode = "ok";
  const requests: RecordedRequest[] = [];
  const record = o.record ?? true;
  let aborted = 0;
  const sockets = new Set<Socket>();
  const held = new Set<ServerResponse>();

  const server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (req.method === "GET" && path === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ok", pool: name }));
      return;
    }
    if (path === "/__mode" && req.method === "POST") {
      mode = (JSON.parse(await readBody(req)) as { mode: OriginMode }).mode;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ mode }));
      return;
    }
    if (path === "/__requests") {
      if (req.method === "DELETE") requests.length = 0;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ requests, aborted }));
      return;
    }
    if (req.method !== "POST" || (path !== "/v1/chat/completions" && path !== "/v1/completions")) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "no route", type: "not_found_error", param: null, code: "not_found" } }));
      return;
    }
    const text = await readBody(req);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "bad json", type: "invalid_request_error", param: null, code: "invalid_json" } }));
      return;
    }
    if (record) requests.push({ path, body, headers: req.headers });
    let finished = false;
    res.on("close", () => {
      if (!finished) aborted++;
    });
    const end = (s?: string) => {
      finished = true;
      res.end(s);
    };

    if (mode === "hang") {
      held.add(res);
      res.on("close", () => held.delete(res));
      return;
    }
    if (mode === "fail500") {
      res.writeHead(500, { "content-type": "application/json" });
      end(JSON.stringify({ error: { message: "origin exploded (test)", type: "server_error", param: null, code: "internal_error" } }));
      return;
    }
    if (mode === "bad400") {
      res.writeHead(400, { "content-type": "application/json", "x-origin": name });
      end(JSON.stringify({ error: { message: "max_tokens: too large (test)", type: "invalid_request_error", param: "max_tokens", code: "invalid_value" } }));
      return;
    }
    if (mode === "busy429") {
      res.writeHead(429, { "content-type": "application/json", "retry-after": "3" });
      end(JSON.stringify({ error: { message: "queue full (test)", type: "rate_limit_error", param: null, code: "queue_full" } }));
      return;
    }

    const chat = path === "/v1/chat/completions";
    const spec = (body.speculative ?? null) as EffectiveSpeculative | null;
    const effective: EffectiveSpeculative = spec ?? { drafter: "server-fixed", gamma: 5, proposal_temperature: null };
    const counts = fakeCounts(effective.gamma);
    const head: ResponseHead = { id: `${chat ? "chatcmpl" : "cmpl"}-${name}-${requests.length}`, created: 1_700_000_000, model: String(body.model) };
    const u = usage(7, ORIGIN_TEXT.length, counts);
    const metrics = { speculative_decoding: u.speculative_decoding, timing: { queue_ms: 0, time_to_first_token_ms: 1, e2e_ms: 2 } };

    if (body.stream !== true) {
      const full = ORIGIN_TEXT.join("");
      const json = JSON.stringify(chat ? chatCompletion(head, full, "stop", u, metrics, effective) : textCompletion(head, full, "stop", u, metrics, effective));
      if (mode === "die-mid-stream") {
        res.writeHead(200, { "content-type": "application/json", "x-origin": name });
        res.write(json.slice(0, json.length >> 1));
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "x-origin": name });
      end(json);
      return;
    }

    const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-origin": name });
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    if (chat) send(chatChunk(head, { role: "assistant", content: "" }, null, includeUsage));
    for (const [i, piece] of ORIGIN_TEXT.entries()) {
      send(chat ? chatChunk(head, { content: piece }, null, includeUsage) : completionChunk(head, piece, null, includeUsage));
      if (i === 1 && mode === "die-mid-stream") {
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      if (i === 1 && mode === "stall-mid-stream") {
        held.add(res);
        res.on("close", () => held.delete(res));
        return;
      }
    }
    send(chat ? chatChunk(head, {}, "stop", includeUsage) : completionChunk(head, "", "stop", includeUsage));
    if (includeUsage) send(usageChunk(head, chat ? "chat.completion.chunk" : "text_completion", u, metrics, effective));
    res.write("data: [DONE]\n\n");
    end();
  });
  server.keepAliveTimeout = 30_000;
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    name,
    requests,
    get aborted() {
      return aborted;
    },
    setMode(m) {
      mode = m;
      if (m === "ok") for (const r of held) r.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A URL on which nothing listens (connection refused). */
export async function deadUrl(): Promise<string> {
  const s = createServer();
  const port = await new Promise<number>((r) => s.listen(0, "127.0.0.1", () => r((s.address() as AddressInfo).port)));
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

/** An edge config (input form) with a `default` and a `fallback` pool on the given origins. */
export function edgeConfigInput(o: { defaultUrls: string[]; fallbackUrls?: string[]; extra?: Record<string, unknown> }) {
  return {
    model: "fairspec",
    pools: [
      { id: "default", kind: "fairspec", urls: o.defaultUrls, drafter: "base", gamma: 2, proposal_temperature: null },
      ...(o.fallbackUrls ? [{ id: "fallback", kind: "fairspec", urls: o.fallbackUrls, drafter: null, gamma: 0, proposal_temperature: null }] : []),
    ],
    defaultPool: "default",
    fallbackPool: o.fallbackUrls ? "fallback" : null,
    ...o.extra,
  };
}
