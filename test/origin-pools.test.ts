/**
 * Pools config: validation with errors that name the field, request bodies per pool kind, the
 * effective parameters (per request on fairspec, fixed on vLLM / SGLang), and health checks
 * against stub servers on 127.0.0.1 (no models needed).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { poolsCmd } from "../cli/pools.ts";
import { UsageError } from "../cli/args.ts";
import { checkPoolHealth, effectiveParams, findPool, healthUrl, loadPoolsConfig, parsePoolsConfig, PoolsConfigError, requestBodyFor, type Pool } from "../origin/pools.ts";
import { EXAMPLE_POOLS, listen, type RunningServer } from "../origin/server.ts";

const fairspec: Pool = { id: "f", kind: "fairspec", urls: ["http://127.0.0.1:1"], drafter: "base", gamma: 4, proposal_temperature: null, model: "fairspec" };
const vllm: Pool = { id: "v", kind: "vllm", urls: ["http://127.0.0.1:2/"], drafter: "Qwen/Qwen2.5-0.5B-Instruct", gamma: 5, proposal_temperature: null, model: "Qwen/Qwen2.5-7B-Instruct" };

describe("config", () => {
  it("the shipped example validates", async () => {
    const c = await loadPoolsConfig(EXAMPLE_POOLS);
    expect(c.pools.length).toBeGreaterThan(0);
    expect(c.pools.every((p) => p.kind === "fairspec")).toBe(true);
    expect(findPool(c, c.pools[0]!.id)).toBe(c.pools[0]);
    expect(() => findPool(c, "nope")).toThrow(PoolsConfigError);
  });

  const bad: [string, unknown, RegExp][] = [
    ["no pools", { pools: [] }, /^t: pools: /],
    ["bad kind", { pools: [{ ...fairspec, kind: "tgi" }] }, /pools\[0\]\.kind/],
    ["bad url", { pools: [{ ...fairspec, urls: ["localhost:8100"] }] }, /pools\[0\]\.urls\[0\]: must be an http\(s\) URL/],
    ["γ not an integer", { pools: [{ ...fairspec, gamma: 2.5 }] }, /pools\[0\]\.gamma/],
    ["γ too big for fairspec", { pools: [{ ...fairspec, gamma: 20 }] }, /pools\[0\]\.gamma: a fairspec origin accepts gamma 0\.\.16/],
    ["γ without drafter", { pools: [vllm, { ...fairspec, drafter: null }] }, /pools\[1\]\.drafter: gamma 4 needs a drafter/],
    ["missing field", { pools: [{ id: "x", kind: "vllm", urls: ["http://a"], drafter: null, gamma: 0 }] }, /pools\[0\]\.proposal_temperature/],
    ["unknown field", { pools: [{ ...fairspec, gama: 3 }] }, /pools\[0\]\.gama: Unrecognized key/],
    ["duplicate id", { pools: [fairspec, { ...fairspec }] }, /pools\[1\]\.id: duplicate pool id 'f'/],
  ];
  for (const [name, json, msg] of bad) {
    it(`rejects: ${name}`, () => {
      expect(() => parsePoolsConfig(json, "t")).toThrow(PoolsConfigError);
      expect(() => parsePoolsConfig(json, "t")).toThrow(msg);
    });
  }

  it("file errors say what to do", async () => {
    await expect(loadPoolsConfig("/nonexistent/pools.json")).rejects.toThrow(/no such file.*pools\.example\.json/);
    const dir = mkdtempSync(join(tmpdir(), "pools-"));
    writeFileSync(join(dir, "p.json"), "{ nope");
    await expect(loadPoolsConfig(join(dir, "p.json"))).rejects.toThrow(/not valid JSON/);
  });
});

describe("request bodies and effective parameters", () => {
  const body = { model: "client-model", messages: [{ role: "user", content: "hi" }], speculative: { gamma: 9 } };

  it("fairspec: the extension field, wanted parameters over the pool's defaults", () => {
    expect(requestBodyFor(fairspec, body)).toEqual({ ...body, model: "fairspec", speculative: { drafter: "base", gamma: 4, proposal_temperature: null } });
    expect(requestBodyFor(fairspec, body, { drafter: "balanced", gamma: 2, proposal_temperature: 0.5 }).speculative).toEqual({ drafter: "balanced", gamma: 2, proposal_temperature: 0.5 });
    expect(effectiveParams(fairspec, { gamma: 0 })).toEqual({ drafter: null, gamma: 0, proposal_temperature: null });
  });

  it("vLLM / SGLang: no extension; the fixed settings are what runs", () => {
    const b = requestBodyFor(vllm, body, { gamma: 2 });
    expect("speculative" in b).toBe(false);
    expect(b.model).toBe("Qwen/Qwen2.5-7B-Instruct");
    expect(effectiveParams(vllm, { gamma: 2, drafter: "x" })).toEqual({ drafter: vllm.drafter, gamma: 5, proposal_temperature: null });
    const { model: _m, ...noModel } = { ...vllm, kind: "sglang" as const };
    expect(requestBodyFor(noModel, body).model).toBe("client-model");
  });

  it("health paths per kind", () => {
    expect(healthUrl(fairspec, "http://h:1")).toBe("http://h:1/healthz");
    expect(healthUrl(vllm, "http://h:2/")).toBe("http://h:2/health");
    expect(healthUrl(vllm, "http://h:2/prefix")).toBe("http://h:2/prefix/health");
  });
});

describe("health checks", () => {
  let up: RunningServer;
  let hang: RunningServer;
  beforeAll(async () => {
    const stub = new Hono();
    stub.get("/healthz", (c) => c.json({ status: "ok" }));
    stub.get("/health", (c) => c.body(null, 200));
    up = await listen(stub, 0);
    const slow = new Hono();
    slow.get("*", () => new Promise<Response>(() => {})); // never answers
    hang = await listen(slow, 0);
  });
  afterAll(async () => {
    await up?.close();
    await hang?.close();
  });

  it("up, refused, and silent origins", async () => {
    const free = await listen(new Hono(), 0);
    await free.close(); // a port with nobody listening
    const pool: Pool = { ...fairspec, urls: [up.url, free.url, hang.url] };
    const [a, b, c] = await checkPoolHealth(pool, { timeoutMs: 200 });
    expect(a).toMatchObject({ url: up.url, ok: true, status: 200, error: null });
    expect(b).toMatchObject({ ok: false, status: null });
    expect(b!.error).toBeTruthy();
    expect(c).toMatchObject({ ok: false, status: null, error: "no answer within 200 ms" });
    const [v] = await checkPoolHealth({ ...vllm, urls: [up.url] });
    expect(v!.ok).toBe(true);
    const [wrongPath] = await checkPoolHealth({ ...vllm, kind: "sglang", urls: [`${up.url}/nothing-here`] });
    expect(wrongPath).toMatchObject({ ok: false, status: 404, error: "HTTP 404" });
  });

  it("`fairspec pools --json` reports each origin", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pools-"));
    const file = join(dir, "pools.json");
    writeFileSync(file, JSON.stringify({ pools: [{ ...fairspec, urls: [up.url] }, { ...vllm, urls: [up.url] }] }));
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      await poolsCmd.run(["--config", file, "--json"]);
      const out = JSON.parse(log.mock.calls.map((c) => c.join(" ")).join("\n"));
      expect(out.pools.map((p: { id: string; health: { ok: boolean }[] }) => [p.id, p.health[0]!.ok])).toEqual([
        ["f", true],
        ["v", true],
      ]);
      log.mockClear();
      await poolsCmd.run(["--config", file]);
      expect(log.mock.calls.flat().join("\n")).toMatch(/2 of 2 origins up/);
    } finally {
      log.mockRestore();
    }
    await expect(poolsCmd.run(["--config", join(dir, "missing.json")])).rejects.toThrow(UsageError);
    await expect(poolsCmd.run(["--bogus"])).rejects.toThrow(UsageError);
  });
});
