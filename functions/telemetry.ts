/**
 * Telemetry rows are buffered in the isolate and written in batches (one multi-row INSERT of up to
 * `batchRows` rows per write) after responses — `ctx.waitUntil(telemetry.schedule(ms))`: one write
 * per window, not per response — never on the response path. Concurrent flushes coalesce:
 * one write at a time takes everything buffered so far. A failed write keeps the rows for the next
 * flush (bounded: beyond `maxBuffered` the oldest are dropped and counted).
 */
import type { TelemetryRow } from "./db.ts";

export interface TelemetryStats {
  /** Successful writes (INSERT statements). */
  writes: number;
  written: number;
  dropped: number;
  failedWrites: number;
}

export class TelemetryBuffer {
  private rows: TelemetryRow[] = [];
  private writing: Promise<boolean> | null = null;
  readonly stats: TelemetryStats = { writes: 0, written: 0, dropped: 0, failedWrites: 0 };

  constructor(
    private readonly write: (rows: TelemetryRow[]) => Promise<void>,
    private readonly maxBuffered: number,
    /** Rows per write (one INSERT each). */
    private readonly batchRows = 200,
  ) {}

  private scheduled: Promise<void> | null = null;

  /**
   * A flush `delayMs` from the first call (later calls join it), so one INSERT carries every row
   * of the window instead of one write per response. Hand the promise to `waitUntil`.
   */
  schedule(delayMs: number): Promise<void> {
    if (delayMs <= 0) return this.flush();
    if (!this.scheduled) {
      this.scheduled = new Promise<void>((resolve) => setTimeout(resolve, delayMs)).then(() => {
        this.scheduled = null;
        return this.flush();
      });
    }
    return this.scheduled;
  }

  add(row: TelemetryRow): void {
    this.rows.push(row);
    if (this.rows.length > this.maxBuffered) {
      const over = this.rows.length - this.maxBuffered;
      this.rows.splice(0, over);
      this.stats.dropped += over;
    }
  }

  get buffered(): number {
    return this.rows.length;
  }

  /** Writes what is buffered; resolves when the rows buffered at the call are written (or the write failed). Never rejects. */
  flush(): Promise<void> {
    if (this.writing) {
      // A write is running: after it, write what was added since (joining any write started meanwhile).
      return this.writing.then((ok) => (ok && this.rows.length > 0 ? this.flush() : undefined));
    }
    if (this.rows.length === 0) return Promise.resolve();
    const batch = this.rows.splice(0, this.batchRows);
    const p = this.write(batch).then(
      () => {
        this.stats.writes++;
        this.stats.written += batch.length;
        return true;
      },
      () => {
        this.stats.failedWrites++;
        // Back in front of anything added meanwhile; the next flush retries them.
        this.rows = batch.concat(this.rows);
        if (this.rows.length > this.maxBuffered) {
          const over = this.rows.length - this.maxBuffered;
          this.rows.splice(0, over);
          this.stats.dropped += over;
        }
        return false;
      },
    );
    this.writing = p.finally(() => {
      this.writing = null;
    });
    // More than one batch buffered: keep writing (one INSERT at a time) until done or failed.
    return this.writing.then((ok) => (ok && this.rows.length > 0 ? this.flush() : undefined));
  }
}
