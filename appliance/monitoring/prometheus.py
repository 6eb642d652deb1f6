"""The Prometheus view (`GET /metrics`): counters and histograms fed by request events, gauges read
at scrape time. Each app has its own registry, so several apps in one process do not collide."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector

from appliance.monitoring.collector import RequestEvent

log = logging.getLogger(__name__)

# LLM answers take from milliseconds (cache hits) to minutes (long answers on a busy CPU).
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


class _Gauges(PromCollector):
    """Figures read when scraped: the engine's queue and slots, cache, monitoring, alerts, GPU."""

    def __init__(self, read: Callable[[], dict]):
        self.read = read

    def collect(self):
        try:
            s = self.read()
        except Exception:  # a scrape must still answer while the model loads or swaps
            log.exception("reading gauges for /metrics failed")
            s = {}
        engine = s.get("engine") or {}
        gauges = [
            ("appliance_queue_depth", "Requests waiting for a generation slot.", engine.get("queue_depth")),
            ("appliance_slots_busy", "Generation slots in use.", engine.get("slots_busy")),
            ("appliance_slots_total", "Generation slots.", engine.get("slots_total")),
            ("appliance_kv_cells_reserved", "KV cache cells reserved by running requests.",
             engine.get("kv_cells_reserved")),
            ("appliance_model_ready", "1 once the model is loaded.", s.get("model_ready")),
            ("appliance_response_cache_entries", "Answers held in the response cache.",
             (s.get("cache") or {}).get("entries")),
            ("appliance_monitoring_buffer_pending", "Metric events waiting to be written.",
             (s.get("collector") or {}).get("pending")),
        ]
        sample = s.get("sample") or {}
        for key, help_text in (("gpu_utilization_percent", "GPU utilization, percent."),
                               ("gpu_memory_used_bytes", "GPU memory in use."),
                               ("memory_used_percent", "System memory in use, percent."),
                               ("cpu_percent", "System CPU use, percent.")):
            gauges.append((f"appliance_{key}", help_text, sample.get(key)))  # absent GPU: no series
        for name, help_text, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=float(value))
        counters = [
            ("appliance_response_cache_hits", "Response cache lookups that hit.",
             (s.get("cache") or {}).get("hits")),
            ("appliance_response_cache_misses", "Response cache lookups that missed.",
             (s.get("cache") or {}).get("misses")),
            ("appliance_monitoring_events_dropped", "Metric events dropped because the buffer was full.",
             (s.get("collector") or {}).get("dropped")),
            ("appliance_engine_rejected_queue_full", "Requests refused with 429 by the engine.",
             engine.get("rejected_queue_full")),
        ]
        for name, help_text, value in counters:
            if value is not None:
                yield CounterMetricFamily(name, help_text, value=float(value))
        alerts = GaugeMetricFamily("appliance_alerts_firing", "Alerts firing now.", labels=["severity"])
        for severity, count in (s.get("alerts_firing") or {}).items():
            alerts.add_metric([severity], count)
        yield alerts


class PrometheusMetrics:
    def __init__(self, read_gauges: Callable[[], dict]):
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu seconds...
        self.requests = Counter("appliance_requests", "Finished /v1 requests by route and HTTP status.",
                                ["route", "status"], registry=self.registry)
        self.duration = Histogram("appliance_request_duration_seconds", "Time from request to last byte.",
                                  ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ttft = Histogram("appliance_time_to_first_token_seconds", "Time to the first token.",
                              buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter("appliance_tokens", "Tokens processed, by kind (prompt, completion).",
                              ["kind"], registry=self.registry)
        self.cache_hits = Counter("appliance_request_cache_hits", "Requests answered from the response cache.",
                                  registry=self.registry)
        self.feedback = Counter("appliance_feedback", "User ratings received, by rating.", ["rating"],
                                registry=self.registry)
        self.registry.register(_Gauges(read_gauges))

    def observe_request(self, event: RequestEvent) -> None:
        self.requests.labels(event.route, str(event.status)).inc()
        self.duration.labels(event.route).observe(event.latency_s)
        if event.ttft_s is not None:
            self.ttft.observe(event.ttft_s)
        if event.prompt_tokens:
            self.tokens.labels("prompt").inc(event.prompt_tokens)
        if event.completion_tokens:
            self.tokens.labels("completion").inc(event.completion_tokens)
        if event.cache_hit:
            self.cache_hits.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
