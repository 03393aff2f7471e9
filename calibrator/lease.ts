/**
 * A named lease in libSQL (`calibration_lease`: name, holder, expires_at), so one recalibration
 * runs at a time across hosts that share the calibration store.
 *
 * - `acquireLease` is ONE statement — an INSERT … ON CONFLICT DO UPDATE … WHERE the lease has
 *   expired or is already ours, RETURNING the row. SQLite (and a libSQL server) runs a statement
 *   atomically under the database's write lock, so of two processes racing for a free or expired
 *   lease exactly one gets a row back; the other gets none and reads who holds it.
 * - Times are the DATABASE's clock (`strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`), not each host's, so
 *   hosts with skewed clocks agree on when a lease expired. ISO-8601 UTC text with milliseconds
 *   compares correctly as text. Tests may pass `now` to use a fixed clock instead.
 * - `renewLease` extends a lease only while its holder still holds it (an expired lease nobody
 *   took over is still ours); `releaseLease` deletes it only for its holder.
 * - A holder that dies simply stops renewing: once `expires_at` passes, the next acquire takes it.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Client, InStatement, ResultSet } from "@libsql/client";
import type { Store } from "./store.ts";

/** A store, a Drizzle libSQL database, or a libSQL client. */
export type LeaseDb = Store | { $client: Client } | Client;

export interface Lease {
  name: string;
  holder: string;
  /** ISO-8601 UTC. */
  expiresAt: string;
}

export type LeaseAttempt = { acquired: true; lease: Lease } | { acquired: false; holder: string; expiresAt: string };

export interface LeaseClock {
  /** A fixed clock (tests); default: the database's clock. */
  now?: Date;
}

export const DEFAULT_LEASE_NAME = "calibration";

/** `host:pid:random` — unique per process, readable in a "held by" message. */
export function defaultHolder(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
}

function clientOf(db: LeaseDb): Client {
  if ("$client" in db) return db.$client;
  if ("db" in db && "saveRun" in db) return db.db.$client;
  return db as Client;
}

const ISO = "'%Y-%m-%dT%H:%M:%fZ'";

/** SQL for "now" and "now + ttl", with their arguments. */
function times(ttlMs: number, clock: LeaseClock): { now: string; exp: string; nowArgs: string[]; expArgs: string[] } {
  if (clock.now) return { now: "?", exp: "?", nowArgs: [clock.now.toISOString()], expArgs: [new Date(clock.now.getTime() + ttlMs).toISOString()] };
  return { now: `strftime(${ISO}, 'now')`, exp: `strftime(${ISO}, 'now', ?)`, nowArgs: [], expArgs: [`+${(ttlMs / 1000).toFixed(3)} seconds`] };
}

function checkArgs(name: string, holder: string, ttlMs?: number) {
  if (typeof name !== "string" || name === "") throw new RangeError("a lease needs a non-empty name");
  if (typeof holder !== "string" || holder === "") throw new RangeError("a lease needs a non-empty holder");
  if (ttlMs !== undefined && !(Number.isFinite(ttlMs) && ttlMs > 0)) throw new RangeError(`a lease's ttl must be > 0 ms, got ${ttlMs}`);
}

/** A local file under write contention answers SQLITE_BUSY at once: retry a few times. */
async function exec(client: Client, stmt: InStatement): Promise<ResultSet> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await client.execute(stmt);
    } catch (e) {
      const msg = `${(e as { code?: string }).code ?? ""} ${(e as Error).message}`;
      if (attempt >= 40 || !/SQLITE_BUSY|database is locked/i.test(msg)) throw e;
      await new Promise((r) => setTimeout(r, 10 + Math.floor(Math.random() * 40)));
    }
  }
}

/**
 * Takes the lease `name` for `holder` for `ttlMs` if it is free, expired, or already held by
 * `holder` (then it is renewed). Otherwise reports who holds it and until when.
 */
export async function acquireLease(db: LeaseDb, name: string, holder: string, ttlMs: number, clock: LeaseClock = {}): Promise<LeaseAttempt> {
  checkArgs(name, holder, ttlMs);
  const client = clientOf(db);
  for (let attempt = 0; ; attempt++) {
    const t = times(ttlMs, clock);
    const rs = await exec(client, {
      sql:
        `INSERT INTO calibration_lease (name, holder, expires_at) VALUES (?, ?, ${t.exp}) ` +
        `ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at ` +
        `WHERE calibration_lease.expires_at <= ${t.now} OR calibration_lease.holder = excluded.holder ` +
        `RETURNING holder, expires_at`,
      args: [name, holder, ...t.expArgs, ...t.nowArgs],
    });
    const won = rs.rows[0];
    if (won) return { acquired: true, lease: { name, holder: String(won.holder), expiresAt: String(won.expires_at) } };
    const cur = await readLease(client, name);
    if (cur) return { acquired: false, holder: cur.holder, expiresAt: cur.expiresAt };
    // Released between the two statements: try again (bounded).
    if (attempt >= 3) throw new Error(`could not acquire lease '${name}': it keeps changing hands`);
  }
}

/** Extends the lease by `ttlMs` from now if `holder` still holds it; null when it does not (lost). */
export async function renewLease(db: LeaseDb, name: string, holder: string, ttlMs: number, clock: LeaseClock = {}): Promise<Lease | null> {
  checkArgs(name, holder, ttlMs);
  const t = times(ttlMs, clock);
  const rs = await exec(clientOf(db), {
    sql: `UPDATE calibration_lease SET expires_at = ${t.exp} WHERE name = ? AND holder = ? RETURNING expires_at`,
    args: [...t.expArgs, name, holder],
  });
  const row = rs.rows[0];
  return row ? { name, holder, expiresAt: String(row.expires_at) } : null;
}

/** Deletes the lease if `holder` holds it; false when it did not (already released or taken over). */
export async function releaseLease(db: LeaseDb, name: string, holder: string): Promise<boolean> {
  checkArgs(name, holder);
  const rs = await exec(clientOf(db), { sql: "DELETE FROM calibration_lease WHERE name = ? AND holder = ? RETURNING name", args: [name, holder] });
  return rs.rows.length > 0;
}

/** The lease row as stored (possibly expired), or null. */
export async function readLease(db: LeaseDb, name: string): Promise<Lease | null> {
  const rs = await exec(clientOf(db), { sql: "SELECT holder, expires_at FROM calibration_lease WHERE name = ?", args: [name] });
  const row = rs.rows[0];
  return row ? { name, holder: String(row.holder), expiresAt: String(row.expires_at) } : null;
}

export interface LeaseKeeper {
  /** true once a renewal found the lease held by someone else (or gone). */
  readonly lost: boolean;
  /** The last renewal error (network, …); renewals continue after one. */
  readonly lastError: Error | null;
  readonly lease: Lease;
  stop(): void;
}

/**
 * Renews `lease` every `intervalMs` (default a third of the TTL) in the background, without
 * keeping the process alive. A failed renewal (e.g. the database unreachable) is retried at the
 * next tick; a renewal that finds the lease taken over sets `lost` and calls `onLost` once, after
 * which the holder must not act on the lease (e.g. not activate).
 */
export function keepLease(db: LeaseDb, lease: Lease, ttlMs: number, o: { intervalMs?: number; onLost?: (l: Lease) => void; clock?: () => LeaseClock } = {}): LeaseKeeper {
  let lost = false;
  let lastError: Error | null = null;
  let current = lease;
  let busy = false;
  const timer = setInterval(
    () => {
      if (busy || lost) return;
      busy = true;
      renewLease(db, lease.name, lease.holder, ttlMs, o.clock?.() ?? {})
        .then((l) => {
          if (l) {
            current = l;
            lastError = null;
          } else {
            lost = true;
            clearInterval(timer);
            o.onLost?.(current);
          }
        })
        .catch((e: Error) => {
          lastError = e;
        })
        .finally(() => {
          busy = false;
        });
    },
    Math.max(10, o.intervalMs ?? Math.floor(ttlMs / 3)),
  );
  timer.unref?.();
  return {
    get lost() {
      return lost;
    },
    get lastError() {
      return lastError;
    },
    get lease() {
      return current;
    },
    stop() {
      clearInterval(timer);
    },
  };
}
