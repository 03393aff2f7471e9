/**
 * Runs generated cases (hostile.ts) against a Hono app in process (`app.request`), checks every
 * response, and counts statuses per category.
 *
 * Per response:
 * - never ≥ 500 (the fixture's origins all work, so a 5xx is the input's doing), unless a
 *   `known` predicate names it as a known bug (counted apart);
 * - the status the case expects (`ok` → 200 with a complete body, `4xx` → a client error, or the
 *   exact status the case determines; a body over the limit → 413);
 * - every error body exactly OpenAI's shape `{"error": {message, type, param, code}}` with a JSON
 *   content type; every 200 a parseable JSON body or a well-formed SSE stream (a valid request's
 *   stream ends with [DONE] and carries no error event).
 * A case the runtime refuses to build (a header with CR / LF / NUL, a forbidden method) is
 * counted as `refused` — no client on that runtime can send it.
 */
import { authHeader, CATEGORIES, VALID_ROLES, type Category, type FuzzCase } from "./hostile.ts";

export interface FuzzKeys {
  own: string;
  other: string;
  third: string;
  revoked: string;
  admin: string;
}

export interface FuzzTarget {
  name: string;
  request: (req: Request) => Response | Promise<Response>;
  keys: FuzzKeys;
  /** The app's body limit (413 beyond). */
  maxBodyBytes: number;
  /** Inference paths (where the body limit applies). */
  inferencePaths: readonly string[];
}

export interface Violation {
  id: number;
  category: Category;
  label: string;
  status: number;
  problem: string;
}

export interface FuzzStats {
  target: string;
  seed: number;
  cases: number;
  sent: number;
  refusedByRuntime: number;
  byStatus: Record<string, number>;
  byCategory: Record<string, Record<string, number>>;
  violations: Violation[];
  knownBugs: Record<string, number>;
  knownBugExamples: Violation[];
  durationMs: number;
}

/** Why a parsed body is not exactly OpenAI's error shape; null when it is. */
export function errorShapeProblem(json: unknown): string | null {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return "not an object";
  const keys = Object.keys(json);
  if (keys.length !== 1 || keys[0] !== "error") return `top-level keys ${JSON.stringify(keys)}`;
  const e = (json as { error: unknown }).error;
  if (typeof e !== "object" || e === null || Array.isArray(e)) return "error is not an object";
  const ek = Object.keys(e).sort();
  if (ek.join(",") !== "code,message,param,type") return `error keys ${JSON.stringify(ek)}`;
  const { message, type, param, code } = e as Record<string, unknown>;
  if (typeof message !== "string" || !message) return "message is not a non-empty string";
  if (typeof type !== "string" || !type) return "type is not a non-empty string";
  if (param !== null && typeof param !== "string") return "param is neither a string nor null";
  if (code !== null && typeof code !== "string") return "code is neither a string nor null";
  return null;
}

/** Problems with an SSE body: events are `data: …` JSON or [DONE]; a complete stream ends with [DONE]. */
export function sseProblem(text: string, complete: boolean): string | null {
  const events = text.split("\n\n").filter((e) => e.trim());
  if (!text.endsWith("\n\n")) return "stream does not end with a blank line";
  for (const [i, ev] of events.entries()) {
    if (!ev.startsWith("data: ")) return `event ${i} is not a data event`;
    const data = ev.slice(6);
    if (data === "[DONE]") {
      if (i !== events.length - 1) return "[DONE] is not last";
      continue;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(data);
    } catch {
      return `event ${i} is not JSON`;
    }
    if (obj && typeof obj === "object" && "error" in obj) {
      if (complete) return `error event: ${data.slice(0, 200)}`;
      const p = errorShapeProblem(obj);
      if (p) return `error event shape: ${p}`;
    }
  }
  if (complete && events.at(-1) !== "data: [DONE]") return "a valid request's stream does not end with [DONE]";
  return null;
}

function buildRequest(c: FuzzCase, t: FuzzTarget): { req: Request; bytes: number } | null {
  try {
    const headers = new Headers();
    const auth = authHeader(c.auth, t.keys, c);
    if (auth !== null) headers.set("authorization", auth);
    for (const [k, v] of c.headers) headers.append(k, v);
    const body = c.body();
    const bytes = body === null ? 0 : typeof body === "string" ? Buffer.byteLength(body) : body.byteLength;
    const path = c.path.startsWith("/") ? c.path : `/${c.path}`;
    const req = new Request(`http://localhost${path}`, { method: c.method, headers, body: body === null ? undefined : (body as BodyInit) });
    return { req, bytes };
  } catch {
    return null;
  }
}

async function checkResponse(c: FuzzCase, t: FuzzTarget, res: Response, bytes: number, method: string): Promise<{ problem: string | null; text: string }> {
  const status = res.status;
  const ctype = res.headers.get("content-type") ?? "";
  const text = method === "HEAD" ? "" : await res.text();
  const problems: string[] = [];
  if (status >= 500) problems.push(`status ${status}`);
  if (c.status !== undefined && status !== c.status) problems.push(`expected ${c.status}`);
  if (c.expect === "ok" && status !== 200) problems.push("a valid request was not answered 200");
  if (c.expect === "4xx" && (status < 400 || status > 499)) problems.push("expected a client error");
  if (c.tooLargeIs413 && bytes > t.maxBodyBytes && VALID_ROLES.has(c.auth) && t.inferencePaths.includes(c.path) && status !== 413) problems.push(`a ${bytes}-byte body was not refused with 413`);
  if (method !== "HEAD") {
    if (status >= 400) {
      if (!ctype.includes("application/json")) problems.push(`error content-type ${JSON.stringify(ctype)}`);
      let json: unknown;
      try {
        json = JSON.parse(text);
        const p = errorShapeProblem(json);
        if (p) problems.push(`error shape: ${p}`);
      } catch {
        problems.push("error body is not JSON");
      }
    } else if (status === 200) {
      if (ctype.includes("text/event-stream")) {
        const p = sseProblem(text, c.expect === "ok");
        if (p) problems.push(p);
      } else if (ctype.includes("json")) {
        try {
          JSON.parse(text);
        } catch {
          problems.push("200 body is not JSON");
        }
      } else if (c.expect === "ok") problems.push(`200 with content-type ${JSON.stringify(ctype)}`);
    }
  }
  return { problem: problems.length ? problems.join("; ") : null, text };
}

export interface RunOptions {
  seed: number;
  concurrency?: number;
  /** Names a response as a known bug (counted apart, not a violation); null otherwise. */
  known?: (c: FuzzCase, status: number, body: string) => string | null;
  /** Stop collecting violation details beyond this many (they are still counted). */
  maxViolations?: number;
}

export async function runFuzz(cases: readonly FuzzCase[], t: FuzzTarget, o: RunOptions): Promise<FuzzStats> {
  const t0 = performance.now();
  const stats: FuzzStats = {
    target: t.name,
    seed: o.seed,
    cases: cases.length,
    sent: 0,
    refusedByRuntime: 0,
    byStatus: {},
    byCategory: Object.fromEntries(CATEGORIES.map((c) => [c, {}])),
    violations: [],
    knownBugs: {},
    knownBugExamples: [],
    durationMs: 0,
  };
  const maxV = o.maxViolations ?? 50;
  const bump = (m: Record<string, number>, k: string) => void (m[k] = (m[k] ?? 0) + 1);
  let violationsSeen = 0;
  // Huge bodies one at a time: memory stays at a few MB whatever the concurrency.
  let heavy: Promise<void> = Promise.resolve();

  const one = async (c: FuzzCase) => {
    const run = async () => {
      const built = buildRequest(c, t);
      if (!built) {
        stats.refusedByRuntime++;
        bump(stats.byCategory[c.category]!, "refused");
        return;
      }
      stats.sent++;
      let res: Response;
      try {
        res = await t.request(built.req);
      } catch (e) {
        violationsSeen++;
        if (stats.violations.length < maxV) stats.violations.push({ id: c.id, category: c.category, label: c.label, status: -1, problem: `the app threw: ${(e as Error).message}` });
        bump(stats.byCategory[c.category]!, "threw");
        return;
      }
      bump(stats.byStatus, String(res.status));
      bump(stats.byCategory[c.category]!, String(res.status));
      const { problem, text } = await checkResponse(c, t, res, built.bytes, built.req.method);
      if (!problem) return;
      const v: Violation = { id: c.id, category: c.category, label: c.label, status: res.status, problem: `${problem} — ${text.slice(0, 300)}` };
      const bug = o.known?.(c, res.status, text) ?? null;
      if (bug) {
        bump(stats.knownBugs, bug);
        if (stats.knownBugExamples.length < 5) stats.knownBugExamples.push(v);
        return;
      }
      violationsSeen++;
      if (stats.violations.length < maxV) stats.violations.push(v);
    };
    if (c.category === "huge-string" || c.category === "oversized-header") {
      const prev = heavy;
      let done!: () => void;
      heavy = new Promise((r) => (done = r));
      await prev;
      try {
        await run();
      } finally {
        done();
      }
    } else await run();
  };

  let next = 0;
  await Promise.all(
    Array.from({ length: o.concurrency ?? 8 }, async () => {
      while (next < cases.length) await one(cases[next++]!);
    }),
  );
  stats.durationMs = Math.round(performance.now() - t0);
  if (violationsSeen > stats.violations.length) stats.violations.push({ id: -1, category: "valid", label: "…", status: 0, problem: `${violationsSeen - stats.violations.length} more violations not listed` });
  return stats;
}

/** A plain-text table: categories × statuses. */
export function statusTable(s: FuzzStats): string {
  const statuses = new Set<string>();
  for (const m of Object.values(s.byCategory)) for (const k of Object.keys(m)) statuses.add(k);
  const cols = [...statuses].sort();
  const rows = Object.entries(s.byCategory).filter(([, m]) => Object.keys(m).length);
  const w = Math.max(...rows.map(([c]) => c.length), 8);
  const head = `${"category".padEnd(w)} ${cols.map((c) => c.padStart(7)).join(" ")}   total`;
  const lines = rows.map(([cat, m]) => `${cat.padEnd(w)} ${cols.map((c) => String(m[c] ?? "").padStart(7)).join(" ")}   ${Object.values(m).reduce((a, b) => a + b, 0)}`);
  const total = `${"all".padEnd(w)} ${cols.map((c) => String(rows.reduce((a, [, m]) => a + (m[c] ?? 0), 0)).padStart(7)).join(" ")}   ${s.cases}`;
  return [`${s.target}: ${s.cases} cases (seed ${s.seed}), ${s.sent} sent, ${s.refusedByRuntime} refused by the runtime, ${s.durationMs} ms`, head, ...lines, total].join("\n");
}
