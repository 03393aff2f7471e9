/**
 * Opening the calibration store from a command: a missing local file is a usage error (not a new
 * empty database), and the store's input errors become one-line usage errors.
 */
import { existsSync } from "node:fs";
import { NoActiveRunError } from "../calibrator/drift.ts";
import { env } from "../calibrator/env.ts";
import { openStore, StoreInputError, type Store } from "../calibrator/store.ts";
import { UsageError } from "./args.ts";

/** The local path of a `file:` URL, or null for a remote one. */
export function filePath(url: string): string | null {
  if (!url.startsWith("file:")) return null;
  const rest = url.slice("file:".length).replace(/[?#].*$/, "");
  return decodeURIComponent(rest.startsWith("///") ? rest.slice(2) : rest.startsWith("//localhost/") ? rest.slice("//localhost".length) : rest);
}

/**
 * Opens the store at `--db` / FAIRSPEC_DB_URL, runs `fn`, closes it; store input errors become
 * usage errors. `mustExist`: a local file that does not exist is an error (a mistyped --db must
 * not create an empty store).
 */
export async function withStore<T>(db: string | undefined, fn: (s: Store) => Promise<T>, mustExist = true): Promise<T> {
  const url = db ?? env().FAIRSPEC_DB_URL;
  const path = filePath(url);
  if (mustExist && path !== null && path !== ":memory:" && !existsSync(path)) {
    throw new UsageError(`no calibration store at ${path} — run a calibration first, or point --db / FAIRSPEC_DB_URL at the store`);
  }
  let store: Store;
  try {
    store = await openStore(url);
  } catch (e) {
    if (e instanceof StoreInputError) throw new UsageError(e.message);
    throw e;
  }
  try {
    return await fn(store);
  } catch (e) {
    if (e instanceof StoreInputError || e instanceof NoActiveRunError) throw new UsageError(e.message);
    throw e;
  } finally {
    store.close();
  }
}
