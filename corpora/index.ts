/**
 * Reading the committed held-out slices: documents and deterministic prompts per task.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { TaskId } from "../core/tasks.ts";

export type HeldoutSplit = "validation" | "test";
export interface Doc {
  id: string;
  text: string;
}

const DATA = fileURLToPath(new URL("./data/", import.meta.url));
const cache = new Map<string, Doc[]>();

export function loadDocs(task: TaskId, split: HeldoutSplit = "test"): Doc[] {
  const key = `${task}/${split}`;
  let docs = cache.get(key);
  if (!docs) {
    const body = readFileSync(`${DATA}${task}/${split}.jsonl`, "utf8");
    docs = body.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Doc);
    cache.set(key, docs);
  }
  return docs;
}

/** Cut a byte string back to the last complete UTF-8 character. */
export function utf8Prefix(bytes: Uint8Array, maxBytes: number): Uint8Array {
  let end = Math.min(maxBytes, bytes.length);
  if (end < bytes.length) while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/**
 * `n` prompts of at most `bytes` UTF-8 bytes from a task's held-out documents, deterministic.
 * Prompt j comes from document j mod D, starting at the first line break after a fraction of the
 * document that changes on every pass over the documents (so small slices still give n
 * different prompts), and is cut at a character boundary.
 */
export function taskPrompts(task: TaskId, n: number, bytes = 96, split: HeldoutSplit = "test"): string[] {
  const docs = loadDocs(task, split);
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const out: string[] = [];
  for (let j = 0; out.length < n && j < n * 4; j++) {
    const doc = docs[j % docs.length]!;
    const pass = Math.floor(j / docs.length);
    const frac = ((pass * 0.618034 + 0.25) % 1) * 0.8;
    const b = enc.encode(doc.text);
    let start = Math.floor(b.length * frac);
    const nl = b.indexOf(10, start);
    start = nl >= 0 && nl + 1 < b.length - 16 ? nl + 1 : 0;
    const p = dec.decode(utf8Prefix(b.subarray(start), bytes));
    if (p.trim().length >= 8) out.push(p);
  }
  return out;
}
