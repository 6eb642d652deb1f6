"""Monitoring benchmarks: (1) throughput cost of metrics collection at 16 concurrent streams,
(2) size of metrics.db after a simulated week of traffic.

    .venv/bin/python benchmarks/monitoring.py            # both
    .venv/bin/python benchmarks/monitoring.py --only week
    .venv/bin/python benchmarks/monitoring.py --only overhead --pairs 6

(1) Two `appliance serve` processes run side by side from the same model file, identical except
`monitoring.enabled` (true / false). Runs alternate between them (on, off, on, off, ...), so load
from anything else on the machine falls on both alike; each run sends the same fixed work:
`streams` concurrent SSE streams, each asking `requests_per_stream` distinct greedy questions
(response cache off, so every answer is generated). Reported: tokens/s per run, and per pair the
relative cost (off - on) / off; mean and standard deviation over pairs.

(1a) During those runs, the CPU time of the 'on' server's threads is read from
/proc/PID/task/*/stat (the appliance names its threads: llm-engine, metrics-writer,
monitor-jobs, alert-dispatcher): the monitoring threads' share of the process's CPU, plus the
event-loop work of (1b) for the requests served, is what monitoring takes from inference on a
machine where inference keeps every core busy. Unlike (1) it does not depend on run-to-run
throughput noise.

(1b) The same cost measured directly, free of load noise: the per-request work monitoring adds on
the event loop (the request trace following 32 token events, building the event, Prometheus
observations, the buffer append) and in the writer thread (the SQLite insert), timed over many
requests with the real classes, as CPU time of the measuring thread.

(2) Synthetic request events and system samples for 7 days are written through the real
MetricsStore, with the real rollup / retention / size-bound job run every simulated 10 minutes
(default retention: raw 48 h, minute rollups 14 days, hour rollups 400 days).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL_CACHE = Path(os.environ.get("APPLIANCE_TEST_CACHE", "~/.cache/erp-appliance-tests")).expanduser()
TOPICS = ["invoice", "purchase order", "goods receipt", "cost center", "general ledger", "vendor master",
          "sales order", "credit note", "stock transfer", "payment run", "asset", "budget", "BOM",
          "work order", "delivery note", "tax code"]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) // 2**20
    return f"{os.cpu_count()} CPU cores ({cpu}), {mem} GiB RAM, Python {platform.python_version()}, no GPU"


# -- (1) overhead ------------------------------------------------------------------------------

def start_server(data_dir: Path, port: int, model: str, monitoring: bool, slots: int) -> subprocess.Popen:
    # Auth off on both: the figure is monitoring's cost, and the two servers differ only in it.
    env = {**os.environ, "APPLIANCE_MONITORING__ENABLED": str(monitoring).lower(),
           "APPLIANCE_AUTH__ENABLED": "false", "APPLIANCE_CACHE__ENABLED": "false",
           "APPLIANCE_ENGINE__SLOTS": str(slots),
           "APPLIANCE_ENGINE__MAX_REQUEST_TOKENS": "512", "APPLIANCE_MONITORING__GOLDEN_INTERVAL_HOURS": "0",
           "APPLIANCE_LOG_LEVEL": "warning"}
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--model", model], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


async def one_run(url: str, streams: int, per_stream: int, max_tokens: int, run: int) -> dict:
    tokens = 0
    failures = 0

    async def stream(i: int, client: httpx.AsyncClient) -> None:
        nonlocal tokens, failures
        for k in range(per_stream):
            topic = TOPICS[(i + k) % len(TOPICS)]
            body = {"model": "default", "stream": True, "temperature": 0, "max_tokens": max_tokens,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": f"Explain {topic} in an ERP, case {i}-{k}."}]}
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    failures += 1
                    await response.aread()
                    continue
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and '"usage"' in line:
                        tokens += json.loads(line[6:])["usage"]["completion_tokens"]

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        await asyncio.gather(*(stream(i, client) for i in range(streams)))
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "tokens": tokens, "tokens_per_s": tokens / elapsed,
            "requests_per_s": streams * per_stream / elapsed, "failures": failures}


MONITORING_THREADS = ("metrics-writer", "monitor-jobs", "alert-dispatche")  # comm is 15 bytes


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a process's threads, summed by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended between listing and reading
            continue
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return totals


def overhead(args) -> dict:
    from appliance.engine.model import resolve_model_path

    model = str(resolve_model_path("", bundled_type="q8_0", cache_dir=MODEL_CACHE / "models"))
    tmp = Path(tempfile.mkdtemp(prefix="mon-bench-"))
    ports = {True: args.port, False: args.port + 1}
    servers = {on: start_server(tmp / ("on" if on else "off"), ports[on], model, on, args.streams)
               for on in (True, False)}
    urls = {on: f"http://127.0.0.1:{ports[on]}" for on in (True, False)}
    try:
        for on in (True, False):
            wait_ready(urls[on])
            asyncio.run(one_run(urls[on], args.streams, 1, args.max_tokens, -1))  # warm-up
        pairs = []
        cpu: dict[str, float] = {}  # CPU seconds of the 'on' server's threads during its runs
        for p in range(args.pairs):
            order = (True, False) if p % 2 == 0 else (False, True)  # ABBA: no side always goes first
            result = {}
            for on in order:
                before = thread_cpu(servers[on].pid) if on else {}
                result[on] = asyncio.run(one_run(urls[on], args.streams, args.requests_per_stream,
                                                 args.max_tokens, p))
                if on:
                    after = thread_cpu(servers[on].pid)
                    for name, seconds in after.items():
                        cpu[name] = cpu.get(name, 0.0) + seconds - before.get(name, 0.0)
            cost = (result[False]["tokens_per_s"] - result[True]["tokens_per_s"]) / result[False]["tokens_per_s"]
            pairs.append({"on": result[True], "off": result[False], "cost": cost})
            print(f"  pair {p + 1}: on {result[True]['tokens_per_s']:.1f} tok/s "
                  f"({result[True]['requests_per_s']:.2f} req/s), off {result[False]['tokens_per_s']:.1f} tok/s "
                  f"({result[False]['requests_per_s']:.2f} req/s), cost {100 * cost:+.2f}%", flush=True)
        recorded = httpx.get(urls[True] + "/api/metrics/summary", params={"since": "1d"}).json()["requests"]
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            server.wait(60)
    costs = [p["cost"] for p in pairs]
    return {
        "pairs": pairs,
        "cost_mean": statistics.mean(costs),
        "cost_stdev": statistics.stdev(costs) if len(costs) > 1 else 0.0,
        "on_mean": statistics.mean(p["on"]["tokens_per_s"] for p in pairs),
        "off_mean": statistics.mean(p["off"]["tokens_per_s"] for p in pairs),
        "recorded": recorded,
        "failures": sum(p["on"]["failures"] + p["off"]["failures"] for p in pairs),
        "thread_cpu": cpu,
        "on_requests": args.pairs * args.streams * args.requests_per_stream,
    }


# -- (1b) per-request cost ---------------------------------------------------------------------

def per_request_cost(n: int = 20_000, tokens: int = 32) -> dict:
    from appliance.llm.base import Finished, TextDelta
    from appliance.monitoring.collector import Collector
    from appliance.monitoring.prometheus import PrometheusMetrics
    from appliance.monitoring.store import MetricsStore
    from appliance.server.request_metrics import RequestTrace

    tmp = Path(tempfile.mkdtemp(prefix="mon-cost-"))
    store = MetricsStore(tmp / "metrics.db")
    prometheus = PrometheusMetrics(lambda: {})
    collector = Collector(store, buffer_size=n + 1, observers=[prometheus.observe_request])
    delta, done = TextDelta("word "), Finished("stop", 120, tokens, {})
    # CPU time of this thread, not wall time: the machine is shared, and CPU is what monitoring
    # takes away from inference.
    started = time.thread_time()
    for i in range(n):
        trace = RequestTrace(time.perf_counter())
        trace.model_version, trace.backend, trace.response_id = "m@1", "local", f"chatcmpl-{i}"
        for _ in range(tokens):
            trace.on_event(delta)
        trace.on_event(done)
        collector.record_request(trace.event("/v1/chat/completions", 200, time.perf_counter()))
    loop_us = (time.thread_time() - started) / n * 1e6
    started = time.thread_time()
    collector.flush()
    writer_us = (time.thread_time() - started) / n * 1e6
    store.close()
    return {"event_loop_us": loop_us, "writer_us": writer_us, "requests": n, "tokens": tokens}


# -- (2) a simulated week ----------------------------------------------------------------------

def rate_per_minute(ts: float, weekly_requests: int) -> float:
    """Office traffic: weekdays 08-18 carry 90% of the week's requests, the rest is spread thin."""
    t = time.gmtime(ts)
    busy = t.tm_wday < 5 and 8 <= t.tm_hour < 18
    busy_minutes, quiet_minutes = 5 * 10 * 60, 7 * 24 * 60 - 5 * 10 * 60
    return weekly_requests * (0.9 / busy_minutes if busy else 0.1 / quiet_minutes)


def simulated_week(weekly_requests: int, seed: int = 1) -> dict:
    from appliance.monitoring.collector import RequestEvent
    from appliance.monitoring.store import MetricsStore, Retention

    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="mon-week-"))
    store = MetricsStore(tmp / "metrics.db", Retention())
    start = 1_767_571_200  # a Monday 00:00 UTC
    step = 600
    inserted = 0
    write_seconds = maintain_seconds = 0.0
    for chunk in range(start, start + 7 * 86400, step):
        n = sum(1 for _ in range(int(rate_per_minute(chunk, weekly_requests) * step / 60 * 2))
                if rng.random() < 0.5)  # Poisson-ish count around the rate
        events = []
        for _ in range(n):
            cache_hit = rng.random() < 0.15
            status = 500 if rng.random() < 0.005 else (429 if rng.random() < 0.01 else 200)
            completion = 0 if status != 200 else rng.randint(20, 400)
            latency = 0.02 if cache_hit else rng.lognormvariate(1.5, 0.6)
            events.append(RequestEvent(
                ts=chunk + rng.random() * step, route="/v1/chat/completions", status=status,
                latency_s=latency, response_id=f"chatcmpl-{rng.getrandbits(96):024x}",
                error_type=None if status == 200 else ("engine_error" if status == 500 else "queue_full"),
                ttft_s=None if status != 200 else latency * 0.1, tokens_per_s=None if cache_hit else 25.0,
                prompt_tokens=rng.randint(50, 1500), completion_tokens=completion, cache_hit=cache_hit,
                retrieval_s=rng.uniform(0.01, 0.1), model_version="smollm2-135m-instruct@0123456789ab",
                backend="local", stream=rng.random() < 0.7).row())
        samples = [{"ts": t, "rss_bytes": 600_000_000 + rng.randint(0, 50_000_000),
                    "memory_used_percent": rng.uniform(30, 60), "memory_used_bytes": 8_000_000_000,
                    "cpu_percent": rng.uniform(0, 100), "process_cpu_percent": rng.uniform(0, 200),
                    "queue_depth": rng.randint(0, 3), "slots_busy": rng.randint(0, 32), "slots_total": 32,
                    "gpu_utilization_percent": None, "gpu_memory_used_bytes": None,
                    "gpu_memory_total_bytes": None} for t in range(chunk, chunk + step, 10)]
        t0 = time.perf_counter()
        store.insert("requests", events)
        store.insert("samples", samples)
        write_seconds += time.perf_counter() - t0
        inserted += len(events) + len(samples)
        t0 = time.perf_counter()
        store.maintain(now=chunk + step)
        maintain_seconds += time.perf_counter() - t0
    store.compact()
    counts = {t: store.db[t].count for t in ("requests", "samples", "rollups")}
    size = sum(p.stat().st_size for p in tmp.glob("metrics.db*") if p.suffix != ".db-shm")
    store.close()
    return {"weekly_requests": weekly_requests, "rows_inserted": inserted, "file_bytes": size,
            "rows_kept": counts, "write_rows_per_s": inserted / write_seconds,
            "maintain_seconds_total": maintain_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["overhead", "cost", "week"])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--requests-per-stream", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=18641)
    parser.add_argument("--weeks", default="100000,1000000", help="Requests per simulated week, comma-separated.")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.only in (None, "cost"):
        r = per_request_cost()
        print(f"\n(1b) monitoring work per request ({r['requests']:,} requests of {r['tokens']} tokens, "
              f"real classes, CPU time): {r['event_loop_us']:.1f} us on the event loop, "
              f"{r['writer_us']:.1f} us in the writer thread")
    if args.only in (None, "week"):
        print("\n(2) metrics.db after a simulated week (real store, rollup and retention code)")
        for weekly in (int(w) for w in args.weeks.split(",")):
            r = simulated_week(weekly)
            print(f"  {weekly:>9,} requests/week: {r['file_bytes'] / 2**20:.1f} MiB on disk; rows kept "
                  f"{r['rows_kept']}; store writes {r['write_rows_per_s']:,.0f} rows/s; "
                  f"maintenance {r['maintain_seconds_total']:.1f} s in all", flush=True)
    if args.only in (None, "overhead"):
        print(f"\n(1) throughput, monitoring on vs off: {args.streams} concurrent SSE streams x "
              f"{args.requests_per_stream} greedy requests, max_tokens {args.max_tokens}, cache off, "
              f"{args.pairs} alternating pairs")
        r = overhead(args)
        print(f"  mean on {r['on_mean']:.1f} tok/s, off {r['off_mean']:.1f} tok/s; cost of monitoring "
              f"{100 * r['cost_mean']:+.2f}% (stdev {100 * r['cost_stdev']:.2f} points over "
              f"{args.pairs} pairs); events recorded by the 'on' server: {r['recorded']}; "
              f"failed requests: {r['failures']}")
        cpu = r["thread_cpu"]
        total = sum(cpu.values())
        threads = sum(cpu.get(name, 0.0) for name in MONITORING_THREADS)
        hook = per_request_cost(5_000)["event_loop_us"] * r["on_requests"] / 1e6
        print(f"\n(1a) CPU of the 'on' server during its {args.pairs} runs: {total:.1f} s in all; "
              + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])))
        print(f"  monitoring threads {threads:.3f} s + event-loop hooks {hook:.3f} s "
              f"({r['on_requests']} requests x (1b)) = {threads + hook:.3f} s = "
              f"{100 * (threads + hook) / total:.3f}% of the server's CPU")


if __name__ == "__main__":
    main()
