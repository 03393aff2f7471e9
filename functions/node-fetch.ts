/**
 * A small `fetch` for the Node entry, over node:http(s) with keep-alive agents. Node's built-in
 * fetch (undici) costs ~0.5 ms more per request than node:http on this kind of machine, and offers
 * no connect timeout through the standard API; this one has both right. Only what the gateway
 * uses: string / bytes bodies, an AbortSignal (before and after the headers), a streamed response
 * body (a web ReadableStream whose cancel destroys the socket). No redirects, no decompression
 * (it asks for `identity`).
 *
 * The response is a light object with Response's prototype (status, headers, body, text(), …):
 * its web stream is only built when `body` is read. A non-stream answer that app.ts reads whole
 * goes through `NATIVE_BODY` (functions/stream.ts) straight from the node:http response, with the
 * same bounds (size, idle gap) and errors, and no web stream at all.
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { NATIVE_BODY, type NativeBody } from "./stream.ts";

export class ConnectTimeoutError extends Error {
  override name = "ConnectTimeoutError";
  readonly code = "ETIMEDOUT_CONNECT";
}

export interface NodeFetchOptions {
  connectTimeoutMs: number;
  /** Sockets per origin (default 256). */
  maxSockets?: number;
}

/**
 * A response body as a web stream: the Node stream's chunks as they come, paused while the web
 * side is full (backpressure); cancelling destroys the response (and its socket). Lighter than
 * `Readable.toWeb` for the one-or-few-chunk bodies a gateway relays.
 */
function webBody(r: IncomingMessage): ReadableStream<Uint8Array> {
  // Set once the stream is closed, errored or cancelled: chunks still in flight are dropped.
  let over = false;
  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        r.on("data", (chunk: Buffer) => {
          if (over) return;
          c.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((c.desiredSize ?? 0) <= 0) r.pause();
        });
        r.once("end", () => {
          if (over) return;
          over = true;
          c.close();
        });
        r.once("error", (e) => {
          if (over) return;
          over = true;
          c.error(e);
        });
        // A response cut before its end (connection reset) may close without an error event.
        r.once("close", () => {
          if (over || r.complete) return;
          over = true;
          c.error(new Error("the connection closed before the response ended"));
        });
      },
      pull() {
        r.resume();
      },
      cancel(reason) {
        over = true;
        r.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: 1 },
  );
}

/**
 * Aborting a request (and its response once there is one) when its signal fires. A listener
 * object, not a closure: bundlers that keep function names (tsx, which runs the Node entry; and
 * wrangler) add an `Object.defineProperty` to every named closure as it is created, here per
 * request.
 */
class ForwardAbort {
  res: IncomingMessage | null = null;
  constructor(
    readonly signal: AbortSignal,
    readonly req: ClientRequest,
  ) {}
  handleEvent(): void {
    const reason = this.signal.reason;
    const e = reason instanceof Error ? reason : new Error(String(reason));
    this.req.destroy(e);
    this.res?.destroy(e);
  }
}

class WholeBody {
  readonly parts: Buffer[] = [];
  total = 0;
  settled = false;
  timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly r: IncomingMessage,
    readonly max: number,
    readonly resolve: (b: Uint8Array) => void,
    readonly reject: (e: Error) => void,
  ) {}

  data(chunk: Buffer): void {
    if (this.settled) return;
    this.total += chunk.length;
    if (this.total > this.max) return this.fail(new Error(`the response body exceeds ${this.max} bytes`));
    this.parts.push(chunk);
    this.timer?.refresh();
  }

  end(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    this.resolve(this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.total));
  }

  fail(e: Error): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    this.r.destroy(e);
    this.reject(e);
  }
}

/**
 * The whole body of a node:http response: at most `max` bytes, no gap over `idleMs` between chunks
 * (0: no limit); rejects (and destroys the response) past either, on an error, or when the
 * connection closes before the response ended.
 */
function readNative(r: IncomingMessage, max: number, idleMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    // State in an object, handlers as anonymous arguments (no named closure per response: see
    // ForwardAbort); they stay attached, and do nothing once settled.
    const w = new WholeBody(r, max, resolve, reject);
    if (idleMs > 0) w.timer = setTimeout(() => w.fail(new Error(`the origin's response body took over ${idleMs} ms`)), idleMs);
    r.on("data", (chunk: Buffer) => w.data(chunk));
    r.once("end", () => w.end());
    r.once("error", (e) => w.fail(e));
    // A response cut before its end (connection reset) may close without an error event.
    r.once("close", () => {
      if (!r.complete) w.fail(new Error("the connection closed before the response ended"));
    });
  });
}

const NativeResponse = globalThis.Response;

/**
 * What this fetch resolves to: Response's fields over the node:http response, the web stream
 * built only when `body` is read. Anything else Response has (clone, blob, formData) goes
 * through a real Response built over `body`.
 */
class NodeResponse implements NativeBody {
  // Private fields and getters only: Response.prototype (below) has accessors of these names.
  readonly #r: IncomingMessage | null;
  readonly #status: number;
  readonly #statusText: string;
  readonly #headers: Headers;
  readonly #url: string;
  #stream: ReadableStream<Uint8Array> | null | undefined = undefined;
  #used = false;

  constructor(r: IncomingMessage | null, status: number, statusText: string, headers: Headers, url: string) {
    this.#r = r;
    this.#status = status;
    this.#statusText = statusText;
    this.#headers = headers;
    this.#url = url;
    if (!r) this.#stream = null;
  }

  get status(): number {
    return this.#status;
  }

  get statusText(): string {
    return this.#statusText;
  }

  get headers(): Headers {
    return this.#headers;
  }

  get url(): string {
    return this.#url;
  }

  get type(): ResponseType {
    return "basic";
  }

  get redirected(): boolean {
    return false;
  }

  get ok(): boolean {
    return this.#status >= 200 && this.#status < 300;
  }

  get hasBody(): boolean {
    return this.#r !== null;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#stream === undefined) {
      if (this.#used) {
        // Read natively already: an empty, used-up stream (as a consumed Response's).
        this.#stream = new ReadableStream<Uint8Array>({ start: (c) => c.close() });
      } else this.#stream = webBody(this.#r!);
    }
    return this.#stream;
  }

  get bodyUsed(): boolean {
    return this.#used || (this.#stream != null && this.#stream.locked);
  }

  /** This response's native whole-body read while its body is untouched (app.ts's fast path). */
  get [NATIVE_BODY](): NativeBody | undefined {
    return !this.#used && (this.#r === null || this.#stream === undefined) ? this : undefined;
  }

  readWhole(max: number, idleMs: number): Promise<Uint8Array> {
    if (this.#used || (this.#r !== null && this.#stream !== undefined)) return Promise.reject(new TypeError("Body is unusable: Body has already been read"));
    this.#used = true;
    if (!this.#r) return Promise.resolve(new Uint8Array(0));
    return readNative(this.#r, max, idleMs);
  }

  async bytes(): Promise<Uint8Array> {
    if (this.#stream !== undefined) return new Uint8Array(await this.#native().arrayBuffer());
    return this.readWhole(Number.MAX_SAFE_INTEGER, 0);
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const b = await this.bytes();
    // A node Buffer may be a view of a shared pool: always a copy of its own bytes.
    const copy = new Uint8Array(b.byteLength);
    copy.set(b);
    return copy.buffer;
  }

  async text(): Promise<string> {
    return new TextDecoder().decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  blob(): Promise<Blob> {
    return this.#native().blob();
  }

  formData(): Promise<FormData> {
    return this.#native().formData();
  }

  clone(): Response {
    return this.#native().clone();
  }

  #native(): Response {
    return new NativeResponse(this.body, { status: this.status, statusText: this.statusText, headers: this.headers });
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `Response (node:http) { status: ${this.status}, url: ${JSON.stringify(this.url)} }`;
  }
}
Object.setPrototypeOf(NodeResponse.prototype, NativeResponse.prototype);

/**
 * The request's header lines as node:http's flat [name, value, …] list: with a list, node:http
 * writes the lines as given (validating each) instead of going through setHeader per header.
 * Lowercase names, later ones replacing earlier ones (as a Headers would); `host`, the
 * `accept-encoding: identity` this fetch always sends and the body's `content-length` are added.
 */
function headerLines(h: HeadersInit | undefined, host: string, contentLength: number | null): string[] {
  const out: Record<string, string> = {};
  if (h instanceof Headers) h.forEach((v, k) => (out[k] = v));
  else if (Array.isArray(h)) for (const [k, v] of h) out[k.toLowerCase()] = v!;
  else if (h) for (const k in h) out[k.toLowerCase()] = (h as Record<string, string>)[k]!;
  out["accept-encoding"] = "identity";
  if (contentLength !== null) out["content-length"] = String(contentLength);
  const lines = out.host === undefined ? ["host", host] : [];
  for (const k in out) lines.push(k, out[k]!);
  return lines;
}

interface Target {
  secure: boolean;
  host: string;
  options: { protocol: string; hostname: string; port: string | number; path: string };
}

/** Parsed request URLs (the gateway calls a handful of origin URLs over and over). */
const targets = new Map<string, Target>();
const MAX_TARGETS = 1024;

function targetOf(href: string): Target {
  let t = targets.get(href);
  if (!t) {
    const url = new URL(href);
    const secure = url.protocol === "https:";
    t = {
      secure,
      host: url.host,
      options: {
        protocol: url.protocol,
        hostname: url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname,
        port: url.port || (secure ? 443 : 80),
        path: url.pathname + url.search,
      },
    };
    if (targets.size >= MAX_TARGETS) targets.clear();
    targets.set(href, t);
  }
  return t;
}

export function createNodeFetch(o: NodeFetchOptions): typeof fetch & { close(): void } {
  const maxSockets = o.maxSockets ?? 256;
  const http = new HttpAgent({ keepAlive: true, maxSockets, scheduling: "lifo" });
  const https = new HttpsAgent({ keepAlive: true, maxSockets, scheduling: "lifo" });

  const f = (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> =>
    new Promise((resolve, reject) => {
      const href = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      let target: Target;
      try {
        target = targetOf(href);
      } catch (e) {
        return reject(e);
      }
      const signal = init.signal ?? undefined;
      if (signal?.aborted) return reject(signal.reason);
      const method = (init.method ?? "GET").toUpperCase();
      const body = init.body;
      if (body != null && typeof body !== "string" && !(body instanceof Uint8Array)) return reject(new TypeError("node-fetch: only string or Uint8Array bodies"));
      const headers = headerLines(init.headers, target.host, body == null ? null : typeof body === "string" ? Buffer.byteLength(body) : body.byteLength);
      const secure = target.secure;
      const req = (secure ? httpsRequest : httpRequest)({ ...target.options, method, headers, agent: secure ? https : http });
      let settled = false;
      const onAbort = signal ? new ForwardAbort(signal, req) : null;
      if (onAbort) signal!.addEventListener("abort", onAbort, { once: true });
      req.on("socket", (sock) => {
        if (!sock.connecting) return;
        const t = setTimeout(() => req.destroy(new ConnectTimeoutError(`connect to ${target.host} took over ${o.connectTimeoutMs} ms`)), o.connectTimeoutMs);
        sock.once("connect", () => clearTimeout(t));
        sock.once("close", () => clearTimeout(t));
      });
      req.on("response", (r) => {
        if (onAbort) onAbort.res = r;
        settled = true;
        const h = new Headers();
        for (let i = 0; i < r.rawHeaders.length; i += 2) h.append(r.rawHeaders[i]!, r.rawHeaders[i + 1]!);
        const status = r.statusCode ?? 502;
        const nobody = method === "HEAD" || status === 204 || status === 304;
        if (onAbort) r.once("close", () => signal!.removeEventListener("abort", onAbort));
        if (nobody) r.resume();
        resolve(new NodeResponse(nobody ? null : r, status, r.statusMessage ?? "", h, href) as unknown as Response);
      });
      req.on("error", (e) => {
        if (settled) return; // after the headers, errors reach the body stream
        settled = true;
        if (onAbort) signal!.removeEventListener("abort", onAbort);
        reject(signal?.aborted ? signal.reason : new TypeError("fetch failed", { cause: e }));
      });
      req.end(body ?? undefined);
    });

  return Object.assign(f as typeof fetch, {
    close() {
      http.destroy();
      https.destroy();
    },
  });
}
