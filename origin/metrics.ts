/**
 * The origin's metrics as plain data, plus one function that renders them in the Prometheus text
 * format (0.0.4). Names follow vLLM's, so dashboards and the edge read a fairspec origin and a vLLM
 * pool alike; fairspec-only series use the `fairspec:` prefix.
 *
 * Speculative counters are recorded per verifier step as it happens (not at the end of a request),
 * so work done for a request that is later aborted is still counted, and the step counter moves
 * live — which is what lets a test see generation stop after a client disconnect.
 */
import type { StepStats } from "../engine/speculative.ts";

export interface Histogram {
  /** Upper bounds, ascending; +Inf is implicit. */
  readonly buckets: readonly number[];
  /** counts[i]: observations ≤ buckets[i] (not cumulative; rendering accumulates). The last slot is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/** vLLM's finished_reason label values (plus "timeout", which vLLM reports as "abort"). */
export type FinishedReason = "stop" | "length" | "abort" | "timeout";

export interface OriginMetrics {
  requestSuccess: Record<FinishedReason, number>;
  /** Turned away because the admission queue was full (429). */
  requestsRejected: number;
  /** Answered with a 4xx before generation (validation). */
  requestsInvalid: number;
  promptTokens: number;
  generationTokens: number;
  /** Verifier steps, every request together: the per-engine step counter. */
  verifierSteps: number;
  specNumDrafts: number;
  specNumDraftTokens: number;
  specNumAcceptedTokens: number;
  specAcceptedPerPos: number[];
  e2eLatency: Histogram;
  timeToFirstToken: Histogram;
  queueTime: Histogram;
  interTokenLatency: Histogram;
}

// vLLM's bucket boundaries (seconds), so histograms from both servers can be summed.
const E2E_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

export function histogram(buckets: readonly number[]): Histogram {
  return { buckets, counts: new Array(buckets.length + 1).fill(0), sum: 0, count: 0 };
}

export function observe(h: Histogram, value: number): void {
  let i = h.buckets.findIndex((b) => value <= b);
  if (i < 0) i = h.buckets.length;
  h.counts[i]!++;
  h.sum += value;
  h.count++;
}

export function createMetrics(): OriginMetrics {
  return {
    requestSuccess: { stop: 0, length: 0, abort: 0, timeout: 0 },
    requestsRejected: 0,
    requestsInvalid: 0,
    promptTokens: 0,
    generationTokens: 0,
    verifierSteps: 0,
    specNumDrafts: 0,
    specNumDraftTokens: 0,
    specNumAcceptedTokens: 0,
    specAcceptedPerPos: [],
    e2eLatency: histogram(E2E_BUCKETS),
    timeToFirstToken: histogram(TTFT_BUCKETS),
    queueTime: histogram(E2E_BUCKETS),
    interTokenLatency: histogram(ITL_BUCKETS),
  };
}

/** One verifier step of any request. */
export function recordStep(m: OriginMetrics, step: StepStats): void {
  m.verifierSteps++;
  if (step.drafted > 0) m.specNumDrafts++;
  m.specNumDraftTokens += step.drafted;
  m.specNumAcceptedTokens += step.accepted;
  step.acceptedAt.forEach((a, i) => {
    m.specAcceptedPerPos[i] = (m.specAcceptedPerPos[i] ?? 0) + (a ? 1 : 0);
  });
}

/** One finished request (any outcome after admission). Times in seconds, all measured from arrival. */
export function recordRequest(
  m: OriginMetrics,
  r: { reason: FinishedReason; promptTokens: number; generationTokens: number; e2eS: number; queueS: number; ttftS: number | null },
): void {
  m.requestSuccess[r.reason]++;
  m.promptTokens += r.promptTokens;
  m.generationTokens += r.generationTokens;
  observe(m.e2eLatency, r.e2eS);
  observe(m.queueTime, r.queueS);
  if (r.ttftS !== null) observe(m.timeToFirstToken, r.ttftS);
  if (r.ttftS !== null && r.generationTokens > 1) observe(m.interTokenLatency, (r.e2eS - r.ttftS) / (r.generationTokens - 1));
}

export interface Gauges {
  running: number;
  waiting: number;
}

const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const labelStr = (labels: Record<string, string>) => `{${Object.entries(labels).map(([k, v]) => `${k}="${esc(v)}"`).join(",")}}`;
const fmt = (x: number) => (Number.isFinite(x) ? String(x) : x > 0 ? "+Inf" : x < 0 ? "-Inf" : "NaN");

/** The Prometheus text exposition (content type `text/plain; version=0.0.4`). */
export function renderPrometheus(m: OriginMetrics, gauges: Gauges, modelName: string): string {
  const base = { model_name: modelName };
  const out: string[] = [];
  const family = (name: string, type: "counter" | "gauge" | "histogram", help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  const sample = (name: string, value: number, extra: Record<string, string> = {}) => out.push(`${name}${labelStr({ ...base, ...extra })} ${fmt(value)}`);
  const hist = (name: string, h: Histogram, help: string) => {
    family(name, "histogram", help);
    let cum = 0;
    h.buckets.forEach((b, i) => {
      cum += h.counts[i]!;
      sample(`${name}_bucket`, cum, { le: fmt(b) });
    });
    sample(`${name}_bucket`, h.count, { le: "+Inf" });
    sample(`${name}_sum`, h.sum);
    sample(`${name}_count`, h.count);
  };

  family("vllm:num_requests_running", "gauge", "Requests generating right now.");
  sample("vllm:num_requests_running", gauges.running);
  family("vllm:num_requests_waiting", "gauge", "Requests admitted and waiting for a generation slot.");
  sample("vllm:num_requests_waiting", gauges.waiting);
  family("vllm:request_success_total", "counter", "Finished requests by finished_reason (timeout: the origin's own per-request limit).");
  for (const [reason, n] of Object.entries(m.requestSuccess)) sample("vllm:request_success_total", n, { finished_reason: reason });
  family("vllm:prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
  sample("vllm:prompt_tokens_total", m.promptTokens);
  family("vllm:generation_tokens_total", "counter", "Generated tokens returned to clients.");
  sample("vllm:generation_tokens_total", m.generationTokens);
  family("vllm:spec_decode_num_drafts_total", "counter", "Verifier steps that checked a draft.");
  sample("vllm:spec_decode_num_drafts_total", m.specNumDrafts);
  family("vllm:spec_decode_num_draft_tokens_total", "counter", "Draft tokens proposed.");
  sample("vllm:spec_decode_num_draft_tokens_total", m.specNumDraftTokens);
  family("vllm:spec_decode_num_accepted_tokens_total", "counter", "Draft tokens accepted.");
  sample("vllm:spec_decode_num_accepted_tokens_total", m.specNumAcceptedTokens);
  family("vllm:spec_decode_num_accepted_tokens_per_pos_total", "counter", "Draft tokens accepted at each draft position (0 = first).");
  m.specAcceptedPerPos.forEach((n, i) => sample("vllm:spec_decode_num_accepted_tokens_per_pos_total", n, { position: String(i) }));
  hist("vllm:e2e_request_latency_seconds", m.e2eLatency, "Request latency from arrival to the last token, queueing included.");
  hist("vllm:time_to_first_token_seconds", m.timeToFirstToken, "From arrival to the first generated token, queueing included (as vLLM).");
  hist("vllm:request_queue_time_seconds", m.queueTime, "Time spent waiting for a generation slot.");
  hist("vllm:inter_token_latency_seconds", m.interTokenLatency, "Mean time between output tokens, per request.");
  family("fairspec:verifier_steps_total", "counter", "Verifier steps run by this engine (speculative or not).");
  sample("fairspec:verifier_steps_total", m.verifierSteps);
  family("fairspec:requests_rejected_total", "counter", "Requests turned away with 429 because the admission queue was full.");
  sample("fairspec:requests_rejected_total", m.requestsRejected);
  family("fairspec:requests_invalid_total", "counter", "Requests answered with a 4xx before generation.");
  sample("fairspec:requests_invalid_total", m.requestsInvalid);
  return `${out.join("\n")}\n`;
}
