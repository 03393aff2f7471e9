/**
 * Security properties of the edge and the store:
 *
 * - API keys exist at rest only as sha256 hashes: after keys are created (generated and
 *   registered ones) and used through the edge (telemetry written), the raw bytes of the libSQL
 *   file and its WAL / journal hold no raw key, no key's secret part, and neither the admin token —
 *   while the keys' hashes are there (the scan reads the right bytes).
 * - Tenant isolation through the edge's own routes: a tenant key reads only its own policy, never
 *   another's (whatever the path spelling), changes none (the store is unchanged afterwards), and
 *   cannot pose as another tenant towards the origin.
 * - The admin routes refuse every tenant key (403), revoked or unknown keys and wrong tokens (401),
 *   and open to nothing at all when no ADMIN_TOKEN is set.
 * - No secret (API keys — valid, revoked or merely presented —, the admin token, the libSQL token,
 *   the origin token) appears in the edge's structured log, in anything written to the console,
 *   or in any response, during a run full of failures: dead and failing origins, wrong credentials,
 *   a libSQL outage (refused, erroring and hanging), admin calls during it, a crashing classifier
 *   and a client leaving mid-body. The origin token reaches origins; the tenant key never does.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../calibrator/store.ts";
import { parseEdgeConfig } from "../functions/config.ts";
import { startNodeEdge } from "../functions/node.ts";
import { startEdgeFixture, type EdgeFixture } from "./reliability/fixtures.ts";
import { sendRaw } from "./reliability/raw-http.ts";
import { startHrana } from "./support/hrana.ts";
import { deadUrl, edgeConfigInput, startTrivialOrigin } from "./workers/fixtures.ts";
import { createEdgeApp } from "../functions/app.ts";
import { createEdgeDb } from "../functions/db.ts";
import { createClient } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

/** Every file of the database (main file, -wal, -shm, -journal), as raw bytes. */
function dbFiles(dbPath: string): Map<string, Buffer> {
  const dir = join(dbPath, "..");
  const base = dbPath.split("/").at(-1)!;
  const out = new Map<string, Buffer>();
  for (const f of readdirSync(dir)) if (f.startsWith(base)) out.set(f, readFileSync(join(dir, f)));
  return out;
}

/** Where `needle` occurs in any of the files, as UTF-8 or UTF-16LE. */
function occurrences(files: Map<string, Buffer>, needle: string): string[] {
  const found: string[] = [];
  for (const [name, bytes] of files) {
    if (bytes.includes(Buffer.from(needle, "utf8"))) found.push(`${name} (utf8)`);
    if (bytes.includes(Buffer.from(needle, "utf16le"))) found.push(`${name} (utf16le)`);
  }
  return found;
}

let f: EdgeFixture;
beforeAll(async () => {
  f = await startEdgeFixture();
});
afterAll(async () => {
  await f?.close();
});

const req = (path: string, init: { method?: string; token?: string | null; body?: unknown; headers?: Record<string, string> } = {}) => {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  return f.edge.app.request(path, { method: init.method ?? "GET", headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) }, {}, f.ctx);
};

describe("keys at rest", () => {
  it("the libSQL file and its WAL hold only hashes: no raw key, no key's secret part, no admin token", async () => {
    const store = await openStore(`file:${f.dbPath}`);
    const created: string[] = [];
    try {
      for (let i = 0; i < 20; i++) created.push((await store.createApiKey(i % 2 ? "acme" : "globex")).key);
      // A key the operator chose (e.g. a demo key from the environment) is hashed the same way.
      created.push((await store.createApiKey("initech", "fs_chosenDemoKey0123456789abcdefghi")).key);
    } finally {
      store.close();
    }
    const keys = [...created, f.keys.own, f.keys.other, f.keys.third, f.keys.revoked];
    // Use them through the edge: key lookups, cache, telemetry rows written to the same file.
    for (const k of keys.filter((k) => k.startsWith("fs_"))) {
      const r = await req("/v1/chat/completions", { method: "POST", token: k, body: { model: "fairspec", messages: [{ role: "user", content: "hi" }] } });
      await r.text();
    }
    await f.settle();
    await f.edge.state.telemetry.flush();

    const check = (files: Map<string, Buffer>) => {
      expect(files.size).toBeGreaterThan(0);
      for (const k of keys) {
        expect(occurrences(files, k), `raw key ${k.slice(0, 8)}…`).toEqual([]);
        // The secret part alone (the stored prefix is the first 8 characters).
        expect(occurrences(files, k.slice(8)), `secret part of ${k.slice(0, 8)}…`).toEqual([]);
        expect(occurrences(files, Buffer.from(k).toString("base64")), "base64 of a key").toEqual([]);
      }
      expect(occurrences(files, f.adminToken)).toEqual([]);
    };
    // While the edge's connection is open (WAL / journal may hold recent pages) …
    const open = dbFiles(f.dbPath);
    check(open);
    // … and the scan reads the right bytes: every key's hash is there.
    const all = Buffer.concat([...open.values()]);
    for (const k of keys) expect(all.includes(Buffer.from(sha256(k))), `hash of ${k.slice(0, 8)}…`).toBe(true);
    console.log(`keys at rest: scanned ${[...open.entries()].map(([n, b]) => `${n} (${b.length} bytes)`).join(", ")}; ${keys.length} keys, hashes only`);
  });
});

describe("tenant isolation through the edge", () => {
  it("a tenant reads its own policy only, however the path is spelled", async () => {
    const own = await req("/v1/fairspec/policy", { token: f.keys.own });
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ tenant_id: "acme", policy: { kind: "maxmin" } });
    const ownById = await req("/v1/fairspec/tenants/acme/policy", { token: f.keys.own });
    expect(ownById.status).toBe(200);
    await ownById.text();

    const spellings = [
      "/v1/fairspec/tenants/globex/policy",
      "/v1/fairspec/tenants/GLOBEX/policy",
      "/v1/fairspec/tenants/globex%00/policy",
      "/v1/fairspec/tenants/acme/../globex/policy",
      "/v1/fairspec/tenants/acme%2F..%2Fglobex/policy",
      "/v1/fairspec/tenants/%67lobex/policy",
      "/v1/fairspec/tenants/globex/policy/",
      "/v1/fairspec/tenants/globex/policy?tenant=acme",
      "/v1/fairspec/tenants/initech/policy",
      "/v1/fairspec/tenants/no-such-tenant/policy",
    ];
    for (const p of spellings) {
      const r = await req(p, { token: f.keys.own });
      const text = await r.text();
      expect([403, 404], `${p} → ${r.status} ${text}`).toContain(r.status);
      // Nothing of the other tenant's record leaks in the error.
      expect(text).not.toMatch(/throughput|Globex|"policy"/);
      expect(JSON.parse(text)).toMatchObject({ error: { type: expect.stringMatching(/permission_error|not_found_error/) } });
    }
  });

  it("no tenant key changes any policy (its own included); the store is unchanged", async () => {
    const store = await openStore(`file:${f.dbPath}`);
    try {
      const before = { acme: await store.getTenantPolicy("acme"), globex: await store.getTenantPolicy("globex"), initech: await store.getTenantPolicy("initech") };
      const writes: [string, string][] = [];
      for (const m of ["PUT", "POST", "PATCH", "DELETE"])
        for (const p of ["/v1/fairspec/policy", "/v1/fairspec/tenants/acme/policy", "/v1/fairspec/tenants/globex/policy", "/admin/tenants/globex/policy", "/admin/tenants/acme/policy"]) writes.push([m, p]);
      for (const [method, path] of writes) {
        for (const token of [f.keys.own, f.keys.other]) {
          const r = await req(path, { method, token, body: { kind: "floor", ratio: 0.1 }, headers: { "content-type": "application/json" } });
          const text = await r.text();
          // 403 where the route exists (tenant keys are authenticated, then refused); 404 for methods no route has.
          expect([403, 404], `${method} ${path} → ${r.status} ${text}`).toContain(r.status);
          if (method === "PUT" || path.startsWith("/v1/fairspec")) expect(r.status, `${method} ${path}`).toBe(403);
        }
      }
      expect({ acme: await store.getTenantPolicy("acme"), globex: await store.getTenantPolicy("globex"), initech: await store.getTenantPolicy("initech") }).toEqual(before);
    } finally {
      store.close();
    }
  });

  it("a tenant cannot pose as another towards the origin (spoofed x-fairspec-tenant), and its key never reaches the origin", async () => {
    const origin = await startTrivialOrigin("iso");
    const client = createClient({ url: `file:${f.dbPath}` });
    try {
      const config = parseEdgeConfig(edgeConfigInput({ defaultUrls: [origin.url], extra: { pools: [{ id: "default", kind: "fairspec", urls: [origin.url], drafter: "base", gamma: 2, proposal_temperature: null }, { id: "pool-base", kind: "fairspec", urls: [origin.url], drafter: "base", gamma: 4, proposal_temperature: null }, { id: "pool-bal", kind: "fairspec", urls: [origin.url], drafter: "balanced", gamma: 3, proposal_temperature: 0.7 }, { id: "pool-vllm", kind: "vllm", urls: [origin.url], drafter: "base", gamma: 5, proposal_temperature: null }] } }));
      const edge = createEdgeApp({ config, db: createEdgeDb(drizzle(client)), originToken: "origin-secret-token-5e1d" });
      const r = await edge.app.request(
        "/v1/chat/completions",
        {
          method: "POST",
          headers: { authorization: `Bearer ${f.keys.own}`, "x-fairspec-tenant": "globex", "x-forwarded-user": "globex" },
          body: JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "hi" }], user: "globex" }),
        },
        {},
        f.ctx,
      );
      expect(r.status).toBe(200);
      await r.text();
      const sent = origin.requests.at(-1)!;
      expect(sent.headers["x-fairspec-tenant"]).toBe("acme");
      expect(sent.headers.authorization).toBe("Bearer origin-secret-token-5e1d");
      expect(JSON.stringify(sent)).not.toContain(f.keys.own);
      expect(JSON.stringify(sent)).not.toContain(f.keys.own.slice(8));
    } finally {
      client.close();
      await origin.close();
    }
  });
});

describe("admin routes", () => {
  const ROUTES: [string, string][] = [
    ["GET", "/admin/runs"],
    ["GET", "/admin/runs/active"],
    ["GET", "/admin/tenants/acme/policy"],
    ["GET", "/admin/tenants/globex/policy"],
    ["PUT", "/admin/tenants/acme/policy"],
  ];

  it("refuse every tenant key with 403, everything but the token with 401; the token gets in", async () => {
    for (const [method, path] of ROUTES) {
      const body = method === "PUT" ? { kind: "maxmin" } : undefined;
      for (const token of [f.keys.own, f.keys.other, f.keys.third]) {
        const r = await req(path, { method, token, body });
        expect(r.status, `${method} ${path} with a tenant key`).toBe(403);
        expect(await r.json()).toMatchObject({ error: { type: "permission_error", code: "admin_only" } });
      }
      const wrong = [null, f.keys.revoked, `fs_${"Q".repeat(32)}`, f.adminToken.toUpperCase(), `${f.adminToken}x`, f.adminToken.slice(0, -1), `${f.adminToken},${f.adminToken}`, "admin", "null", "undefined", "*"];
      for (const token of wrong) {
        const r = await req(path, { method, token, body });
        expect(r.status, `${method} ${path} with ${JSON.stringify(token?.slice(0, 12))}`).toBe(401);
        expect(await r.json()).toMatchObject({ error: { type: "authentication_error" } });
      }
      // Other schemes, and the token outside the Authorization header, are not the token.
      for (const headers of <Record<string, string>[]>[{ authorization: `Basic ${Buffer.from(`admin:${f.adminToken}`).toString("base64")}` }, { "x-admin-token": f.adminToken }, { cookie: `admin=${f.adminToken}` }, { authorization: `Token ${f.adminToken}` }]) {
        const r = await req(path, { method, body, headers });
        expect(r.status).toBe(401);
        await r.text();
      }
      const ok = await req(path, { method, token: f.adminToken, body });
      expect(ok.status, `${method} ${path} with the admin token`).toBe(200);
      await ok.text();
    }
    // The admin token is not a tenant key.
    const r = await req("/v1/chat/completions", { method: "POST", token: f.adminToken, body: { model: "fairspec", messages: [{ role: "user", content: "x" }] } });
    expect(r.status).toBe(401);
    await r.text();
  });

  it("with no ADMIN_TOKEN configured nothing gets in", async () => {
    const other = await startEdgeFixture({ deps: { adminToken: null } });
    try {
      for (const token of [null, "", "null", "undefined", "Bearer", other.adminToken, other.keys.own]) {
        const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
        const r = await other.edge.app.request("/admin/runs", { headers }, {}, other.ctx);
        expect([401, 403]).toContain(r.status);
        await r.text();
      }
    } finally {
      await other.close();
    }
  });
});

describe("no secret in logs, console output or responses", () => {
  it("a run full of failures writes no API key, admin token, libSQL token or origin token anywhere", async () => {
    const DB_TOKEN = "libsql-secret-token-8c2f4a9d";
    const ORIGIN_TOKEN = "origin-secret-token-3b7e91c0";
    const hrana = await startHrana({ path: f.dbPath, authToken: DB_TOKEN });
    const good = await startTrivialOrigin("good");
    const failing = await startTrivialOrigin("failing");
    failing.setMode("fail500");
    const dead = await deadUrl();
    const events: string[] = [];
    const consoleOut: string[] = [];
    const bodies: string[] = [];
    const presented: string[] = [`fs_${"Z".repeat(32)}`, `fs_${"k".repeat(31)}`, "sk-live-0123456789abcdef0123456789", `${f.adminToken}-wrong`];

    // Capture everything written to the console while the edge runs.
    const originals = { log: console.log, error: console.error, warn: console.warn, info: console.info, debug: console.debug, out: process.stdout.write, err: process.stderr.write };
    const grab = (...a: unknown[]) => void consoleOut.push(a.map((x) => (typeof x === "string" ? x : JSON.stringify(x) ?? String(x))).join(" "));
    console.log = console.error = console.warn = console.info = console.debug = grab;
    process.stdout.write = ((chunk: unknown) => (consoleOut.push(String(chunk)), true)) as typeof process.stdout.write;
    process.stderr.write = ((chunk: unknown) => (consoleOut.push(String(chunk)), true)) as typeof process.stderr.write;

    const config = parseEdgeConfig(
      edgeConfigInput({
        defaultUrls: [dead, failing.url],
        fallbackUrls: [good.url],
        extra: {
          pools: [
            { id: "default", kind: "fairspec", urls: [dead, failing.url], drafter: "base", gamma: 2, proposal_temperature: null },
            { id: "fallback", kind: "fairspec", urls: [good.url], drafter: null, gamma: 0, proposal_temperature: null },
            { id: "pool-base", kind: "fairspec", urls: [dead, failing.url], drafter: "base", gamma: 4, proposal_temperature: null },
            { id: "pool-bal", kind: "fairspec", urls: [dead], drafter: "balanced", gamma: 3, proposal_temperature: 0.7 },
            { id: "pool-vllm", kind: "vllm", urls: [failing.url], drafter: "base", gamma: 5, proposal_temperature: null },
          ],
          maxAttempts: 2,
          cache: { paramsTtlMs: 200, keyTtlMs: 200, negativeKeyTtlMs: 100, dbTimeoutMs: 300, retryMs: 100 },
          telemetry: { flushDelayMs: 0 },
        },
      }),
    );
    const edge = await startNodeEdge({
      config,
      dbUrl: hrana.url,
      dbToken: DB_TOKEN,
      adminToken: f.adminToken,
      originToken: ORIGIN_TOKEN,
      classifier: {
        async classify(text) {
          throw new Error(`classifier exploded on ${text.length} chars`);
        },
      },
      port: 0,
      log: (event, fields) => events.push(JSON.stringify({ event, ...fields })),
    });
    const call = async (path: string, o: { method?: string; auth?: string; body?: unknown } = {}) => {
      try {
        const r = await fetch(`${edge.url}${path}`, { method: o.method ?? "POST", headers: o.auth ? { authorization: o.auth } : {}, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
        bodies.push(`${r.status} ${JSON.stringify([...r.headers])} ${await r.text()}`);
        return r.status;
      } catch (e) {
        return -1;
      }
    };
    const chat = (extra: Record<string, unknown> = {}) => ({ model: "fairspec", messages: [{ role: "user", content: "Hello" }], ...extra });
    const statuses: number[] = [];
    try {
      console.error("capture-probe"); // proves the capture works
      // Warm two keys; failing origins (connect refused, 500) before the fallback serves.
      for (const k of [f.keys.own, f.keys.other]) statuses.push(await call("/v1/chat/completions", { auth: `Bearer ${k}`, body: chat() }));
      statuses.push(await call("/v1/chat/completions", { auth: `Bearer ${f.keys.other}`, body: chat({ stream: true }) }));
      // Wrong credentials of every kind, on every kind of route.
      for (const p of [...presented, f.keys.revoked])
        for (const [method, path] of [["POST", "/v1/chat/completions"], ["GET", "/admin/runs"], ["GET", "/v1/fairspec/policy"]] as const) statuses.push(await call(path, { method, auth: `Bearer ${p}`, body: method === "POST" ? chat() : undefined }));
      statuses.push(await call("/admin/runs", { method: "GET", auth: `Bearer ${f.keys.own}` }));
      // libSQL down: refused, erroring, hanging — stale entries serve, refreshes fail and are logged.
      for (const mode of ["refuse", "error", "hang"] as const) {
        await hrana.setMode(mode);
        await new Promise((r) => setTimeout(r, 250)); // entries go stale
        for (const k of [f.keys.own, f.keys.other]) statuses.push(await call("/v1/chat/completions", { auth: `Bearer ${k}`, body: chat() }));
        // A key never seen here: 503 auth_unavailable (fail closed).
        statuses.push(await call("/v1/chat/completions", { auth: `Bearer ${f.keys.third}`, body: chat() }));
        statuses.push(await call("/admin/runs", { method: "GET", auth: `Bearer ${f.adminToken}` }));
        statuses.push(await call("/admin/tenants/acme/policy", { method: "PUT", auth: `Bearer ${f.adminToken}`, body: { kind: "maxmin" } }));
      }
      await hrana.setMode("up");
      // A client leaving mid-body (an internal error today: see test/fuzz.test.ts).
      await sendRaw(Number(new URL(edge.url).port), {
        label: "short body",
        data: (h) => Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: ${h}\r\nAuthorization: Bearer ${f.keys.own}\r\nContent-Length: 500\r\n\r\n{"model":`),
        then: { pauseMs: 50, destroy: true },
        expect: "none",
      });
      await new Promise((r) => setTimeout(r, 300));
      statuses.push(await call("/v1/chat/completions", { auth: `Bearer ${f.keys.own}`, body: chat() }));
    } finally {
      await edge.close();
      Object.assign(console, { log: originals.log, error: originals.error, warn: originals.warn, info: originals.info, debug: originals.debug });
      process.stdout.write = originals.out;
      process.stderr.write = originals.err;
      await hrana.close();
      await good.close();
      await failing.close();
    }

    expect(consoleOut.join("\n")).toContain("capture-probe");
    expect(events.join("\n")).toContain("classifier exploded");
    // The run did exercise the failure paths.
    const kinds = new Set(events.map((e) => (JSON.parse(e) as { event: string }).event));
    for (const k of ["classifier_error", "auth_unavailable", "admin_db_error"]) expect(kinds, `log events: ${[...kinds].join(", ")}`).toContain(k);
    expect(statuses).toContain(503);
    expect(statuses).toContain(200);

    const secrets: [string, string][] = [
      ...[f.keys.own, f.keys.other, f.keys.third, f.keys.revoked, ...presented].flatMap((k): [string, string][] => [
        [`key ${k.slice(0, 6)}…`, k],
        [`secret part of ${k.slice(0, 6)}…`, k.slice(8)],
      ]),
      ["admin token", f.adminToken],
      ["libSQL token", DB_TOKEN],
      ["origin token", ORIGIN_TOKEN],
    ];
    const where = { "log events": events.join("\n"), console: consoleOut.join("\n"), "responses (status, headers, body)": bodies.join("\n") };
    const leaks: string[] = [];
    for (const [name, s] of secrets) for (const [place, text] of Object.entries(where)) if (text.includes(s)) leaks.push(`${name} in ${place}`);
    expect(leaks).toEqual([]);
    console.log(`secrets: ${events.length} log events (${[...kinds].join(", ")}), ${consoleOut.length} console writes, ${bodies.length} responses scanned; none holds a secret`);
  });
});

describe("known issue: origin URLs in tenant-facing errors", () => {
  // functions/routing.ts `failure()`: a 502 / 504 / 429 after failed attempts tells the tenant every
  // origin tried — pool id and full URL (internal host and port, and any userinfo a URL carries,
  // e.g. `https://user:password@gpu-host`). Internal topology (and credentials, if configured in a
  // URL) go to the log, not to the client.
  it("a 502 does not reveal the origins' URLs or credentials to the tenant", async () => {
    const dead = (await deadUrl()).replace("http://", "http://ops:hunter2@");
    const pool = (id: string, gamma: number) => ({ id, kind: "fairspec", urls: [dead], drafter: gamma ? "base" : null, gamma, proposal_temperature: null });
    const client = createClient({ url: `file:${f.dbPath}` });
    try {
      const config = parseEdgeConfig(edgeConfigInput({ defaultUrls: [dead], extra: { pools: [pool("default", 2), pool("pool-base", 4), pool("pool-bal", 3), pool("pool-vllm", 0)] } }));
      const edge = createEdgeApp({ config, db: createEdgeDb(drizzle(client)) });
      const r = await edge.app.request("/v1/chat/completions", { method: "POST", headers: { authorization: `Bearer ${f.keys.other}` }, body: JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "x" }] }) }, {}, f.ctx);
      expect(r.status).toBe(502);
      const text = await r.text();
      expect(text).not.toContain("hunter2");
      expect(text).not.toContain(new URL(dead).port);
    } finally {
      client.close();
    }
  });
});
