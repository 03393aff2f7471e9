/**
 * API keys at the edge: WebCrypto only (no node:crypto), so the same code runs on Workers and Node.
 * Keys are stored as the sha256 hex of the raw key (calibrator/store.ts `hashApiKey`).
 */

/** Raw keys look like `fs_` + 32 URL-safe characters (calibrator/store.ts `API_KEY_PATTERN`). */
export const API_KEY_PATTERN = /^fs_[A-Za-z0-9_-]{32}$/;

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  let s = "";
  for (const b of digest) s += HEX[b];
  return s;
}

/** Compares two strings in time that depends only on their lengths (not on where they differ). */
export function constantTimeEqual(a: string, b: string): boolean {
  const n = Math.max(a.length, b.length);
  let diff = a.length ^ b.length;
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0);
  return diff === 0;
}

/** The token of `Authorization: Bearer <token>`, else null. */
export function bearerToken(header: string | undefined | null): string | null {
  if (!header) return null;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m ? m[1]! : null;
}
