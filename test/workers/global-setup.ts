/**
 * globalSetup of the workerd suite (runs in Node, before the Worker starts): a libSQL database
 * seeded through calibrator/store.ts, served over Hrana v2 HTTP (test/support/hrana.ts, with an
 * auth token), and trivial origins on loopback. What the Worker and the tests need travels by
 * `provide` (bindings are set from it in vitest.workers.config.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startHrana } from "../support/hrana.ts";
import { deadUrl, edgeConfigInput, seedStore, startTrivialOrigin } from "./fixtures.ts";

export const DB_TOKEN = "workers-db-token";
export const ADMIN_TOKEN = "workers-admin-token";

declare module "vitest" {
  export interface ProvidedContext {
    hranaUrl: string;
    hranaControl: string;
    dbToken: string;
    adminToken: string;
    edgeConfig: string;
    runId: string;
    keys: { acme: string; globex: string; initech: string; revoked: string };
    origins: { base: string; bal: string; vllm: string; dflt: string; fallback: string; dead: string };
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), "fairspec-workers-"));
  const names = ["base", "bal", "vllm", "default", "fallback"] as const;
  const [base, bal, vllm, dflt, fallback] = await Promise.all(names.map((n) => startTrivialOrigin(n)));
  const dead = await deadUrl();
  const path = join(dir, "edge.db");
  const seeded = await seedStore(path, { base: [base!.url], balanced: [bal!.url], vllm: [vllm!.url] });
  const hrana = await startHrana({ path, authToken: DB_TOKEN });
  // The deployment config: pool-vllm is served by a dead origin and a live one (one origin down),
  // and a fallback pool catches a pool whose every origin fails before the first byte.
  const config = edgeConfigInput({
    defaultUrls: [dflt!.url],
    fallbackUrls: [fallback!.url],
    extra: {
      cache: { paramsTtlMs: 500, keyTtlMs: 500, negativeKeyTtlMs: 500, dbTimeoutMs: 1500, retryMs: 200 },
      timeouts: { firstByteMs: 3000, nonStreamMs: 3000, idleMs: 1500, connectMs: 1000 },
      // Rate limiting is tested in the Node suite; here it would turn the fuzz's valid requests into 429s.
      rateLimit: { burst: 1_000_000_000, perSecond: 1_000_000_000 },
    },
  });
  config.pools.push({ id: "pool-vllm", kind: "vllm", urls: [dead, vllm!.url], drafter: "base", gamma: 5, proposal_temperature: null } as (typeof config.pools)[number]);
  (config as Record<string, unknown>).weights = { "pool-vllm": [1, 1] };
  project.provide("hranaUrl", hrana.url);
  project.provide("hranaControl", hrana.controlUrl);
  project.provide("dbToken", DB_TOKEN);
  project.provide("adminToken", ADMIN_TOKEN);
  project.provide("edgeConfig", JSON.stringify(config));
  project.provide("runId", seeded.runId);
  project.provide("keys", seeded.keys);
  project.provide("origins", { base: base!.url, bal: bal!.url, vllm: vllm!.url, dflt: dflt!.url, fallback: fallback!.url, dead });
  return async () => {
    await hrana.close();
    await Promise.all([base, bal, vllm, dflt, fallback].map((o) => o!.close()));
    rmSync(dir, { recursive: true, force: true });
  };
}
