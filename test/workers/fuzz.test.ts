/**
 * The Node suite's hostile-request fuzz (test/reliability/hostile.ts, fuzz.ts), against the real
 * Worker inside workerd: the bundled entry (functions/worker.ts) with its libSQL-over-HTTP store
 * and the ONNX classifier, where the runtime's own Request/Headers/body handling differs from
 * Node's. Fewer cases than the Node suite's 10,000 (each one crosses workerd's loopback to the
 * trivial origins); same bars: no status ≥ 500 caused by input, every error in OpenAI's shape,
 * valid requests answered 200, and the Worker still serving afterwards.
 */
import { describe, expect, inject, it } from "vitest";
import { runFuzz } from "../reliability/fuzz.ts";
import { generateCases } from "../reliability/hostile.ts";

type Fetcher = { fetch(input: Request | string, init?: RequestInit): Promise<Response> };

async function worker(): Promise<Fetcher> {
  const mod = "cloudflare:workers";
  const { exports } = (await import(/* @vite-ignore */ mod)) as { exports: { default: Fetcher } };
  return exports.default;
}

const SEED = 20261205;
const CASES = 500;

describe("the Worker in workerd under hostile input", () => {
  it(`${CASES} generated malformed or hostile requests: no input-caused 5xx, OpenAI-shaped errors, valid ones 200`, async () => {
    const keys = inject("keys");
    const w = await worker();
    const config = JSON.parse(inject("edgeConfig")) as { maxBodyBytes?: number };
    const cases = generateCases(CASES, SEED, { target: "edge", model: "fairspec" });
    const s = await runFuzz(
      cases,
      {
        name: "edge (functions/worker.ts in workerd)",
        request: (req) => w.fetch(new Request(req.url.replace("http://localhost", "https://edge.test"), req)),
        keys: { own: keys.acme, other: keys.globex, third: keys.initech, revoked: keys.revoked, admin: inject("adminToken") },
        maxBodyBytes: config.maxBodyBytes ?? 1 << 20,
        inferencePaths: ["/v1/chat/completions", "/v1/completions"],
      },
      { seed: SEED, concurrency: 4 },
    );
    console.log(`workerd fuzz: ${s.sent} sent, ${s.refusedByRuntime} refused by the runtime, statuses ${JSON.stringify(s.byStatus)}, ${s.durationMs} ms`);
    expect(s.violations, JSON.stringify(s.violations.slice(0, 10), null, 1)).toEqual([]);
    expect(s.sent).toBeGreaterThan(CASES * 0.9);
    expect(Object.keys(s.byCategory.valid!)).toEqual(["200"]);
    // Still serving.
    const after = await w.fetch("https://edge.test/v1/models", { headers: { authorization: `Bearer ${keys.acme}` } });
    expect(after.status).toBe(200);
  }, 180_000);
});
