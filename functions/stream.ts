/**
 * Relaying an origin's response body to the client, chunk by chunk, while reading the
 * speculative counts out of it for telemetry — never buffering the client's stream.
 *
 * - Pull-based: one upstream read per client read (backpressure reaches the origin).
 * - SSE (`text/event-stream`): whole events are forwarded as they complete (a partial event is
 *   held until its blank line — a client cannot use half an event). The usage chunk's
 *   `metrics.speculative_decoding` / `usage` is read as it passes. When the gateway asked the
 *   origin for a usage chunk the client did not ask for (`stripUsage`), that chunk is consumed and
 *   the `"usage": null` of the other chunks removed, so the client sees exactly what OpenAI sends
 *   without `stream_options.include_usage`.
 * - JSON: bytes are forwarded untouched; a copy (up to 1 MiB) is parsed once the body ends.
 * - The origin failing mid-body, or going silent for `idleMs`: an SSE client gets one
 *   `data: {"error": …}` event and the stream ends (OpenAI's clients raise it); a JSON client sees
 *   the body error. Never a hang.
 * - The client going away cancels the upstream read and aborts the origin request.
 */
import { errorBody } from "./errors.ts";

export interface SpecCounts {
  drafted: number;
  accepted: number;
  completionTokens: number;
}

export type RelayOutcome = "done" | "origin_error" | "idle_timeout" | "cancelled";

export interface RelayOptions {
  mode: "sse" | "json" | "raw";
  /** SSE only: drop the usage chunk and `usage: null` fields (the client did not ask for them). */
  stripUsage: boolean;
  idleMs: number;
  /** Abort the origin request (called on client cancel, idle timeout and origin errors). */
  abort: (reason: unknown) => void;
  /** Called once, when the relay ends for any reason. */
  onEnd: (outcome: RelayOutcome, counts: SpecCounts | null) => void;
}

/**
 * An optional capability of the responses an injected `fetch` returns (functions/node-fetch.ts
 * has it): the whole body read natively, under the same bounds as reading `body` whole — at most
 * `max` bytes, no gap over `idleMs` between chunks, a rejection when the body breaks off — without
 * building a web stream. Absent (Workers, the runtime's fetch) or gone (once `body` was touched):
 * app.ts reads `response.body` as a web stream.
 */
export const NATIVE_BODY = Symbol.for("fairspec.nativeBody");

export interface NativeBody {
  /** false where `body` would be null (HEAD, 204, 304). */
  readonly hasBody: boolean;
  /** The whole body; rejects with "the response body exceeds N bytes", "the origin's response body took over N ms" or the transport's error. */
  readWhole(max: number, idleMs: number): Promise<Uint8Array>;
}

export function nativeBodyOf(r: Response): NativeBody | undefined {
  return (r as { [NATIVE_BODY]?: NativeBody })[NATIVE_BODY];
}

const JSON_COPY_LIMIT = 1 << 20;
const USAGE_RE = /"usage"\s*:\s*\{/;

const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : 0);

/** The counts in a response object or usage chunk (fairspec and vLLM names), else null. */
export function countsOf(obj: unknown): SpecCounts | null {
  if (typeof obj !== "object" || obj === null) return null;
  const o = obj as { usage?: { completion_tokens?: unknown; speculative_decoding?: unknown } | null; metrics?: { speculative_decoding?: unknown } | null };
  const usage = o.usage && typeof o.usage === "object" ? o.usage : null;
  const sd = (o.metrics?.speculative_decoding ?? usage?.speculative_decoding) as { num_draft_tokens?: unknown; num_accepted_draft_tokens?: unknown } | undefined;
  if (!usage && !sd) return null;
  return { drafted: num(sd?.num_draft_tokens), accepted: num(sd?.num_accepted_draft_tokens), completionTokens: num(usage?.completion_tokens) };
}

/** The `data:` payload of one SSE event (lines joined), or null when it has none. */
function eventData(event: string): string | null {
  let data: string | null = null;
  for (const line of event.split(/\r?\n/)) {
    if (line.startsWith("data:")) {
      const v = line.slice(line[5] === " " ? 6 : 5);
      data = data === null ? v : `${data}\n${v}`;
    }
  }
  return data;
}

export function sseErrorEvent(message: string, code: string): string {
  return `data: ${JSON.stringify(errorBody(message, "server_error", null, code))}\n\n`;
}

class IdleTimeout extends Error {}

export function relayBody(upstream: ReadableStream<Uint8Array>, o: RelayOptions): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let pending = ""; // SSE: text of the incomplete event
  let counts: SpecCounts | null = null;
  let jsonParts: Uint8Array[] | null = o.mode === "json" ? [] : null;
  let jsonBytes = 0;
  let ended = false;

  const end = (outcome: RelayOutcome) => {
    if (ended) return;
    ended = true;
    if (outcome === "done" && jsonParts) {
      try {
        const all = new Uint8Array(jsonBytes);
        let at = 0;
        for (const p of jsonParts) {
          all.set(p, at);
          at += p.length;
        }
        counts = countsOf(JSON.parse(decoder.decode(all)));
      } catch {
        // Not JSON after all (or over the copy limit): no counts.
      }
      jsonParts = null;
    }
    o.onEnd(outcome, counts);
  };

  /** One complete SSE event (without its separator) → the text to forward ("" to drop it). */
  const onEvent = (event: string): string => {
    const data = eventData(event);
    if (data === null || data === "[DONE]") return `${event}\n\n`;
    const hasUsage = USAGE_RE.test(data);
    if (!o.stripUsage) {
      if (hasUsage) {
        try {
          counts = countsOf(JSON.parse(data)) ?? counts;
        } catch {
          /* not JSON: forward as is */
        }
      }
      return `${event}\n\n`;
    }
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(data) as Record<string, unknown>;
    } catch {
      return `${event}\n\n`;
    }
    if (hasUsage && Array.isArray(obj.choices) && obj.choices.length === 0) {
      // The usage chunk the client did not ask for: read it, do not forward it.
      counts = countsOf(obj) ?? counts;
      return "";
    }
    if ("usage" in obj && obj.usage === null) {
      delete obj.usage;
      return `data: ${JSON.stringify(obj)}\n\n`;
    }
    if (hasUsage) counts = countsOf(obj) ?? counts;
    return `${event}\n\n`;
  };

  /** Decoded text → whole events to forward now; the rest waits in `pending`. */
  const onText = (text: string): string => {
    pending += text;
    let out = "";
    for (;;) {
      const m = /\r?\n\r?\n/.exec(pending);
      if (!m) break;
      out += onEvent(pending.slice(0, m.index));
      pending = pending.slice(m.index + m[0].length);
    }
    return out;
  };

  const read = (): Promise<ReadableStreamReadResult<Uint8Array>> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new IdleTimeout(`the origin sent nothing for ${o.idleMs} ms`)), o.idleMs);
    });
    return Promise.race([reader.read(), idle]).finally(() => clearTimeout(timer));
  };

  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, e: unknown) => {
    const idle = e instanceof IdleTimeout;
    o.abort(e);
    reader.cancel(e).catch(() => {});
    end(idle ? "idle_timeout" : "origin_error");
    if (o.mode === "sse") {
      const msg = idle ? `${(e as Error).message}; the stream was cut` : `the origin failed mid-stream: ${e instanceof Error ? e.message : String(e)}`;
      controller.enqueue(encoder.encode(sseErrorEvent(msg, idle ? "origin_idle_timeout" : "origin_stream_error")));
      controller.close();
    } else {
      controller.error(e);
    }
  };

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        // Loop until something is forwarded (an incomplete SSE event forwards nothing yet).
        for (;;) {
          let r: ReadableStreamReadResult<Uint8Array>;
          try {
            r = await read();
          } catch (e) {
            if (!ended) fail(controller, e);
            return;
          }
          if (r.done) {
            if (o.mode === "sse") {
              const tail = onText(decoder.decode());
              const rest = pending.trim() ? `${pending}` : "";
              pending = "";
              if (tail || rest) controller.enqueue(encoder.encode(tail + rest));
            }
            end("done");
            controller.close();
            return;
          }
          const chunk = r.value;
          if (o.mode === "sse") {
            const out = onText(decoder.decode(chunk, { stream: true }));
            if (out) {
              controller.enqueue(encoder.encode(out));
              return;
            }
            continue;
          }
          if (jsonParts) {
            if (jsonBytes + chunk.length <= JSON_COPY_LIMIT) {
              jsonParts.push(chunk.slice());
              jsonBytes += chunk.length;
            } else jsonParts = null;
          }
          controller.enqueue(chunk);
          return;
        }
      },
      cancel(reason) {
        o.abort(reason);
        end("cancelled");
        return reader.cancel(reason).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}
