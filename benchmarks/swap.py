#!/usr/bin/env python3
"""Model-swap benchmark: swap duration, peak RSS during the swap, and requests failed during it,
under N concurrent streaming clients against the real server.

Usage: python benchmarks/swap.py [--streams 16] [--swaps 2] [--max-tokens 32]
Two versions are made from the bundled model (re-encoded to Q8_0 and Q4_0) in a temp folder;
the server swaps between them through POST /api/models/{name}/{version}/activate (a background
job, followed until the replaced model has drained).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import psutil  # noqa: E402
import uvicorn  # noqa: E402

from appliance import manifest as manifests  # noqa: E402
from appliance.engine.model import bundled_model_path, resolve_model_path  # noqa: E402
from appliance.engine.quantize import quantize  # noqa: E402
from appliance.releases import ReleaseManager  # noqa: E402
from appliance.server.app import create_app  # noqa: E402
from appliance.settings import Settings  # noqa: E402

CACHE = Path(os.environ.get("APPLIANCE_BENCH_CACHE", "~/.cache/erp-appliance-bench")).expanduser()


def make_versions(models_dir: Path) -> list[str]:
    q8 = resolve_model_path("", bundled_type="q8_0", cache_dir=CACHE)
    q4 = CACHE / "SmolLM2-135M-Instruct.Q4_0.gguf"
    if not q4.exists():
        quantize(bundled_model_path(), q4, "q4_0")
    refs = []
    for version, gguf in (("q8", q8), ("q4", q4)):
        folder = models_dir / "erp" / version
        folder.mkdir(parents=True)
        os.link(gguf, folder / "model.gguf")
        manifests.write(folder, manifests.Manifest(
            name="erp", version=version, files=manifests.describe_files(folder, {"model.gguf": "gguf"})))
        refs.append(f"erp/{version}")
    return refs


class RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), self.process.memory_info().rss))
            time.sleep(self.interval)

    def peak(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def stream(client: httpx.Client, url: str, max_tokens: int) -> dict:
    body = {"model": "default", "stream": True, "max_tokens": max_tokens, "temperature": 0.8,
            "messages": [{"role": "user", "content": "How do I post a goods receipt?"}]}
    started = time.monotonic()
    fingerprints, ok = set(), False
    error = None
    try:
        with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
            if response.status_code != 200:
                error = f"HTTP {response.status_code}"
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    ok = error is None
                elif line.startswith("data: "):
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        error = chunk["error"]["message"]
                    else:
                        fingerprints.add(chunk["system_fingerprint"])
    except httpx.HTTPError as exc:
        error = repr(exc)
    return {"start": started, "end": time.monotonic(), "ok": ok and not error, "error": error,
            "fingerprints": fingerprints}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--swaps", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = Settings(data_dir=tmp / "data")
        settings.releases.models_dir = str(tmp / "models")
        settings.releases.probation_seconds = 0
        settings.engine.slots = args.streams
        settings.engine.max_request_tokens = 512
        settings.server.drain_seconds = 120
        settings.auth.enabled = False  # what is measured is the swap, not authentication
        refs = make_versions(tmp / "models")
        manager = ReleaseManager(settings)
        manager.registry.scan()
        for ref in refs:
            manager.registry.set_state(*ref.split("/"), "ready")
        manager.registry.mark_active(*refs[0].split("/"))
        manager.close()

        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        url = f"http://127.0.0.1:{args.port}"
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

        sampler = RssSampler()
        sampler.start()
        results: list[dict] = []
        stop = threading.Event()

        def client_loop() -> None:
            with httpx.Client() as client:
                while not stop.is_set():
                    results.append(stream(client, url, args.max_tokens))

        threads = [threading.Thread(target=client_loop) for _ in range(args.streams)]
        for thread in threads:
            thread.start()
        time.sleep(5)
        baseline_rss = sampler.peak(time.monotonic() - 5, time.monotonic())
        swaps = []
        for i in range(args.swaps):
            target = refs[(i + 1) % len(refs)]
            name, version = target.split("/")
            t0 = time.monotonic()
            response = httpx.post(f"{url}/api/models/{name}/{version}/activate", json={"reason": "benchmark"},
                                  timeout=60)
            response.raise_for_status()
            job = response.json()["version"]["activation"]
            while job.get("running"):  # a background job: follow it until the old model has drained
                time.sleep(0.05)
                job = httpx.get(f"{url}/api/models/{name}/{version}", timeout=60).json()["activation"]
            t1 = time.monotonic()
            if not job.get("ok"):
                raise SystemExit(f"the activation of {target} failed: {job.get('reason')}")
            during = [r for r in results if r["end"] >= t0 and r["start"] <= t1]
            swaps.append({
                "to": target, **job["swap"], "wall_seconds": t1 - t0,
                "peak_rss_mib": sampler.peak(t0, t1) / 2**20,
                "requests_during": len(during), "failed_during": sum(1 for r in during if not r["ok"]),
            })
            time.sleep(5)
        stop.set()
        for thread in threads:
            thread.join()
        sampler.stop.set()
        server.should_exit = True

        report = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                       f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, load average "
                       f"{os.getloadavg()[0]:.1f}",
            "streams": args.streams, "max_tokens": args.max_tokens,
            "baseline_rss_mib": baseline_rss / 2**20,
            "requests_total": len(results),
            "requests_failed": sum(1 for r in results if not r["ok"]),
            "responses_mixing_versions": sum(1 for r in results if len(r["fingerprints"]) > 1),
            "first_errors": [r["error"] for r in results if r["error"]][:3],
            "swaps": swaps,
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
