/**
 * Raw HTTP/1.1 bytes against a real listening server (the Node entry), for what no `Request`
 * object can carry: CR / LF / NUL inside header lines, obs-fold, conflicting framing
 * (Content-Length with Transfer-Encoding, two Content-Lengths), bad chunk sizes, absolute-form
 * targets, missing Host, oversized header blocks, bodies that stop short, half-sent headers,
 * pipelining — plus seeded garbage. Each case opens its own loopback connection and waits at most
 * `timeoutMs` for the server to answer or close.
 */
import { connect } from "node:net";
import { errorShapeProblem } from "./fuzz.ts";
import { Draw } from "./rng.ts";

export interface RawResult {
  /** Every status line seen (pipelined requests give several). */
  statuses: number[];
  /** The whole reply, as latin1 text. */
  text: string;
  /** The server closed the connection (vs. we gave up waiting). */
  closedByServer: boolean;
}

export interface RawCase {
  label: string;
  /** Bytes to write; a function gets the host ("127.0.0.1:PORT"). */
  data: (host: string) => Buffer;
  /** Written after `pauseMs`, then the socket is ended (a slow or truncated client). */
  then?: { pauseMs: number; data?: Buffer; destroy?: boolean };
  /** What must come back: 2xx, a 4xx, nothing (the client left), or anything under 500. */
  expect: "2xx" | "4xx" | "none" | "any";
  /** The number of responses expected (pipelining). */
  responses?: number;
}

export function sendRaw(port: number, c: RawCase, timeoutMs = 2_000): Promise<RawResult> {
  return new Promise((resolve) => {
    const host = `127.0.0.1:${port}`;
    const chunks: Buffer[] = [];
    let closedByServer = false;
    let done = false;
    const socket = connect(port, "127.0.0.1");
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString("latin1");
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
      resolve({ statuses, text, closedByServer });
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on("data", (b) => chunks.push(b));
    socket.on("end", () => {
      closedByServer = true;
      finish();
    });
    socket.on("close", finish);
    socket.on("error", () => finish());
    socket.on("connect", () => {
      socket.write(c.data(host));
      if (c.then) {
        setTimeout(() => {
          if (done) return;
          if (c.then!.data) socket.write(c.then!.data);
          if (c.then!.destroy) {
            // The client vanishes: nothing comes back to it.
            socket.destroy();
            finish();
          } else socket.end();
        }, c.then.pauseMs);
      }
    });
  });
}

const b = (s: string) => Buffer.from(s, "latin1");

/** The fixed cases; `body` is a valid chat request body, `key` a valid tenant key. */
export function rawCases(key: string, body: string): RawCase[] {
  const len = Buffer.byteLength(body);
  const post = (host: string, extra = "", path = "/v1/chat/completions") =>
    `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\n${extra}`;
  const chunk = (x: string) => `${Buffer.byteLength(x).toString(16)}\r\n${x}\r\n`;
  // 1.1 MiB of chunked JSON without a Content-Length: the edge must count and stop at its limit.
  const bigChunks = () => chunk('{"model":"fairspec","user":"') + chunk("x".repeat(64 * 1024)).repeat(18) + chunk('"}') + "0\r\n\r\n";
  return [
    { label: "control: a valid request", data: (h) => b(`${post(h, `Content-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "2xx" },
    { label: "control: chunked body", data: (h) => b(`${post(h, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")}${len.toString(16)}\r\n${body}\r\n0\r\n\r\n`), expect: "2xx" },
    { label: "pipelined: two valid requests", data: (h) => b(`${post(h, `Content-Length: ${len}\r\n\r\n`)}${body}${post(h, `Content-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "2xx", responses: 2 },
    { label: "CR inside a header value", data: (h) => b(`${post(h, `X-A: a\rX-Injected: 1\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    { label: "LF inside a header value (bare LF)", data: (h) => b(`${post(h, `X-A: a\nX-Injected: 1\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "any" },
    { label: "NUL inside a header value", data: (h) => b(`${post(h, `X-A: a\u0000b\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    { label: "CR/LF injected into the task hint", data: (h) => b(`${post(h, `X-Fairspec-Task: en\r\nX-Fairspec-Task: \r\n ja\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    { label: "obs-fold continuation line", data: (h) => b(`${post(h, `X-A: a\r\n  folded\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    { label: "header name with a space", data: (h) => b(`${post(h, `X A: b\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    { label: "Content-Length and Transfer-Encoding (CL.TE smuggling)", data: (h) => b(`${post(h, `Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n`)}0\r\n\r\nGET /admin/runs HTTP/1.1\r\nHost: ${h}\r\n\r\n`), expect: "4xx" },
    { label: "two different Content-Lengths", data: (h) => b(`${post(h, `Content-Length: ${len}\r\nContent-Length: ${len + 5}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    { label: "negative Content-Length", data: (h) => b(`${post(h, "Content-Length: -1\r\nConnection: close\r\n\r\n")}${body}`), expect: "4xx" },
    { label: "Content-Length with a plus sign", data: (h) => b(`${post(h, `Content-Length: +${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    { label: "Transfer-Encoding: xchunked", data: (h) => b(`${post(h, "Transfer-Encoding: xchunked\r\nConnection: close\r\n\r\n")}${body}`), expect: "any" },
    { label: "Transfer-Encoding: chunked, identity", data: (h) => b(`${post(h, "Transfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n")}${body}`), expect: "any" },
    { label: "bad chunk size", data: (h) => b(`${post(h, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")}zz\r\n${body}\r\n0\r\n\r\n`), expect: "any" },
    { label: "chunk longer than announced", data: (h) => b(`${post(h, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")}2\r\n${body}\r\n0\r\n\r\n`), expect: "any" },
    { label: "chunked body over the 1 MiB limit", data: (h) => b(`${post(h, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")}${bigChunks()}`), expect: "4xx" },
    { label: "smuggled request after a short Content-Length", data: (h) => b(`${post(h, "Content-Length: 4\r\n\r\n")}abcdGET /admin/runs HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`), expect: "4xx", responses: 2 },
    { label: "absolute-form target", data: (h) => b(`${post(h, `Content-Length: ${len}\r\nConnection: close\r\n\r\n`, "http://evil.example/v1/chat/completions")}${body}`), expect: "any" },
    { label: "absolute-form target to the admin API", data: (h) => b(`GET http://evil.example/admin/runs HTTP/1.1\r\nHost: ${h}\r\nAuthorization: Bearer ${key}\r\nConnection: close\r\n\r\n`), expect: "4xx" },
    { label: "no Host header", data: () => b(`POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n${body}`), expect: "4xx" },
    { label: "two Host headers", data: (h) => b(`${post(h, `Host: evil.example\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "any" },
    { label: "Host with a path", data: () => b(`POST /v1/chat/completions HTTP/1.1\r\nHost: evil.example/admin\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n${body}`), expect: "any" },
    { label: "two Authorization headers (another tenant's key second)", data: (h) => b(`${post(h, `Authorization: Bearer fs_${"A".repeat(32)}\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "any" },
    { label: "header block over 16 KiB", data: (h) => b(`${post(h, `X-Big: ${"a".repeat(20_000)}\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    { label: "1,000 small headers", data: (h) => b(`${post(h, `${Array.from({ length: 1000 }, (_, i) => `X-${i}: v\r\n`).join("")}Content-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "any" },
    { label: "URL of 100 KB", data: (h) => b(`GET /${"a".repeat(100_000)} HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`), expect: "4xx" },
    { label: "non-UTF-8 bytes in the path", data: (h) => Buffer.concat([b("GET /v1/"), Buffer.from([0xff, 0xfe, 0xc0, 0xaf]), b(` HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`)]), expect: "4xx" },
    { label: "garbage request line", data: () => b("GARBAGE\r\n\r\n"), expect: "4xx" },
    { label: "HTTP/0.9 style", data: () => b("GET /\r\n\r\n"), expect: "any" },
    { label: "unknown HTTP version", data: (h) => b(`GET /healthz HTTP/7.3\r\nHost: ${h}\r\n\r\n`), expect: "any" },
    { label: "lowercase method", data: (h) => b(`post /v1/chat/completions HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`), expect: "any" },
    { label: "CONNECT to the admin API", data: (h) => b(`CONNECT ${h} HTTP/1.1\r\nHost: ${h}\r\n\r\n`), expect: "any" },
    { label: "websocket upgrade", data: (h) => b(`GET /v1/chat/completions HTTP/1.1\r\nHost: ${h}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`), expect: "any" },
    { label: "h2c upgrade", data: (h) => b(`GET /healthz HTTP/1.1\r\nHost: ${h}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n`), expect: "any" },
    { label: "HTTP/2 preface", data: () => b("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), expect: "any" },
    { label: "Expect: 100-continue", data: (h) => b(`${post(h, `Expect: 100-continue\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "2xx" },
    { label: "Expect: something else", data: (h) => b(`${post(h, `Expect: 200-ok\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`)}${body}`), expect: "4xx" },
    // Clients that stop early: nothing can reach them, but the server must not fall over.
    { label: "body shorter than Content-Length, then FIN", data: (h) => b(`${post(h, `Content-Length: ${len + 100}\r\n\r\n`)}${body}`), then: { pauseMs: 100 }, expect: "any" },
    { label: "body shorter than Content-Length, then reset", data: (h) => b(`${post(h, `Content-Length: ${len + 100}\r\n\r\n`)}${body}`), then: { pauseMs: 100, destroy: true }, expect: "none" },
    { label: "half the headers, then reset", data: (h) => b(`POST /v1/chat/completions HTTP/1.1\r\nHost: ${h}\r\nAuthor`), then: { pauseMs: 150, destroy: true }, expect: "none" },
    { label: "half a chunked body, then reset", data: (h) => b(`${post(h, "Transfer-Encoding: chunked\r\n\r\n")}${len.toString(16)}\r\n${body.slice(0, 10)}`), then: { pauseMs: 150, destroy: true }, expect: "none" },
    { label: "stream request, client resets after the headers", data: (h) => b(`${post(h, `Content-Length: ${Buffer.byteLength(body.replace(/^{/, '{"stream":true,'))}\r\n\r\n`)}${body.replace(/^{/, '{"stream":true,')}`), then: { pauseMs: 50, destroy: true }, expect: "any" },
  ];
}

/** Seeded garbage: a valid request with random bytes spliced into its request line, headers or framing. */
export function garbageCases(n: number, seed: number, key: string, body: string): RawCase[] {
  const d = new Draw(seed);
  const out: RawCase[] = [];
  for (let i = 0; i < n; i++) {
    const nBytes = d.range(1, 8);
    const bytes = d.bytes(nBytes);
    const where = d.pick(["request-line", "header-name", "header-value", "framing", "body"]);
    const at = d.int(Buffer.byteLength(body));
    out.push({
      label: `garbage ${i}: ${nBytes} random bytes in the ${where}`,
      data: (h) => {
        const len = Buffer.byteLength(body);
        const parts: Buffer[] = [];
        const g = Buffer.from(bytes);
        if (where === "request-line") parts.push(b("POST /v1/chat"), g, b("/completions HTTP/1.1\r\n"));
        else parts.push(b("POST /v1/chat/completions HTTP/1.1\r\n"));
        parts.push(b(`Host: ${h}\r\nAuthorization: Bearer ${key}\r\n`));
        if (where === "header-name") parts.push(b("X-"), g, b(": v\r\n"));
        if (where === "header-value") parts.push(b("X-Fairspec-Task: e"), g, b("\r\n"));
        if (where === "framing") parts.push(b("Content-Length: "), g, b("\r\n"));
        else parts.push(b(`Content-Length: ${len}\r\n`));
        parts.push(b("Connection: close\r\n\r\n"));
        if (where === "body") {
          parts.push(Buffer.from(body.slice(0, at)), g, Buffer.from(body.slice(at)));
        } else parts.push(Buffer.from(body));
        return Buffer.concat(parts);
      },
      expect: "any",
    });
  }
  return out;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The responses in a raw reply (Content-Length, chunked, or to the end), as far as they are complete. */
export function parseResponses(text: string): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const [statusLine, ...lines] = text.slice(at, end).split("\r\n");
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "");
    if (!m) break;
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(":");
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let p = end + 4;
    let body = "";
    const status = Number(m[1]);
    if (status === 100 || status === 101 || status === 204 || status === 304) {
      // no body
    } else if (headers["content-length"] !== undefined) {
      const n = Number(headers["content-length"]);
      body = text.slice(p, p + n);
      p += n;
    } else if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
      for (;;) {
        const le = text.indexOf("\r\n", p);
        if (le < 0) break;
        const size = parseInt(text.slice(p, le), 16);
        p = le + 2;
        if (!(size > 0)) {
          p += 2;
          break;
        }
        body += text.slice(p, p + size);
        p += size + 2;
      }
    } else {
      body = text.slice(p);
      p = text.length;
    }
    out.push({ status, headers, body });
    at = p;
  }
  return out;
}

/**
 * Sends the cases (a few connections at a time) and checks each reply: no 5xx; 2xx / 4xx / none as
 * the case expects (1xx informational replies aside); the number of responses for pipelined
 * cases; every JSON error body in OpenAI's shape (the HTTP parser's own 400 / 431 carry no body).
 */
export async function runRawCases(port: number, cases: readonly RawCase[], concurrency = 4): Promise<{ cases: number; replies: Record<string, number>; problems: string[] }> {
  const problems: string[] = [];
  const replies: Record<string, number> = {};
  for (let i = 0; i < cases.length; i += concurrency) {
    await Promise.all(
      cases.slice(i, i + concurrency).map(async (c) => {
        const r = await sendRaw(port, c);
        const key = r.statuses.length ? r.statuses.join("+") : r.closedByServer ? "closed" : "none";
        replies[key] = (replies[key] ?? 0) + 1;
        const bad = (p: string) => problems.push(`${c.label}: ${p} — ${r.text.slice(0, 200).replace(/\r\n/g, "⏎")}`);
        const final = r.statuses.filter((s) => s >= 200);
        if (r.statuses.some((s) => s >= 500)) bad("5xx");
        if (c.expect === "2xx" && (final.length === 0 || final.some((s) => s > 299))) bad("expected 2xx");
        if (c.expect === "4xx" && !final.some((s) => s >= 400 && s < 500)) bad("expected a 4xx");
        if (c.expect === "none" && final.length) bad("a client that left got an answer");
        if (c.responses !== undefined && final.length !== c.responses) bad(`expected ${c.responses} responses`);
        for (const res of parseResponses(r.text)) {
          if (res.status >= 400 && (res.headers["content-type"] ?? "").includes("json")) {
            let p: string | null;
            try {
              p = errorShapeProblem(JSON.parse(Buffer.from(res.body, "latin1").toString("utf8")));
            } catch {
              p = "not JSON";
            }
            if (p) bad(`error shape: ${p}`);
          }
        }
      }),
    );
  }
  return { cases: cases.length, replies, problems };
}
