"""Serving benchmark: the appliance over HTTP (streaming) versus plain llama-cpp-python, and
grounded answers against plain ones under load.

Method: start `appliance serve` as a separate process on loopback with the response cache off;
for each concurrency level run that many client streams, each issuing chat requests back to back
for a fixed duration; aggregate completion tokens/s = completion tokens finished / wall time.
Single-request latency is measured with one client, sequentially. The reference is
`llama_cpp.Llama.create_completion` on the same GGUF file, same prompt, same max_tokens, same
thread count, in this process. `--soak SECONDS` runs 16 streams for that long and samples the
server's RSS every 10 s. Requests authenticate with an API key, as in production (auth is on).

`--grounded` starts the appliance with the int8 embedder and the sample knowledge base and runs
16 streams of golden-set questions three ways, each for `--seconds`: plain (`"rag": false`), grounded
with the model writing from the selected evidence (answers.mode = generative: evidence prompt, DRY,
verification) and grounded as the bundled model serves by default (answers.mode = auto, which is
extractive for it). It prints completion tokens/s, answers/s and latency p50/p95 of each, and the
ratios of the grounded ones to plain.

    python benchmarks/serving.py                 # throughput + latency table
    python benchmarks/serving.py --soak 300      # 5-minute soak at 16 streams
    python benchmarks/serving.py --grounded      # grounded vs plain answers at 16 streams
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import llama_cpp  # noqa: E402

from appliance.engine.model import bundled_model_path, resolve_model_path  # noqa: E402

_default_params = llama_cpp.llama_model_default_params


def _params():  # plain llama-cpp-python with the engine's CPU buffer choice (see engine/model.py)
    params = _default_params()
    params.use_extra_bufts = False
    return params


llama_cpp.llama_model_default_params = llama_cpp.llama_cpp.llama_model_default_params = _params
EMBEDDER = Path(os.environ.get("APPLIANCE_TEST_CACHE", "~/.cache/erp-appliance-tests")).expanduser() / "embedder"

MODEL = "smollm2-135m-instruct"
PROMPTS = [
    "Write a detailed essay about inventory management in a manufacturing company.",
    "Explain step by step how a purchase order is approved, received and paid.",
    "Describe the month-end closing process of an accounting department in detail.",
    "Write a long guide for new employees on using the company's ERP system.",
]


def api_key(data_dir: str) -> dict[str, str]:
    """Headers with a benchmark user's API key, created in the data dir before the server starts."""
    from appliance.accounts import Accounts

    accounts = Accounts(Path(data_dir) / "accounts.db")
    user = accounts.create_user("benchmark", None, groups=["all"])
    secret, _ = accounts.create_key(user.id, "serving benchmark")
    accounts.close()
    return {"Authorization": f"Bearer {secret}"}


def start_server(model_path: str, port: int, data_dir: str, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "APPLIANCE_ENGINE__MODEL_PATH": model_path, "APPLIANCE_CACHE__ENABLED": "false",
           "APPLIANCE_LOG_LEVEL": "warning", "HF_HUB_OFFLINE": "1",
           # One client asks for every stream: the per-user rate limit would measure the quota.
           "APPLIANCE_QUOTAS__EMPLOYEE_REQUESTS_PER_MINUTE": "0", "APPLIANCE_QUOTAS__EMPLOYEE_TOKENS_PER_DAY": "0",
           **extra_env}
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port", str(port),
                             "--data-dir", data_dir], env=env)
    deadline = time.monotonic() + 600  # a first start with a knowledge base ingests the sample
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/ready")
            retrieval = ready.json().get("retrieval", {}).get("status", "ready")
            if ready.status_code == 200 and retrieval in ("ready", "unavailable"):
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready")


async def stream_once(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int,
                      **extra) -> dict:
    body = {"model": MODEL, "stream": True, "max_tokens": max_tokens, "temperature": 0.7,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": prompt}], **extra}
    start = time.perf_counter()
    first = None
    usage = None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            return {"error": response.status_code}
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"error": chunk["error"]["code"]}
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter()
            if chunk.get("usage"):
                usage = chunk["usage"]
    end = time.perf_counter()
    return {"tokens": usage["completion_tokens"], "ttft": (first or end) - start, "total": end - start}


async def load(url: str, concurrency: int, seconds: float, max_tokens: int, headers: dict,
               prompts: list[str] = PROMPTS, **extra) -> dict:
    results: list[dict] = []
    deadline = time.perf_counter() + seconds

    async def worker(i: int):
        async with httpx.AsyncClient(timeout=300, headers=headers) as client:
            n = 0
            while time.perf_counter() < deadline:
                results.append(await stream_once(client, url, prompts[(i * 7 + n) % len(prompts)],
                                                 max_tokens, **extra))
                n += 1

    start = time.perf_counter()
    await asyncio.gather(*[worker(i) for i in range(concurrency)])
    wall = time.perf_counter() - start
    ok = [r for r in results if "tokens" in r]
    totals = sorted(r["total"] for r in ok)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "errors": len(results) - len(ok),
        "tokens_per_s": sum(r["tokens"] for r in ok) / wall,
        "answers_per_s": len(ok) / wall,
        "ttft_p50_ms": 1000 * statistics.median(r["ttft"] for r in ok),
        "latency_p50_s": statistics.median(totals),
        "latency_p95_s": totals[int(0.95 * (len(totals) - 1))],
    }


def grounded(model_path: str, port: int, seconds: float, max_tokens: int) -> None:
    """Plain, grounded-generative and grounded-default answers at 16 streams."""
    from appliance.answers.golden import load_golden

    questions = [item.question for item in load_golden()]
    rows = {}
    for mode in ("generative", "auto"):
        with tempfile.TemporaryDirectory() as data_dir:
            headers = api_key(data_dir)
            proc = start_server(model_path, port, data_dir, APPLIANCE_ANSWERS__MODE=mode,
                                APPLIANCE_KNOWLEDGE__EMBEDDER_PATH=str(EMBEDDER))
            url = f"http://127.0.0.1:{port}"
            try:
                if mode == "generative":
                    rows["plain (rag: false)"] = asyncio.run(
                        load(url, 16, seconds, max_tokens, headers, questions, rag=False))
                rows[f"grounded, answers.mode={mode}"] = asyncio.run(
                    load(url, 16, seconds, max_tokens, headers, questions))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    plain = rows["plain (rag: false)"]
    print("\n| 16 streams, golden questions | answers | errors | answers/s | tokens/s | x plain tokens/s "
          "| latency p50 s | p95 s | x plain p95 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['requests']} | {row['errors']} | {row['answers_per_s']:.2f} | "
              f"{row['tokens_per_s']:.1f} | {row['tokens_per_s'] / plain['tokens_per_s']:.2f} | "
              f"{row['latency_p50_s']:.2f} | {row['latency_p95_s']:.2f} | "
              f"{row['latency_p95_s'] / plain['latency_p95_s']:.2f} |")


def plain_llama_cpp(model_path: str, max_tokens: int, runs: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, n_ctx=2048, n_threads=os.cpu_count(), verbose=False)
    rates, latencies = [], []
    for i in range(runs):
        prompt = llm.tokenizer_.decode(llm.tokenize(b"")) + _chatml(PROMPTS[i % len(PROMPTS)])
        start = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.7)
        elapsed = time.perf_counter() - start
        rates.append(out["usage"]["completion_tokens"] / elapsed)
        latencies.append(elapsed)
    return {"tokens_per_s": statistics.median(rates), "latency_s": statistics.median(latencies)}


def _chatml(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


async def single_latency(url: str, max_tokens: int, runs: int, headers: dict) -> dict:
    async with httpx.AsyncClient(timeout=120, headers=headers) as client:
        results = [await stream_once(client, url, PROMPTS[i % len(PROMPTS)], max_tokens) for i in range(runs)]
    return {
        "tokens_per_s": statistics.median(r["tokens"] / r["total"] for r in results),
        "latency_s": statistics.median(r["total"] for r in results),
        "ttft_ms": 1000 * statistics.median(r["ttft"] for r in results),
    }


async def soak(url: str, proc: subprocess.Popen, seconds: float, max_tokens: int, headers: dict) -> None:
    server = psutil.Process(proc.pid)
    samples = []
    task = asyncio.create_task(load(url, 16, seconds, max_tokens, headers))
    start = time.perf_counter()
    while not task.done():
        samples.append((time.perf_counter() - start, server.memory_info().rss / 2**20))
        await asyncio.sleep(10)
    result = task.result()
    print(f"soak: {seconds:.0f} s at 16 streams: {result['requests']} requests, {result['errors']} errors, "
          f"{result['tokens_per_s']:.1f} tokens/s")
    print("RSS MiB over time: " + ", ".join(f"{t:.0f}s={rss:.0f}" for t, rss in samples))
    warm = [rss for t, rss in samples if t >= 30] or [samples[-1][1]]
    print(f"RSS after warm-up: first {warm[0]:.0f} MiB, last {warm[-1]:.0f} MiB, max {max(warm):.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="duration of each load level")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--soak", type=float, default=0, help="run only a soak of this many seconds")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--grounded", action="store_true", help="run only grounded vs plain at 16 streams")
    args = parser.parse_args()
    if args.grounded:
        with tempfile.TemporaryDirectory() as cache:
            model_path = str(resolve_model_path("", bundled_type="q8_0", cache_dir=Path(cache)))
            print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
                  f"load average {os.getloadavg()[0]:.1f}")
            grounded(model_path, args.port, args.seconds, args.max_tokens)
        return

    with tempfile.TemporaryDirectory() as data_dir:
        model_path = str(resolve_model_path("", bundled_type="q8_0", cache_dir=Path(data_dir) / "models"))
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"{psutil.virtual_memory().total / 2**30:.0f} GiB; model {Path(model_path).name}")
        headers = api_key(data_dir)
        proc = start_server(model_path, args.port, data_dir)
        url = f"http://127.0.0.1:{args.port}"
        try:
            if args.soak:
                asyncio.run(soak(url, proc, args.soak, args.max_tokens, headers))
                return
            single = asyncio.run(single_latency(url, args.max_tokens, 5, headers))
            levels = [asyncio.run(load(url, c, args.seconds, args.max_tokens, headers)) for c in (1, 4, 16)]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        plain = plain_llama_cpp(model_path, args.max_tokens, 5)
        plain_q41 = plain_llama_cpp(str(bundled_model_path()), args.max_tokens, 5)

    base = levels[0]["tokens_per_s"]
    print("\n| concurrency | requests | errors | tokens/s | x single | TTFT p50 ms |")
    print("|---|---|---|---|---|---|")
    for level in levels:
        print(f"| {level['concurrency']} | {level['requests']} | {level['errors']} | "
              f"{level['tokens_per_s']:.1f} | {level['tokens_per_s'] / base:.2f} | {level['ttft_p50_ms']:.0f} |")
    print(f"\nsingle request ({args.max_tokens} max tokens, median of 5): appliance over HTTP "
          f"{single['tokens_per_s']:.1f} tokens/s, {single['latency_s']:.2f} s, TTFT {single['ttft_ms']:.0f} ms")
    print(f"plain llama-cpp-python create_completion, same Q8_0 file: {plain['tokens_per_s']:.1f} tokens/s, "
          f"{plain['latency_s']:.2f} s")
    print(f"plain llama-cpp-python create_completion, shipped Q4_1 file: {plain_q41['tokens_per_s']:.1f} tokens/s, "
          f"{plain_q41['latency_s']:.2f} s")
    print(f"appliance single-stream / plain (same file): {single['tokens_per_s'] / plain['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
