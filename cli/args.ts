import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake in how a command was called: printed as one line, exit code 2. */
export class UsageError extends Error {}

export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T, usage: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]} — usage: ${usage}`);
  }
}
