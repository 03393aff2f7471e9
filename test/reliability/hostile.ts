/**
 * A seeded generator of malformed and hostile HTTP requests for the edge gateway and the origin
 * (same seed → same cases). Each case is a recipe: its body is built only when sent, so a run of
 * 100,000 cases holds at most a few huge bodies at once.
 *
 * Categories (weights in CATEGORY_WEIGHTS):
 *   valid            a well-formed request (the control group: must be 200 through a working origin)
 *   bad-json         not JSON, not an object, JSON with trailing garbage, comments, NaN, random bytes
 *   truncated-json   a valid body cut short at a random byte
 *   wrong-type       one field (top level or nested) set to a value of another type or out of range,
 *                    including raw numbers JSON.stringify cannot produce (1e999, -0, 30-digit integers)
 *   huge-string      a 16 KiB … 2.5 MiB string in one field (over and under the 1 MiB body limit)
 *   deep-nesting     arrays / objects nested 64 … 100,000 deep, in one field or as the whole body
 *   unicode          lone surrogates, NUL, C0 controls, RTL overrides, combining-mark floods, emoji ZWJ
 *                    sequences, U+FFFF, and raw invalid UTF-8 (overlong forms, encoded surrogates,
 *                    > U+10FFFF, stray continuation bytes) in content, model, role, task, stop
 *   header-injection CR / LF / NUL in header values and bad header names (where the runtime lets a
 *                    client build them; otherwise counted as refused by the runtime)
 *   oversized-header 8 KiB … 1 MiB header values, hundreds of headers
 *   unknown-fields   extra fields, including __proto__ / constructor / prototype
 *   method-path      other methods, odd paths (traversal, encoded dots, case, doubled slashes, NUL)
 *   auth             absent, malformed, revoked, unknown, other-tenant, admin-token-as-key, two keys
 *   tenant-route     the tenant policy routes with own / other tenants' ids, and writes
 *   admin            the admin routes with tenant keys, bad tokens, hostile tenant ids and bodies
 *   content-type     odd or lying Content-Type / Content-Encoding (UTF-16 bodies, gzip claims)
 *   content-length   lying or malformed Content-Length values
 */
import { Draw } from "./rng.ts";

export type Target = "edge" | "origin";

export const CATEGORIES = [
  "valid",
  "bad-json",
  "truncated-json",
  "wrong-type",
  "huge-string",
  "deep-nesting",
  "unicode",
  "header-injection",
  "oversized-header",
  "unknown-fields",
  "method-path",
  "auth",
  "tenant-route",
  "admin",
  "content-type",
  "content-length",
] as const;
export type Category = (typeof CATEGORIES)[number];

/** Relative frequency per category (the origin skips the edge-only ones). */
export const CATEGORY_WEIGHTS: Record<Category, number> = {
  valid: 10,
  "bad-json": 8,
  "truncated-json": 6,
  "wrong-type": 16,
  "huge-string": 1.2,
  "deep-nesting": 3,
  unicode: 10,
  "header-injection": 5,
  "oversized-header": 2,
  "unknown-fields": 7,
  "method-path": 7,
  auth: 8,
  "tenant-route": 3,
  admin: 4,
  "content-type": 5,
  "content-length": 4,
};
const EDGE_ONLY: ReadonlySet<Category> = new Set(["auth", "tenant-route", "admin"]);

/**
 * How the caller is identified; the runner substitutes the real keys at send time.
 *   own / other / third   valid keys of three tenants (acme, globex, initech)
 *   lower / padded        a valid key written `bearer KEY` / `Bearer   KEY  ` (accepted)
 */
export type KeyRole =
  | "own"
  | "other"
  | "third"
  | "lower"
  | "padded"
  | "revoked"
  | "none"
  | "unknown"
  | "malformed"
  | "admin"
  | "empty-bearer"
  | "basic"
  | "two-keys"
  | "huge";
export const VALID_ROLES: ReadonlySet<KeyRole> = new Set(["own", "other", "third", "lower", "padded"]);

/** ok: must be 200 (a complete answer); 4xx: must be a client error; any: anything but ≥ 500. */
export type Expect = "ok" | "4xx" | "any";

export interface FuzzCase {
  id: number;
  category: Category;
  /** What the case does, for failure messages. */
  label: string;
  method: string;
  path: string;
  auth: KeyRole;
  /** Header lines added after Authorization (may hold what the runtime refuses to build). */
  headers: [string, string][];
  /** Built when sent. */
  body: () => string | Uint8Array | null;
  stream: boolean;
  expect: Expect;
  /** The exact status, when the case determines it. */
  status?: number;
  /** An over-limit body must be refused with 413 (checked against the byte length sent). */
  tooLargeIs413?: boolean;
  /** role "huge": the Authorization header's length. */
  hugeAuth?: number;
}

export interface GenOptions {
  target: Target;
  /** The `model` a valid request names. */
  model: string;
  /** Tenant ids the keys belong to: [own, other, third]. */
  tenants?: [string, string, string];
}

// ---------------------------------------------------------------------------------------------
// Raw JSON values JSON.stringify cannot write: markers replaced after stringifying.

const RAW_PREFIX = "\u0000RAW:";
const raw = (text: string) => `${RAW_PREFIX}${text}\u0000`;
const RAW_RE = /"\\u0000RAW:(.*?)\\u0000"/g;
export function toJson(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? "" : s.replace(RAW_RE, (_, t: string) => JSON.parse(`"${t}"`) as string);
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

const TEXTS = ["Hello there", "こんにちは、元気ですか", "def f(x):\n    return x * 2", "Привет, как дела?", "مرحبا بالعالم", "1 + 1 =", "Bonjour", "#include <stdio.h>"];
const TASKS = ["en", "ja", "code-py", "de", "zh", "math"];

/** Strings that break naive text handling. */
export const UNICODE_EDGES: readonly (readonly [string, string])[] = [
  ["lone high surrogate", "a\ud800b"],
  ["lone low surrogate", "a\udc00b"],
  ["reversed surrogate pair", "\udc00\ud800"],
  ["trailing high surrogate", "end\ud83d"],
  ["NUL", "a\u0000b"],
  ["C0 controls", "\u0001\u0002\u0007\u0008\u000b\u000c\u001b[31m\u001f"],
  ["RTL override", "user\u202egnp.exe"],
  ["bidi isolates", "\u2066abc\u2069\u2067def\u2069"],
  ["BOM inside", "\ufeffhello\ufeff"],
  ["zero-width", "a\u200b\u200c\u200d\u2060b"],
  ["combining flood", `Z${"\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307".repeat(40)}`],
  ["emoji ZWJ family", "👨‍👩‍👧‍👦 🏳️‍🌈 🧑🏽‍💻"],
  ["regional indicators", "🇯🇵🇺🇸🇩🇪"],
  ["noncharacters", "\ufffe\uffff\u{10ffff}\u{fdd0}"],
  ["line separators", "a\u2028b\u2029c\u0085d"],
  ["homoglyphs", "fаirspеc"], // Cyrillic а and е
  ["astral plane", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 🀄"],
  ["halfwidth / fullwidth", "ｆａｉｒｓｐｅｃ ｶﾀｶﾅ"],
  ["replacement char", "\ufffd\ufffd"],
  ["JSON-looking text", '{"error": {"message": "fake"}}\n\ndata: [DONE]\n\n'],
  ["SSE injection", "x\n\ndata: {\"injected\": true}\n\n"],
  ["HTML / script", "<script>alert(1)</script><img src=x onerror=alert(1)>"],
  ["SQL-looking", "'; DROP TABLE api_keys; --"],
  ["template syntax", "{{ 7*7 }} {% for x in range(10) %}x{% endfor %} ${process.env}"],
];

/** Invalid UTF-8 byte sequences, spliced raw into a JSON string. */
export const BAD_UTF8: readonly (readonly [string, number[]])[] = [
  ["overlong '/' (C0 AF)", [0xc0, 0xaf]],
  ["overlong NUL (C0 80)", [0xc0, 0x80]],
  ["overlong 3-byte (E0 80 AF)", [0xe0, 0x80, 0xaf]],
  ["encoded surrogate (ED A0 80)", [0xed, 0xa0, 0x80]],
  ["above U+10FFFF (F4 90 80 80)", [0xf4, 0x90, 0x80, 0x80]],
  ["5-byte form (F8 88 80 80 80)", [0xf8, 0x88, 0x80, 0x80, 0x80]],
  ["stray continuation (80 BF)", [0x80, 0xbf]],
  ["truncated 3-byte (E3 81)", [0xe3, 0x81]],
  ["FE FF", [0xfe, 0xff]],
  ["Latin-1 é (E9)", [0xe9]],
];

type PathKey = string | number;

function setPath(obj: Record<string, unknown>, path: readonly PathKey[], value: unknown): void {
  let cur: Record<string | number, unknown> = obj;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i]!;
    const nextIsIndex = typeof path[i + 1] === "number";
    if (cur[k] === null || typeof cur[k] !== "object") cur[k] = nextIsIndex ? [] : {};
    cur = cur[k] as Record<string | number, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

function deleteKey(obj: Record<string, unknown>, key: string): void {
  delete obj[key];
}

const CHAT_FIELDS: readonly PathKey[][] = [
  ["model"],
  ["messages"],
  ["messages", 0],
  ["messages", 0, "role"],
  ["messages", 0, "content"],
  ["messages", 0, "content", 0],
  ["messages", 0, "content", 0, "type"],
  ["messages", 0, "content", 0, "text"],
  ["messages", 0, "name"],
  ["messages", 1],
  ["stream"],
  ["stream_options"],
  ["stream_options", "include_usage"],
  ["temperature"],
  ["top_p"],
  ["top_k"],
  ["max_tokens"],
  ["max_completion_tokens"],
  ["seed"],
  ["stop"],
  ["stop", 0],
  ["n"],
  ["fairspec"],
  ["fairspec", "task"],
  ["speculative"],
  ["speculative", "gamma"],
  ["speculative", "drafter"],
  ["speculative", "proposal_temperature"],
  ["logprobs"],
  ["logit_bias"],
  ["tools"],
  ["user"],
  ["presence_penalty"],
  ["frequency_penalty"],
];
const COMPLETION_FIELDS: readonly PathKey[][] = [
  ["model"],
  ["prompt"],
  ["prompt", 0],
  ["prompt", 0, 0],
  ["stream"],
  ["stream_options"],
  ["stream_options", "include_usage"],
  ["temperature"],
  ["top_p"],
  ["max_tokens"],
  ["seed"],
  ["stop"],
  ["echo"],
  ["best_of"],
  ["suffix"],
  ["n"],
  ["fairspec"],
  ["fairspec", "task"],
  ["speculative"],
  ["speculative", "gamma"],
];

const WRONG_VALUES: readonly unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  -0.000001,
  2.0000001,
  17,
  4294967296,
  Number.MAX_SAFE_INTEGER,
  1e308,
  -1e308,
  "",
  "x",
  "1",
  "true",
  "null",
  "fairspec",
  " ",
  [],
  [null],
  [1, "a", null],
  [[]],
  {},
  { a: 1 },
  { role: "user" },
  { type: "image_url", image_url: { url: "http://127.0.0.1/x.png" } },
  [{ type: "text" }],
  [{ type: "text", text: 5 }],
  [{ role: "system" }],
  raw("1e999"),
  raw("-1e999"),
  raw("-0"),
  raw("1E-400"),
  raw("123456789012345678901234567890"),
  raw("0.1e1"),
];

type Kind = "chat" | "completion";

interface Base {
  kind: Kind;
  path: string;
  body: Record<string, unknown>;
  stream: boolean;
}

function baseRequest(d: Draw, o: GenOptions, kind: Kind = d.chance(0.7) ? "chat" : "completion"): Base {
  const text = d.pick(TEXTS);
  const stream = d.chance(0.3);
  const body: Record<string, unknown> = { model: o.model };
  if (kind === "chat") {
    const messages: Record<string, unknown>[] = [];
    if (d.chance(0.2)) messages.push({ role: "system", content: "You are terse." });
    if (d.chance(0.15)) messages.push({ role: "user", content: "Hi" }, { role: "assistant", content: "Hello." });
    messages.push({ role: "user", content: d.chance(0.2) ? [{ type: "text", text }] : text });
    body.messages = messages;
  } else {
    body.prompt = d.weighted<unknown>([
      [6, text],
      [1, [text]],
      [1, [72, 101, 108, 108, 111]],
    ]);
  }
  if (stream) {
    body.stream = true;
    if (d.chance(0.5)) body.stream_options = { include_usage: true };
  }
  if (d.chance(0.6)) body.temperature = d.pick([0, 0.3, 0.7, 1, 1.3, 2]);
  if (o.target === "edge") {
    if (d.chance(0.15)) body.fairspec = { task: d.pick(TASKS) };
    if (d.chance(0.3)) body.max_tokens = d.range(1, 64);
  } else {
    // The origin really generates: keep it to a few tokens.
    body.max_tokens = d.range(1, 3);
    body.seed = d.int(1000);
    if (d.chance(0.2)) body.top_p = d.pick([0.5, 0.9, 1]);
    if (d.chance(0.2)) body.top_k = d.pick([-1, 0, 1, 5, 50]);
    if (d.chance(0.2)) body.stop = d.pick(["\n", ["x", "."]]);
    if (d.chance(0.3)) {
      const g = d.range(0, 6);
      body.speculative = g === 0 ? { gamma: 0, drafter: null } : { gamma: g, drafter: d.pick(["base", "balanced"]), proposal_temperature: d.pick([null, 0, 0.7, 1, 2]) };
    }
  }
  return { kind, path: kind === "chat" ? "/v1/chat/completions" : "/v1/completions", body, stream };
}

/** The origin generates for real: any valid-looking token budget is kept to a few tokens. */
function clampTokens(o: GenOptions, body: Record<string, unknown>): void {
  if (o.target !== "origin") return;
  for (const f of ["max_tokens", "max_completion_tokens"]) {
    const v = body[f];
    if (v === undefined || v === null) {
      if (f === "max_tokens" && body.max_completion_tokens == null) body[f] = 2;
    } else if (typeof v === "number" && Number.isInteger(v) && v > 3 && v < 300) body[f] = 3;
  }
}

function deep(style: number, depth: number): string {
  if (style === 0) return "[".repeat(depth) + "]".repeat(depth);
  if (style === 1) return '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
  return '[{"a":'.repeat(depth >> 1) + "0" + "}]".repeat(depth >> 1);
}

function hugeString(d: Draw, bytes: number): string {
  const unit = d.pick(["x", "é", "日", "🙂", "\\", '"', "\u0000"]);
  const unitBytes = new TextEncoder().encode(JSON.stringify(unit).slice(1, -1)).length;
  return unit.repeat(Math.max(1, Math.floor(bytes / unitBytes)));
}

function spliceBytes(json: string, marker: string, bytes: number[]): Uint8Array {
  const enc = new TextEncoder();
  const at = json.indexOf(marker);
  const before = enc.encode(json.slice(0, at));
  const after = enc.encode(json.slice(at + marker.length));
  const out = new Uint8Array(before.length + bytes.length + after.length);
  out.set(before, 0);
  out.set(bytes, before.length);
  out.set(after, before.length + bytes.length);
  return out;
}

// ---------------------------------------------------------------------------------------------

export function generateCases(n: number, seed: number, o: GenOptions): FuzzCase[] {
  const d = new Draw(seed);
  const cats = CATEGORIES.filter((c) => o.target === "edge" || !EDGE_ONLY.has(c));
  const weights = cats.map((c) => [CATEGORY_WEIGHTS[c], c] as const);
  const tenants = o.tenants ?? ["acme", "globex", "initech"];
  const out: FuzzCase[] = [];
  for (let id = 0; id < n; id++) {
    const category = d.weighted(weights);
    out.push(makeCase(d, o, id, category, tenants));
  }
  return out;
}

function makeCase(d: Draw, o: GenOptions, id: number, category: Category, tenants: [string, string, string]): FuzzCase {
  const base = baseRequest(d, o);
  const ok = (label: string, extra: Partial<FuzzCase> = {}): FuzzCase => {
    clampTokens(o, base.body);
    const text = toJson(base.body);
    return { id, category, label, method: "POST", path: base.path, auth: "own", headers: [["content-type", "application/json"]], body: () => text, stream: base.stream, expect: "any", ...extra };
  };

  switch (category) {
    case "valid": {
      const auth = o.target === "edge" ? d.weighted<KeyRole>([[6, "own"], [2, "other"], [2, "third"], [1, "lower"], [1, "padded"]]) : "own";
      const headers: [string, string][] = [["content-type", "application/json"]];
      if (o.target === "edge" && d.chance(0.2)) headers.push(["x-fairspec-task", d.pick(TASKS)]);
      const c = ok(`valid ${base.kind}${base.stream ? " stream" : ""}`, { auth, headers, expect: "ok" });
      return c;
    }

    case "bad-json": {
      const valid = toJson(base.body);
      const items: [string, () => string | Uint8Array, Expect][] = [
        ["empty body", () => "", "4xx"],
        ["whitespace", () => " \n\t ", "4xx"],
        ["lone brace", () => "{", "4xx"],
        ["closing brace", () => "}", "4xx"],
        ["null", () => "null", "4xx"],
        ["true", () => "true", "4xx"],
        ["number", () => "42", "4xx"],
        ["string", () => '"hello"', "4xx"],
        ["array", () => "[]", "4xx"],
        ["array of body", () => `[${valid}]`, "4xx"],
        ["single quotes", () => valid.replace(/"/g, "'"), "4xx"],
        ["unquoted keys", () => valid.replace(/"([a-z_]+)":/g, "$1:"), "4xx"],
        ["trailing comma", () => valid.replace(/}$/, ",}"), "4xx"],
        ["trailing garbage", () => `${valid}x`, "4xx"],
        ["two objects", () => `${valid}${valid}`, "4xx"],
        ["comment", () => `/* hi */${valid}`, "4xx"],
        ["NaN value", () => valid.replace(/^{/, '{"temperature": NaN, '), "4xx"],
        ["Infinity value", () => valid.replace(/^{/, '{"temperature": Infinity, '), "4xx"],
        ["hex number", () => valid.replace(/^{/, '{"max_tokens": 0x10, '), "4xx"],
        ["bad escape", () => valid.replace(/^{/, '{"user": "\\x41", '), "4xx"],
        ["unterminated string", () => '{"model": "fairspec', "4xx"],
        ["raw control char in string", () => valid.replace(/^{/, '{"user": "a\u0001b", '), "4xx"],
        ["random bytes", () => d.bytes(d.range(1, 300)), "4xx"],
        ["random ASCII", () => Array.from({ length: d.range(1, 200) }, () => String.fromCharCode(d.range(32, 126))).join(""), "any"],
        ["BOM then body", () => `\ufeff${valid}`, "any"],
        ["duplicate keys", () => valid.replace(/^{/, '{"model": "nope", '), "any"],
        ["UTF-16LE body", () => new Uint8Array(Buffer.from(valid, "utf16le")), "4xx"],
        ["gzip magic", () => new Uint8Array([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, ...d.bytes(40)]), "4xx"],
      ];
      const [label, body, expect] = d.pick(items);
      return { ...ok(`bad-json: ${label}`), body, expect };
    }

    case "truncated-json": {
      clampTokens(o, base.body);
      const text = toJson(base.body);
      const cut = d.int(text.length);
      return { ...ok(`truncated at ${cut}/${text.length}`), body: () => text.slice(0, cut), expect: "4xx" };
    }

    case "wrong-type": {
      const fields = base.kind === "chat" ? CHAT_FIELDS : COMPLETION_FIELDS;
      const path = d.pick(fields);
      const value = d.pick(WRONG_VALUES);
      if (d.chance(0.1) && path.length === 1) deleteKey(base.body, String(path[0]));
      else setPath(base.body, path, value);
      return ok(`wrong-type: ${path.join(".")} = ${toJson(value).slice(0, 40)}`);
    }

    case "huge-string": {
      const size = d.pick([16 << 10, 256 << 10, 900 << 10, (1 << 20) + 4096, 5 << 19]);
      const where = d.pick<PathKey[]>(
        base.kind === "chat"
          ? [["messages", base.body.messages ? (base.body.messages as unknown[]).length - 1 : 0, "content"], ["model"], ["messages", 0, "role"], ["user"], ["stop"], ["fairspec", "task"], ["x_unknown"]]
          : [["prompt"], ["model"], ["user"], ["x_unknown"]],
      );
      const marker = "\u0001HUGE\u0001";
      setPath(base.body, where, marker);
      clampTokens(o, base.body);
      const template = toJson(base.body);
      const unitSeed = d.int(1 << 30);
      return {
        ...ok(`huge-string: ${size} bytes in ${where.join(".")}`),
        body: () => template.replace(JSON.stringify(marker).slice(1, -1), () => JSON.stringify(hugeString(new Draw(unitSeed), size)).slice(1, -1)),
        tooLargeIs413: true,
      };
    }

    case "deep-nesting": {
      const depth = d.pick(o.target === "edge" ? [64, 512, 2_000, 5_000, 20_000, 100_000] : [64, 512, 2_000, 20_000]);
      const where = d.pick<PathKey[] | null>(
        base.kind === "chat"
          ? [["x_unknown"], ["messages", 0, "content"], ["messages"], ["messages", 0, "x_extra"], ["stream_options"], ["stream_options", "x_extra"], ["fairspec"], ["speculative"], ["metadata"], null]
          : [["prompt"], ["x_unknown"], ["stream_options", "x_extra"], null],
      );
      const style = d.int(3);
      // Built when sent: a 100,000-deep value is up to 600 KB.
      if (where === null) return { ...ok(`deep-nesting: whole body ${depth}`), body: () => deep(style, depth) };
      const marker = "\u0001DEEP\u0001";
      setPath(base.body, where, marker);
      clampTokens(o, base.body);
      const template = toJson(base.body);
      return { ...ok(`deep-nesting: ${depth} in ${where.join(".")}`), body: () => template.replace(`"${JSON.stringify(marker).slice(1, -1)}"`, () => deep(style, depth)) };
    }

    case "unicode": {
      if (d.chance(0.3)) {
        const [name, bytes] = d.pick(BAD_UTF8);
        const marker = "\u0001BYTES\u0001";
        const where: PathKey[] = base.kind === "chat" ? ["messages", (base.body.messages as unknown[]).length - 1, "content"] : ["prompt"];
        setPath(base.body, where, `before ${marker} after`);
        clampTokens(o, base.body);
        const json = toJson(base.body);
        const esc = JSON.stringify(marker).slice(1, -1);
        return {
          ...ok(`invalid UTF-8 ${name} in ${where.join(".")}`),
          body: () => spliceBytes(json, esc, bytes),
          // Decoders replace them with U+FFFD: still a valid request.
          expect: o.target === "edge" ? "ok" : "any",
        };
      }
      const [name, s] = d.pick(UNICODE_EDGES);
      const where = d.weighted<PathKey[]>([
        [5, base.kind === "chat" ? ["messages", (base.body.messages as unknown[]).length - 1, "content"] : ["prompt"]],
        [1, ["model"]],
        [1, base.kind === "chat" ? ["messages", 0, "role"] : ["echo"]],
        [1, ["fairspec", "task"]],
        [1, ["stop"]],
        [1, ["user"]],
        [1, [s]], // as a key
      ]);
      const inContent = where[0] === "messages" ? where[2] === "content" : where[0] === "prompt";
      if (where.length === 1 && where[0] === s) base.body[s] = "value";
      else setPath(base.body, where, s);
      const c = ok(`unicode ${name} in ${where.length === 1 && where[0] === s ? "a key" : where.join(".")}`);
      if (inContent && o.target === "edge") c.expect = "ok";
      if (d.chance(0.2) && o.target === "edge") {
        // The same string as a task hint header (only Latin-1 can be a header value at all).
        c.headers.push(["x-fairspec-task", s]);
        c.expect = "any";
        c.label += " + as x-fairspec-task header";
      }
      return c;
    }

    case "header-injection": {
      const name = d.pick(["authorization", "x-fairspec-task", "content-type", "x-forwarded-for", "x-custom", "cookie", "host"]);
      const value = d.pick([
        "en\r\nX-Injected: 1",
        "en\nX-Injected: 1",
        "en\rX-Injected: 1",
        "en\u0000",
        "en\r\n\r\nGET /admin/runs HTTP/1.1\r\nHost: x",
        "\r\n",
        "en\u0085",
        "en\u2028x",
        "en\u00ff",
        "en\t",
        " en ",
        "en, ja",
        "Bearer fs_x\r\nAuthorization: Bearer y",
      ]);
      const badName = d.chance(0.15) ? d.pick(["x y", "x:y", "", "x\r\ny", "ü", "(x)"]) : null;
      const c = ok(`header ${badName ?? name}: ${JSON.stringify(value)}`);
      if (name === "authorization") c.auth = "none";
      c.headers.push([badName ?? name, name === "authorization" && !badName ? `Bearer ${value}` : value]);
      return c;
    }

    case "oversized-header": {
      const c = ok("");
      const kind = d.int(4);
      if (kind === 0) {
        const n = d.pick([8 << 10, 64 << 10, 1 << 20]);
        c.auth = "huge";
        c.label = `authorization ${n} bytes`;
        c.headers.push(["x-fairspec-pad", "a".repeat(16)]);
        c.hugeAuth = n;
      } else if (kind === 1) {
        const n = d.pick([8 << 10, 64 << 10, 512 << 10]);
        c.label = `x-fairspec-task ${n} bytes`;
        c.headers.push(["x-fairspec-task", "e".repeat(n)]);
      } else if (kind === 2) {
        const n = d.pick([100, 500, 2000]);
        c.label = `${n} headers`;
        for (let i = 0; i < n; i++) c.headers.push([`x-h-${i}`, "v".repeat(32)]);
      } else {
        c.label = "content-type 64 KiB";
        c.headers[0] = ["content-type", `application/json; ${"p=1; ".repeat(10_000)}`];
      }
      return c;
    }

    case "unknown-fields": {
      const n = d.range(1, 40);
      const keys = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "then", "x", "metadata", "response_format", "tool_choice", "parallel_tool_calls", "store", "service_tier", "", " ", "a.b", "a[0]", "$where"];
      let label = "unknown fields:";
      for (let i = 0; i < n; i++) {
        const k = d.chance(0.5) ? d.pick(keys) : `x_${d.int(1e6)}`;
        const v = d.pick<unknown>([1, "s", null, { polluted: true }, [1, 2], { __proto__: { polluted: true } }, { constructor: { prototype: { polluted: true } } }]);
        base.body[k] = v;
        if (i < 3) label += ` ${k}`;
      }
      if (base.kind === "chat" && d.chance(0.3)) ((base.body.messages as Record<string, unknown>[])[0]!).tool_calls = [{ id: "x", type: "function" }];
      if (d.chance(0.2)) base.body.fairspec = { task: "en", evil: true };
      if (d.chance(0.2)) base.body.stream_options = { include_usage: d.chance(0.5), continuous_usage_stats: true };
      // __proto__ as an own JSON key (an object literal would set the prototype instead).
      const c = ok(label);
      const text = c.body() as string;
      c.body = () => text.replace(/^{/, '{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}, ');
      return c;
    }

    case "method-path": {
      const method = d.pick(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "POST", "POST", "PROPFIND", "TRACE", "CONNECT", "post", "G ET"]);
      const path = d.pick([
        base.path,
        `${base.path}/`,
        `/${base.path}`,
        `${base.path}?stream=true&model=x`,
        base.path.toUpperCase(),
        `${base.path}%00`,
        `${base.path};x=1`,
        "/v1/../admin/runs",
        "/v1/%2e%2e/admin/runs",
        "/v1/%252e%252e/admin/runs",
        "/admin/tenants/..%2f..%2fetc%2fpasswd/policy",
        `/admin/tenants/${encodeURIComponent("' OR '1'='1")}/policy`,
        `/v1/fairspec/tenants/${encodeURIComponent(tenants[1])}/policy`,
        "/v1/fairspec/tenants/%00/policy",
        "/v1/fairspec/policy",
        "/healthz",
        "/healthz/../admin/runs",
        "/v1/models",
        "/v1/models/fairspec",
        "/v1/embeddings",
        "/metrics",
        "/",
        "",
        `/${"a".repeat(d.pick([100, 10_000, 100_000]))}`,
        `/v1/ch${encodeURIComponent("\u0430")}t/completions`,
        "/v1/chat/completions#frag",
        "/v1//chat//completions",
        "/admin/runs/active",
        "/admin/runs",
        "/admin/tenants/acme/policy",
      ]);
      const c = ok(`${method} ${path.slice(0, 60)}`);
      c.method = method;
      c.path = path;
      c.auth = d.weighted<KeyRole>([[4, "own"], [1, "none"], [1, "admin"], [1, "other"]]);
      if (method === "GET" || method === "HEAD") c.body = () => null;
      return c;
    }

    case "auth": {
      const auth = d.pick<KeyRole>(["own", "other", "third", "lower", "padded", "revoked", "none", "unknown", "malformed", "admin", "empty-bearer", "basic", "two-keys", "huge"]);
      const c = ok(`auth ${auth}`);
      c.auth = auth;
      if (VALID_ROLES.has(auth)) c.expect = "ok";
      else {
        c.expect = "4xx";
        c.status = 401;
      }
      if (d.chance(0.2)) {
        c.method = "GET";
        c.path = "/v1/models";
        c.body = () => null;
        c.stream = false;
        c.label += " GET /v1/models";
      }
      return c;
    }

    case "tenant-route": {
      const auth = d.weighted<KeyRole>([[3, "own"], [1, "other"], [1, "revoked"], [1, "none"], [1, "admin"]]);
      const targetTenant = d.weighted<string>([
        [3, tenants[0]],
        [2, tenants[1]],
        [1, "no-such-tenant"],
        [1, encodeURIComponent("acme' OR 1=1 --")],
        [1, encodeURIComponent(tenants[0].toUpperCase())],
        [1, `${tenants[0]}%00`],
        [1, encodeURIComponent("../admin")],
      ]);
      const method = d.weighted([
        [4, "GET"],
        [1, "PUT"],
        [1, "POST"],
        [1, "DELETE"],
        [1, "PATCH"],
      ] as const);
      const path = d.chance(0.3) ? "/v1/fairspec/policy" : `/v1/fairspec/tenants/${targetTenant}/policy`;
      const c = ok(`${method} ${path} as ${auth}`);
      c.method = method;
      c.path = path;
      c.auth = auth;
      c.stream = false;
      c.body = method === "GET" ? () => null : () => toJson(d.pick([{ kind: "throughput" }, { policy: { kind: "maxmin" } }, { kind: "floor", ratio: 2 }]));
      // Tenant keys never write a policy; never read another tenant's.
      const owner = auth === "own" ? tenants[0] : auth === "other" ? tenants[1] : null;
      if (auth === "none" || auth === "revoked" || auth === "admin") c.status = 401;
      else if (method !== "GET") c.status = 403;
      else if (path === "/v1/fairspec/policy" || targetTenant === owner) c.status = 200;
      else c.status = 403;
      c.expect = c.status === 200 ? "ok" : "4xx";
      return c;
    }

    case "admin": {
      const auth = d.weighted<KeyRole>([[3, "admin"], [2, "own"], [1, "none"], [1, "malformed"], [1, "empty-bearer"], [1, "unknown"]]);
      const id = d.pick([tenants[2], "no-such-tenant", encodeURIComponent("' OR '1'='1"), "%00", encodeURIComponent("a".repeat(5000)), encodeURIComponent("日本"), "..%2f..%2f"]);
      const route = d.pick(["GET /admin/runs", "GET /admin/runs/active", `GET /admin/tenants/${id}/policy`, `PUT /admin/tenants/${id}/policy`, `DELETE /admin/tenants/${id}/policy`, "POST /admin/runs"]);
      const [method, path] = route.split(" ") as [string, string];
      const policyBody = d.pick<() => string>([
        () => toJson({ kind: "maxmin" }),
        () => toJson({ policy: { kind: "floor", ratio: 0.7 } }),
        () => toJson({ kind: "floor", ratio: 2 }),
        () => toJson({ kind: "alpha-fair", alpha: raw("1e999") }),
        () => toJson({ kind: "alpha-fair" }),
        () => toJson({ kind: "nope" }),
        () => toJson({ kind: "maxmin", extra: 1 }),
        () => toJson({ policy: null }),
        () => toJson(null),
        () => "{",
        () => `{"kind": ${"[".repeat(5000)}${"]".repeat(5000)}}`,
        () => toJson({ kind: "maxmin", pad: "x".repeat(70 << 10) }),
        () => toJson({ __proto__: { kind: "maxmin" } }),
      ]);
      const c = ok(`admin ${route.slice(0, 60)} as ${auth}`);
      c.method = method;
      c.path = path;
      c.auth = auth;
      c.stream = false;
      c.body = method === "GET" ? () => null : policyBody;
      // Existing routes authenticate first: a tenant key is 403, anything else but the token 401.
      if (method !== "DELETE" && route !== "POST /admin/runs") {
        if (auth === "own") c.status = 403;
        else if (auth !== "admin") c.status = 401;
      }
      c.expect = c.status ? "4xx" : "any";
      // The admin writes only the third tenant's policy (or none), so other cases' routing holds.
      return c;
    }

    case "content-type": {
      const c = ok("");
      const ct = d.pick(["", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16", "application/xml", "*/*", "application/json\u00ff", "APPLICATION/JSON", "application/json; charset=latin1", "text/event-stream"]);
      c.label = `content-type ${JSON.stringify(ct)}`;
      c.headers = ct ? [["content-type", ct]] : [];
      if (d.chance(0.3)) {
        const enc = d.pick(["gzip", "br", "deflate", "identity", "x-unknown"]);
        c.headers.push(["content-encoding", enc]);
        c.label += ` + content-encoding ${enc}`;
      }
      if (ct.includes("utf-16") && d.chance(0.5)) {
        const text = c.body() as string;
        c.body = () => new Uint8Array(Buffer.from(text, "utf16le"));
        c.label += " (UTF-16 body)";
      } else if (ct.includes("urlencoded") && d.chance(0.5)) {
        c.body = () => "model=fairspec&messages=hello";
        c.label += " (form body)";
      }
      return c;
    }

    case "content-length": {
      const c = ok("");
      const v = d.pick(["-1", "abc", "0", "1", "99999999999", "1e3", " 12 ", "12, 12", "0x10", "", "3.5", "18446744073709551617"]);
      c.label = `content-length ${JSON.stringify(v)}`;
      c.headers.push(["content-length", v]);
      return c;
    }
  }
}

/** The Authorization header value for a role (null: none sent). */
export function authHeader(role: KeyRole, keys: { own: string; other: string; third: string; revoked: string; admin: string }, c: FuzzCase): string | null {
  const d = new Draw(c.id * 7919 + 1);
  switch (role) {
    case "own":
      return `Bearer ${keys.own}`;
    case "other":
      return `Bearer ${keys.other}`;
    case "third":
      return `Bearer ${keys.third}`;
    case "lower":
      return `bearer ${keys.own}`;
    case "padded":
      return `Bearer \t ${keys.own}\t `;
    case "revoked":
      return `Bearer ${keys.revoked}`;
    case "none":
      return null;
    case "unknown": {
      const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
      return `Bearer fs_${Array.from({ length: 32 }, () => d.pick([...chars])).join("")}`;
    }
    case "malformed":
      return d.pick([
        "Bearer fs_short",
        "Bearer sk-proj-abcdef",
        `Bearer ${keys.own.slice(0, -1)}`,
        `Bearer ${keys.own}x`,
        `Bearer ${keys.own.toUpperCase()}`,
        `Bearer ${keys.own.slice(3)}`,
        `Token ${keys.own}`,
        keys.own,
        `Bearer "${keys.own}"`,
        `Bearer ${keys.own};`,
        `Bearer fs_${"%".repeat(32)}`,
      ]);
    case "admin":
      return `Bearer ${keys.admin}`;
    case "empty-bearer":
      return d.pick(["Bearer", "Bearer ", "Bearer\t", "", "bearer  "]);
    case "basic":
      return `Basic ${Buffer.from(`${keys.own}:`).toString("base64")}`;
    case "two-keys":
      return `Bearer ${keys.own}, Bearer ${keys.other}`;
    case "huge":
      return `Bearer ${"A".repeat(c.hugeAuth ?? 65_536)}`;
  }
}
