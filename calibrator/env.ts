/**
 * The calibrator's environment, parsed once with zod (lazily, on first use, so a bad value is a
 * one-line error where it matters rather than a crash when a module is imported).
 *
 *   FAIRSPEC_DB_URL         libSQL URL of the calibration store (default file:./fairspec.db):
 *                           file:PATH, libsql://…, https://…, wss://…
 *   FAIRSPEC_DB_AUTH_TOKEN  auth token for a remote libSQL server (Turso); unset for files.
 */
import { z } from "zod";

export const DEFAULT_DB_URL = "file:./fairspec.db";

const LIBSQL_URL = /^(file:|libsql:\/\/|https?:\/\/|wss?:\/\/)/;

export const dbUrl = z
  .string()
  .trim()
  .regex(LIBSQL_URL, { error: (i) => `must be a libSQL URL like file:./fairspec.db or libsql://host, got '${String(i.input)}'` });

const EnvSchema = z.object({
  FAIRSPEC_DB_URL: z.preprocess((v) => (v === "" ? undefined : v), dbUrl.default(DEFAULT_DB_URL)),
  FAIRSPEC_DB_AUTH_TOKEN: z.preprocess((v) => (v === "" ? undefined : v), z.string().optional()),
});

export type Env = z.infer<typeof EnvSchema>;

/** Parses an environment; throws one line naming the variable and what is wrong. */
export function parseEnv(source: Record<string, string | undefined>): Env {
  const r = EnvSchema.safeParse(source);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new RangeError(`environment variable ${i.path.join(".")} ${i.message}`);
  }
  return r.data;
}

let cached: Env | undefined;

/** `process.env`, parsed on first call and remembered. */
export function env(): Env {
  return (cached ??= parseEnv(process.env));
}
