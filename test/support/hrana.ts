/**
 * A local Hrana v2-over-HTTP endpoint backed by the real libSQL engine (the `libsql` npm package
 * that @libsql/client uses in Node), so `@libsql/client/web` — and a Worker under wrangler dev or
 * the vitest pool — can talk to a libSQL database over HTTP without sqld (not installable here).
 *
 *   GET  /v2            200 (protocol version check)
 *   POST /v2/pipeline   {baton, requests: [execute | batch | sequence | describe | store_sql |
 *                        close_sql | get_autocommit | close]} → {baton, base_url, results}
 *
 * Streams: each stream is one SQLite connection. A pipeline without a baton opens one; unless the
 * pipeline ends with `close`, the stream stays open under a fresh baton (expiring after
 * `streamIdleMs`, rolled back if a transaction was left open). While a stream holds a transaction
 * open across pipelines, other streams wait for it (an async lock; the engine itself is
 * synchronous), instead of failing with SQLITE_BUSY.
 *
 * Faults, for outage tests: `setMode("refuse")` closes the listening socket and every connection
 * (connection refused, as a host that is down), `"hang"` accepts and never answers (a slow
 * database), `"error"` answers 503, `"lose-reply"` executes each pipeline (commits) and then drops
 * the connection without answering (a server killed between its commit and its reply), `"up"`
 * serves again on the same port. The same modes can be
 * set over HTTP on a separate control port (`POST {controlUrl}/mode` with `{"mode": …}`), which a
 * test running inside workerd uses.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// The `libsql` package is CommonJS with better-sqlite3's API.
interface LibsqlStatement {
  reader: boolean;
  raw(on?: boolean): LibsqlStatement;
  safeIntegers(on?: boolean): LibsqlStatement;
  columns(): { name: string; type: string | null }[];
  all(...args: unknown[]): unknown[][];
  run(...args: unknown[]): { changes: number; lastInsertRowid: number | bigint };
}
interface LibsqlDatabase {
  inTransaction: boolean;
  prepare(sql: string): LibsqlStatement;
  exec(sql: string): void;
  close(): void;
}
const Database = require("libsql") as new (path: string, opts?: Record<string, unknown>) => LibsqlDatabase;

export type HranaMode = "up" | "refuse" | "hang" | "error" | "lose-reply";

export interface HranaServer {
  /** http://127.0.0.1:PORT — a libSQL URL for @libsql/client/web (`url`, plus `authToken` if set). */
  url: string;
  /** The control endpoint: POST {controlUrl}/mode {"mode": HranaMode}. */
  controlUrl: string;
  port: number;
  setMode(mode: HranaMode): Promise<void>;
  readonly mode: HranaMode;
  /** Pipelines served (any result). */
  readonly pipelines: number;
  close(): Promise<void>;
}

export interface HranaOptions {
  /** Path of the SQLite file (create and migrate it first, e.g. with calibrator/store.ts openStore). */
  path: string;
  /** When set, requests must carry `Authorization: Bearer <authToken>`. */
  authToken?: string;
  host?: string;
  port?: number;
  streamIdleMs?: number;
}

// ---- protocol values ----

type HValue = { type: "null" } | { type: "integer"; value: string } | { type: "float"; value: number } | { type: "text"; value: string } | { type: "blob"; base64: string };

interface HStmt {
  sql?: string;
  sql_id?: number;
  args?: HValue[];
  named_args?: { name: string; value: HValue }[];
  want_rows?: boolean;
}

type HCond = { type: "ok"; step: number } | { type: "error"; step: number } | { type: "not"; cond: HCond } | { type: "and"; conds: HCond[] } | { type: "or"; conds: HCond[] } | { type: "is_autocommit" };

type HRequest =
  | { type: "close" }
  | { type: "execute"; stmt: HStmt }
  | { type: "batch"; batch: { steps: { condition?: HCond | null; stmt: HStmt }[] } }
  | { type: "sequence"; sql?: string; sql_id?: number }
  | { type: "describe"; sql?: string; sql_id?: number }
  | { type: "store_sql"; sql_id: number; sql: string }
  | { type: "close_sql"; sql_id: number }
  | { type: "get_autocommit" };

class HranaError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

function fromValue(v: HValue | undefined): unknown {
  if (!v) return null;
  switch (v.type) {
    case "null":
      return null;
    case "integer":
      return BigInt(v.value);
    case "float":
      return v.value;
    case "text":
      return v.value;
    case "blob":
      return Buffer.from(v.base64, "base64");
    default:
      throw new HranaError(`unknown value type ${(v as { type: string }).type}`, "PROTOCOL_ERROR");
  }
}

function toValue(x: unknown): HValue {
  if (x === null || x === undefined) return { type: "null" };
  if (typeof x === "bigint") return { type: "integer", value: x.toString() };
  if (typeof x === "number") return Number.isInteger(x) ? { type: "integer", value: String(x) } : { type: "float", value: x };
  if (typeof x === "string") return { type: "text", value: x };
  if (x instanceof Uint8Array) return { type: "blob", base64: Buffer.from(x).toString("base64") };
  if (x instanceof ArrayBuffer) return { type: "blob", base64: Buffer.from(new Uint8Array(x)).toString("base64") };
  return { type: "text", value: String(x) };
}

const WRITES = /^\s*(insert|update|delete|replace)\b/i;

interface Stream {
  db: LibsqlDatabase;
  sqls: Map<number, string>;
  timer: ReturnType<typeof setTimeout> | null;
}

export async function startHrana(o: HranaOptions): Promise<HranaServer> {
  const host = o.host ?? "127.0.0.1";
  const idleMs = o.streamIdleMs ?? 10_000;
  const streams = new Map<string, Stream>();
  const idle: LibsqlDatabase[] = [];
  let mode: HranaMode = "up";
  let pipelines = 0;
  // The stream holding a transaction open across pipelines, and who waits for it.
  let owner: Stream | null = null;
  let waiters: (() => void)[] = [];

  const open = (): Stream => ({ db: idle.pop() ?? new Database(o.path), sqls: new Map(), timer: null });

  const releaseOwner = (s: Stream) => {
    if (owner !== s) return;
    owner = null;
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  const closeStream = (s: Stream) => {
    if (s.timer) clearTimeout(s.timer);
    if (s.db.inTransaction) {
      try {
        s.db.exec("ROLLBACK");
      } catch {
        /* already gone */
      }
    }
    releaseOwner(s);
    if (idle.length < 8) idle.push(s.db);
    else s.db.close();
  };

  const sqlOf = (s: Stream, sql: string | undefined, id: number | undefined): string => {
    if (sql !== undefined) return sql;
    if (id !== undefined) {
      const stored = s.sqls.get(id);
      if (stored === undefined) throw new HranaError(`no SQL stored under id ${id}`, "SQL_NOT_FOUND");
      return stored;
    }
    throw new HranaError("a statement needs sql or sql_id", "PROTOCOL_ERROR");
  };

  const execute = (s: Stream, st: HStmt) => {
    const sql = sqlOf(s, st.sql, st.sql_id);
    let stmt: LibsqlStatement;
    try {
      stmt = s.db.prepare(sql);
    } catch (e) {
      throw sqliteError(e);
    }
    const named = st.named_args ?? [];
    const bind: unknown[] =
      named.length > 0
        ? [Object.fromEntries(named.map((a) => [/^[:@$]/.test(a.name) ? a.name.slice(1) : a.name, fromValue(a.value)]))]
        : (st.args ?? []).map(fromValue);
    try {
      if (stmt.reader) {
        stmt.raw(true);
        stmt.safeIntegers(true);
        const cols = stmt.columns().map((c) => ({ name: c.name, decltype: c.type ?? null }));
        const rows = stmt.all(...bind).map((r) => r.map(toValue));
        let affected = 0;
        let lastId: string | null = null;
        if (WRITES.test(sql)) {
          const info = s.db.prepare("SELECT changes(), last_insert_rowid()").raw(true).safeIntegers(true).all()[0]!;
          affected = Number(info[0]);
          lastId = String(info[1]);
        }
        return { cols, rows: st.want_rows === false ? [] : rows, affected_row_count: affected, last_insert_rowid: lastId, rows_read: rows.length, rows_written: affected };
      }
      const info = stmt.run(...bind);
      return { cols: [], rows: [], affected_row_count: info.changes, last_insert_rowid: String(info.lastInsertRowid), rows_read: 0, rows_written: info.changes };
    } catch (e) {
      throw sqliteError(e);
    }
  };

  const evalCond = (c: HCond | null | undefined, ok: (boolean | undefined)[], s: Stream): boolean => {
    if (!c) return true;
    switch (c.type) {
      case "ok":
        return ok[c.step] === true;
      case "error":
        return ok[c.step] === false;
      case "not":
        return !evalCond(c.cond, ok, s);
      case "and":
        return c.conds.every((x) => evalCond(x, ok, s));
      case "or":
        return c.conds.some((x) => evalCond(x, ok, s));
      case "is_autocommit":
        return !s.db.inTransaction;
      default:
        throw new HranaError(`unknown condition ${(c as { type: string }).type}`, "PROTOCOL_ERROR");
    }
  };

  const handleRequest = (s: Stream, r: HRequest): Record<string, unknown> => {
    switch (r.type) {
      case "close":
        return { type: "close" };
      case "execute":
        return { type: "execute", result: execute(s, r.stmt) };
      case "batch": {
        const ok: (boolean | undefined)[] = [];
        const results: unknown[] = [];
        const errors: unknown[] = [];
        r.batch.steps.forEach((step, i) => {
          if (!evalCond(step.condition, ok, s)) {
            results.push(null);
            errors.push(null);
            return;
          }
          try {
            results.push(execute(s, step.stmt));
            errors.push(null);
            ok[i] = true;
          } catch (e) {
            results.push(null);
            errors.push(errorOf(e));
            ok[i] = false;
          }
        });
        return { type: "batch", result: { step_results: results, step_errors: errors } };
      }
      case "sequence":
        try {
          s.db.exec(sqlOf(s, r.sql, r.sql_id));
        } catch (e) {
          throw e instanceof HranaError ? e : sqliteError(e);
        }
        return { type: "sequence" };
      case "describe":
        throw new HranaError("describe is not supported by this test endpoint", "NOT_SUPPORTED");
      case "store_sql":
        s.sqls.set(r.sql_id, r.sql);
        return { type: "store_sql" };
      case "close_sql":
        s.sqls.delete(r.sql_id);
        return { type: "close_sql" };
      case "get_autocommit":
        return { type: "get_autocommit", is_autocommit: !s.db.inTransaction };
      default:
        throw new HranaError(`unknown request type ${(r as { type: string }).type}`, "PROTOCOL_ERROR");
    }
  };

  const pipeline = async (body: { baton?: string | null; requests?: HRequest[] }) => {
    let s: Stream | undefined;
    if (body.baton) {
      s = streams.get(body.baton);
      if (!s) throw new HranaError(`unknown or expired baton`, "STREAM_EXPIRED");
      streams.delete(body.baton);
      if (s.timer) clearTimeout(s.timer);
    }
    // Another stream holds a transaction open: wait for it to end.
    while (owner && owner !== s) await new Promise<void>((r) => waiters.push(r));
    s ??= open();
    const results: unknown[] = [];
    let closed = false;
    for (const r of body.requests ?? []) {
      if (closed) {
        results.push({ type: "error", error: { message: "the stream is closed", code: "STREAM_CLOSED" } });
        continue;
      }
      try {
        results.push({ type: "ok", response: handleRequest(s, r) });
      } catch (e) {
        results.push({ type: "error", error: errorOf(e) });
      }
      if (r.type === "close") closed = true;
    }
    if (closed) {
      closeStream(s);
      return { baton: null, base_url: null, results };
    }
    if (s.db.inTransaction) owner = s;
    else releaseOwner(s);
    const baton = crypto.randomUUID();
    const stream = s;
    stream.timer = setTimeout(() => {
      streams.delete(baton);
      closeStream(stream);
    }, idleMs);
    streams.set(baton, stream);
    return { baton, base_url: null, results };
  };

  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };

  const readJson = (req: IncomingMessage): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      req.on("data", (b: Buffer) => parts.push(b));
      req.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString("utf8") || "{}"));
        } catch (e) {
          reject(e);
        }
      });
      req.on("error", reject);
    });

  const sockets = new Set<Socket>();
  const hanging = new Set<ServerResponse>();
  const server: Server = createServer(async (req, res) => {
    if (mode === "hang") {
      // Never answers (the client's own timeout decides); dropped when the mode changes.
      hanging.add(res);
      res.on("close", () => hanging.delete(res));
      return;
    }
    if (mode === "error") return send(res, 503, { message: "database unavailable (test mode)" });
    if (o.authToken && req.headers.authorization !== `Bearer ${o.authToken}`) return send(res, 401, { message: "unauthorized" });
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && (path === "/v2" || path === "/")) {
      res.writeHead(200).end();
      return;
    }
    if (req.method === "POST" && path === "/v2/pipeline") {
      try {
        const body = (await readJson(req)) as Parameters<typeof pipeline>[0];
        pipelines++;
        const result = await pipeline(body);
        if (mode === "lose-reply") {
          req.socket.destroy();
          return;
        }
        return send(res, 200, result);
      } catch (e) {
        return send(res, 400, { message: (e as Error).message, code: e instanceof HranaError ? e.code : null });
      }
    }
    send(res, 404, { message: `no route ${req.method} ${path}` });
  });
  server.on("connection", (sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
  });

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    });

  const port = await listen(o.port ?? 0);

  const setMode = async (m: HranaMode) => {
    if (m === mode) return;
    const wasRefusing = mode === "refuse";
    mode = m;
    if (m === "refuse") await stopListening();
    else if (wasRefusing) await listen(port);
    for (const r of hanging) r.destroy();
    hanging.clear();
  };

  const control = createServer(async (req, res) => {
    try {
      const body = (await readJson(req)) as { mode?: HranaMode };
      if (req.method === "POST" && req.url === "/mode" && body.mode && ["up", "refuse", "hang", "error", "lose-reply"].includes(body.mode)) {
        await setMode(body.mode);
        return send(res, 200, { mode });
      }
      if (req.method === "GET") return send(res, 200, { mode, pipelines });
      send(res, 400, { message: 'POST /mode {"mode": "up" | "refuse" | "hang" | "error" | "lose-reply"}' });
    } catch (e) {
      send(res, 500, { message: (e as Error).message });
    }
  });
  const controlPort = await new Promise<number>((resolve) => control.listen(0, host, () => resolve((control.address() as AddressInfo).port)));

  return {
    url: `http://${host}:${port}`,
    controlUrl: `http://${host}:${controlPort}`,
    port,
    setMode,
    get mode() {
      return mode;
    },
    get pipelines() {
      return pipelines;
    },
    async close() {
      await stopListening();
      await new Promise<void>((r) => {
        control.closeAllConnections();
        control.close(() => r());
      });
      for (const [b, s] of streams) {
        streams.delete(b);
        closeStream(s);
      }
      for (const db of idle.splice(0)) db.close();
    },
  };
}

function errorOf(e: unknown): { message: string; code: string | null } {
  if (e instanceof HranaError) return { message: e.message, code: e.code };
  const err = e as { message?: string; code?: string };
  return { message: err?.message ?? String(e), code: typeof err?.code === "string" ? err.code : null };
}

function sqliteError(e: unknown): HranaError {
  if (e instanceof HranaError) return e;
  const err = e as { message?: string; code?: string };
  return new HranaError(err?.message ?? String(e), typeof err?.code === "string" ? err.code : "SQLITE_ERROR");
}

// `npx tsx test/support/hrana.ts --db ./fairspec.db [--port 8080] [--token T]`: serve a database
// file over Hrana for `wrangler dev` (FAIRSPEC_DB_URL=http://127.0.0.1:8080) or any libSQL client.
if (process.argv[1] && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({ options: { db: { type: "string" }, port: { type: "string", default: "8080" }, host: { type: "string" }, token: { type: "string" } } });
  if (!values.db) {
    console.error("usage: tsx test/support/hrana.ts --db FILE [--port 8080] [--host 127.0.0.1] [--token T]");
    process.exit(2);
  }
  const s = await startHrana({ path: values.db, port: Number(values.port), ...(values.host ? { host: values.host } : {}), ...(values.token ? { authToken: values.token } : {}) });
  console.log(`hrana (libSQL over HTTP) for ${values.db} at ${s.url}; control at ${s.controlUrl}`);
}
