/**
 * `npx fairspec <command>` — the command-line entry. Each command validates its flags and fails
 * with one line that says what is wrong and how to fix it (exit code 2), never a stack trace.
 */
import { UsageError } from "./args.ts";
import { COMMANDS } from "./commands.ts";

function help() {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`);
  return `fairspec — task-fair speculative decoding\n\nUsage: npx fairspec <command> [options]\n\n${lines.join("\n")}\n\nRun 'npx fairspec <command> --help' for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(help());
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`fairspec: unknown command '${name}' — run 'npx fairspec --help' for the list`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`Usage: npx fairspec ${name} ${cmd.usage}\n\n${cmd.summary}`);
    return 0;
  }
  try {
    await cmd.run(rest);
    // Commands with documented exit codes (recalibrate, calibrate --activate) set process.exitCode.
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof RangeError) {
      console.error(`fairspec ${name}: ${e.message}`);
      return 2;
    }
    console.error(`fairspec ${name}: ${(e as Error).message ?? e}`);
    if (process.env.FAIRSPEC_DEBUG) console.error(e);
    return 1;
  }
}
