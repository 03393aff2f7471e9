/**
 * Fixtures of the reliability suite, on top of test/workers/fixtures.ts (seeded store, trivial
 * origin): an edge app in process with every origin working (so any 5xx is the input's doing),
 * its structured log captured, and the origin app on the bundled models.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { createEdgeApp, type EdgeApp, type EdgeDeps } from "../../functions/app.ts";
import { parseEdgeConfig, type EdgeConfig } from "../../functions/config.ts";
import { createEdgeDb } from "../../functions/db.ts";
import type { TaskClassifier } from "../../functions/task.ts";
import { createOriginApp } from "../../origin/app.ts";
import { model } from "../support/models.ts";
import { edgeConfigInput, seedStore, startTrivialOrigin, type Seeded, type TrivialOrigin } from "../workers/fixtures.ts";
import type { FuzzKeys, FuzzTarget } from "./fuzz.ts";

export interface LogEvent {
  event: string;
  fields: Record<string, unknown>;
}

export interface EdgeFixture {
  dir: string;
  dbPath: string;
  edge: EdgeApp;
  config: EdgeConfig;
  seeded: Seeded;
  origin: TrivialOrigin;
  keys: FuzzKeys;
  adminToken: string;
  logs: LogEvent[];
  /** waitUntil work (telemetry) runs here; settle() awaits it. */
  ctx: { waitUntil(p: Promise<unknown>): void; passThroughOnException(): void; props: Record<string, unknown> };
  settle(): Promise<void>;
  target(): FuzzTarget;
  close(): Promise<void>;
}

/** Not an API key's shape (fs_ + 32), so it can never authenticate as a tenant. */
export const ADMIN_TOKEN = "admin-reliability-7f3c9a1e5b2d4c6f8a0e";

export async function startEdgeFixture(o: { classifier?: TaskClassifier | null; extra?: Record<string, unknown>; deps?: Partial<EdgeDeps> } = {}): Promise<EdgeFixture> {
  const dir = mkdtempSync(join(tmpdir(), "fairspec-reliability-"));
  const dbPath = join(dir, "edge.db");
  const origin = await startTrivialOrigin("reliability", { record: false });
  const seeded = await seedStore(dbPath, { base: [origin.url], balanced: [origin.url], vllm: [origin.url] });
  const client: Client = createClient({ url: `file:${dbPath}` });
  const config = parseEdgeConfig(
    edgeConfigInput({
      defaultUrls: [origin.url],
      fallbackUrls: [origin.url],
      // The rate limit is not what is fuzzed (and would turn valid requests into 429s).
      extra: { rateLimit: { burst: 1_000_000_000, perSecond: 1_000_000_000 }, telemetry: { flushDelayMs: 50 }, ...o.extra },
    }),
  );
  const logs: LogEvent[] = [];
  const edge = createEdgeApp({
    config,
    db: createEdgeDb(drizzle(client)),
    adminToken: ADMIN_TOKEN,
    classifier: o.classifier ?? null,
    log: (event, fields) => logs.push({ event, fields }),
    ...o.deps,
  });
  const pending = new Set<Promise<unknown>>();
  const ctx = {
    waitUntil(p: Promise<unknown>) {
      const q: Promise<unknown> = p.catch(() => {}).finally(() => pending.delete(q));
      pending.add(q);
    },
    passThroughOnException() {},
    props: {},
  };
  const keys: FuzzKeys = { own: seeded.keys.acme, other: seeded.keys.globex, third: seeded.keys.initech, revoked: seeded.keys.revoked, admin: ADMIN_TOKEN };
  const settle = async () => {
    while (pending.size) await Promise.allSettled([...pending]);
  };
  return {
    dir,
    dbPath,
    edge,
    config,
    seeded,
    origin,
    keys,
    adminToken: ADMIN_TOKEN,
    logs,
    ctx,
    settle,
    target: () => ({
      name: "edge (createEdgeApp, app.request)",
      request: (req) => edge.app.request(req, undefined, {}, ctx),
      keys,
      maxBodyBytes: config.maxBodyBytes,
      inferencePaths: ["/v1/chat/completions", "/v1/completions"],
    }),
    async close() {
      await settle();
      await edge.state.telemetry.flush().catch(() => {});
      client.close();
      await origin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const ORIGIN_MODEL = "fairspec";

/** The origin app on the bundled models (no sockets); requests carry tiny max_tokens. */
export async function originTarget(): Promise<FuzzTarget> {
  const app = createOriginApp({
    modelName: ORIGIN_MODEL,
    verifier: await model("verifier"),
    drafters: { base: await model("drafter-base"), balanced: await model("drafter-balanced") },
    defaults: { drafter: "base", gamma: 3, proposal_temperature: null },
    // Generous: the fuzz sends one request at a time per worker, never a flood.
    maxWaiting: 64,
  });
  return {
    name: "origin (createOriginApp, bundled models, app.request)",
    request: (req) => app.request(req),
    keys: { own: "unused", other: "unused", third: "unused", revoked: "unused", admin: "unused" },
    maxBodyBytes: 1 << 20,
    inferencePaths: ["/v1/chat/completions", "/v1/completions"],
  };
}
