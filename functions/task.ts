/**
 * Task detection: a client hint wins (header `x-fairspec-task`, then body `fairspec: {task}`),
 * else the task classifier on the latest user message, else the tenant's default task.
 *
 * The classifier is injected (functions/classifier.ts builds the ONNX one); it may be slow to
 * start (a wasm session), so `lazyClassifier` creates it on first use, shares the start between
 * concurrent requests, and after a failed start tries again only after `retryMs` — requests in
 * between use the tenant's default task rather than wait or fail.
 */

export interface TaskClassification {
  task: string;
  confidence: number;
  scores?: Record<string, number>;
}

export interface TaskClassifier {
  classify(text: string): Promise<TaskClassification>;
  /** Texts classified and model runs made (a batching classifier makes fewer runs), where known. */
  readonly stats?: { texts: number; runs: number };
}

/** Task ids as the calibrator writes them: "en", "code-py", … */
export const TASK_ID = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

export type TaskSource = "header" | "body" | "classifier" | "default";

type ContentPart = { type?: unknown; text?: unknown };

function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    let s = "";
    for (const p of content as ContentPart[]) if (p && typeof p.text === "string") s += (s ? "\n" : "") + p.text;
    return s;
  }
  return "";
}

/** The text to classify: the latest user message (chat), or the prompt (completions, when text). */
export function latestUserText(body: Record<string, unknown>): string {
  const messages = body.messages;
  if (Array.isArray(messages)) {
    for (let i = messages.length - 1; i >= 0; i--) {
      const m = messages[i] as { role?: unknown; content?: unknown } | null;
      if (m && m.role === "user") return contentText(m.content);
    }
    return "";
  }
  const p = body.prompt;
  if (typeof p === "string") return p;
  if (Array.isArray(p) && typeof p[0] === "string") return p[0];
  return "";
}

/** A classifier created on first use (see the file comment). */
export function lazyClassifier(create: () => Promise<TaskClassifier>, opts: { retryMs?: number; now?: () => number; onError?: (e: unknown) => void } = {}): TaskClassifier {
  const now = opts.now ?? (() => performance.now());
  const retryMs = opts.retryMs ?? 60_000;
  let ready: TaskClassifier | null = null;
  let starting: Promise<TaskClassifier> | null = null;
  let failedAt = -Infinity;
  return {
    get stats() {
      return ready?.stats;
    },
    async classify(text) {
      if (!ready) {
        if (!starting) {
          if (now() - failedAt < retryMs) throw new Error("the task classifier failed to start recently");
          starting = create().then(
            (c) => (ready = c),
            (e: unknown) => {
              failedAt = now();
              starting = null;
              opts.onError?.(e);
              throw e;
            },
          );
        }
        await starting;
      }
      return ready!.classify(text);
    },
  };
}

/** `p`, or a rejection "WHAT took over MS ms" if it has not settled by then. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
