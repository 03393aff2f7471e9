/**
 * V8 heap sizing for a process that times the engine.
 *
 * Measured (quick config, `node --trace-gc --trace-incremental-marking`): with ~33 MB of live JS
 * heap (the measurement phase's results), V8's default growing factor put the old generation's
 * limit ~23 MB above its size: less than the young generation's capacity, so incremental marking
 * started after nearly every scavenge ("allocation limit") and a mark-compact ran every 50–75 ms
 * through the cost model and validation phases (837 in 70 s; a bare script that runs the same
 * generations: 1 in 3.4 s). Those pauses land on timed runs at random and their cost moves
 * with the heap's size, i.e. with how far the run has got. A growing factor of 4 (the limit at
 * 4× the live heap) leaves the slack above the young generation: 20 mark-compacts in the same 70 s.
 *
 * `heap_growing_percent` is read at every mark-compact, so setting it at run time takes effect
 * from the next one.
 */
import { setFlagsFromString } from "node:v8";

const HEAP_GROWING_PERCENT = 300;

/** Applies the growing factor, unless the process was started with its own (Node refuses it in NODE_OPTIONS). */
export function steadyHeapForTiming(): void {
  if (process.execArgv.some((a) => a.startsWith("--heap-growing-percent"))) return;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
