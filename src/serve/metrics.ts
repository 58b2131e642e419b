/**
 * What `GET /metrics` reports, in Prometheus' text format (prom-client): requests, tokens in and out,
 * time to first token and latency per adapter; the queue and the batch of the scheduler. One
 * Registry per server, so servers in one process (tests, replicas) keep separate counts.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: "softprompt_requests_total",
    help: "Requests answered, by endpoint, adapter and HTTP status",
    labelNames: ["endpoint", "adapter", "status"] as const,
    registers: [this.registry],
  });
  readonly promptTokens = new Counter({ name: "softprompt_prompt_tokens_total", help: "Input tokens of requests (virtual tokens not counted)", labelNames: ["adapter"] as const, registers: [this.registry] });
  readonly completionTokens = new Counter({ name: "softprompt_completion_tokens_total", help: "Tokens generated", labelNames: ["adapter"] as const, registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: "softprompt_queue_depth", help: "Rows waiting to join the batch (their adapter's prompt being computed, or no free slot)", registers: [this.registry] });
  readonly running = new Gauge({ name: "softprompt_running_rows", help: "Rows in the running batch", registers: [this.registry] });
  readonly batchSize = new Histogram({
    name: "softprompt_batch_size",
    help: "Rows advanced by one engine step",
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [this.registry],
  });
  readonly timeToFirstToken = new Histogram({
    name: "softprompt_time_to_first_token_seconds",
    help: "From a request's arrival to its first token",
    labelNames: ["adapter"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: "softprompt_request_duration_seconds",
    help: "From a request's arrival to its last token",
    labelNames: ["adapter"] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly adapters = new Gauge({ name: "softprompt_adapters_served", help: "Adapter versions loaded from the registry", registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "softprompt_process_" });
  }
}
