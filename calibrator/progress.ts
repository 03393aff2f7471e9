/**
 * Progress for long steps on stderr: a redrawn bar with ETA on a terminal, a line every ~10% in
 * logs (CI, cron), silent when quiet.
 */
export class Progress {
  private done = 0;
  private lastPct = -1;
  private readonly t0 = Date.now();
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(
    private label: string,
    private total: number,
    private quiet = false,
  ) {
    this.draw();
  }

  tick(n = 1) {
    this.done = Math.min(this.total, this.done + n);
    this.draw();
  }

  finish(note = "") {
    this.done = this.total;
    if (this.quiet) return;
    const secs = ((Date.now() - this.t0) / 1000).toFixed(1);
    if (this.tty) process.stderr.write(`\r\x1b[2K`);
    process.stderr.write(`${this.label}: done in ${secs} s${note ? ` — ${note}` : ""}\n`);
  }

  private draw() {
    if (this.quiet || this.total <= 0) return;
    const frac = this.done / this.total;
    const elapsed = (Date.now() - this.t0) / 1000;
    const eta = this.done > 0 ? Math.round((elapsed / this.done) * (this.total - this.done)) : null;
    if (this.tty) {
      const width = 24;
      const bar = "█".repeat(Math.round(frac * width)).padEnd(width, "░");
      process.stderr.write(`\r\x1b[2K${this.label} ${bar} ${this.done}/${this.total}${eta !== null ? ` ~${eta}s left` : ""}`);
    } else {
      const pct = Math.floor(frac * 10) * 10;
      if (pct !== this.lastPct) {
        this.lastPct = pct;
        process.stderr.write(`${this.label}: ${pct}% (${this.done}/${this.total})${eta !== null && this.done < this.total ? `, ~${eta}s left` : ""}\n`);
      }
    }
  }
}
