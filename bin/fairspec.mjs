#!/usr/bin/env node
// The `fairspec` command: runs the TypeScript sources directly through tsx's loader.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
