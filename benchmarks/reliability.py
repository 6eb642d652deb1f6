#!/usr/bin/env python3
"""Reliability figures for the sample appliance: restart time after kill -9 (to /ready with the
knowledge base open), backup time and size while it serves (with and without model files), and
restore time.

Usage: python benchmarks/reliability.py [--embedder DIR] [--restarts 3]
`appliance serve` runs in its own process on a fresh data folder; its first start ingests the
bundled sample knowledge base. Backups run through `appliance backup` while 4 streaming clients
keep the server busy; every client request must succeed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402

from appliance.engine.model import resolve_model_path  # noqa: E402

CACHE = Path(os.environ.get("APPLIANCE_BENCH_CACHE", "~/.cache/erp-appliance-bench")).expanduser()
TEST_CACHE = Path(os.environ.get("APPLIANCE_TEST_CACHE", "~/.cache/erp-appliance-tests")).expanduser()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, data: Path, env: dict):
        self.data, self.env, self.port = data, env, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start and return the seconds until /ready says the model and the knowledge base serve."""
        started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port",
                                      str(self.port), "--data-dir", str(self.data)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("the server exited during start-up")
            try:
                body = httpx.get(f"{self.url}/ready", timeout=5).json()
                if body.get("status") == "ready" and body["retrieval"]["status"] == "ready":
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def cli(env: dict, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def busy(url: str, stop: threading.Event, results: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=120) as http:
        i = 0
        while not stop.is_set():
            body = {"model": "default", "stream": True, "max_tokens": 32, "temperature": 0.7, "seed": i,
                    "messages": [{"role": "user", "content": f"How do I approve purchase order {i}?"}]}
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                text = response.read().decode()
                results.append(200 if response.status_code == 200 and '"error"' not in text else 500)
            i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default=str(TEST_CACHE / "embedder"), help="embedder artifact folder")
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reliability-"))
    data = root / "data"
    # Laid out as an installed appliance: the embedder and the re-encoded bundled model live in
    # <data>/models (copied in rather than re-encoded, which would only add minutes).
    model = resolve_model_path("", bundled_type="q8_0", cache_dir=CACHE)
    (data / "models" / "bundled").mkdir(parents=True)
    shutil.copy(model, data / "models" / "bundled" / model.name)
    shutil.copytree(args.embedder, data / "models" / "embedder")
    env = {**os.environ, "APPLIANCE_AUTH__ENABLED": "false", "APPLIANCE_LOG_LEVEL": "warning",
           "APPLIANCE_MONITORING__GOLDEN_INTERVAL_HOURS": "0"}
    server = Server(data, env)
    first = server.start()
    print(f"first start (ingests the sample knowledge base): {first:.1f} s")
    restarts = []
    for _ in range(args.restarts):
        server.kill()
        restarts.append(server.start())
    print(f"restart after kill -9, to ready: median {statistics.median(restarts):.1f} s "
          f"(runs: {', '.join(f'{r:.1f}' for r in restarts)})")

    stop, results = threading.Event(), []
    clients = [threading.Thread(target=busy, args=(server.url, stop, results)) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(2)
    plain = cli(env, "backup", "--out", str(root / "plain.tar.gz"), "--data-dir", str(data))
    with_models = cli(env, "backup", "--out", str(root / "full.tar.gz"), "--with-models",
                      "--data-dir", str(data))
    stop.set()
    for client in clients:
        client.join()
    failed = sum(1 for status in results if status != 200)
    restore = cli(env, "restore", str(root / "plain.tar.gz"), "--data-dir", str(root / "restored"))
    server.stop()
    size = lambda name: (root / name).stat().st_size / 2**20  # noqa: E731
    total = lambda folder: sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20  # noqa: E731
    print(f"data folder: {total(data):.1f} MiB, of which models/ (embedder, bundled model) "
          f"{total(data / 'models'):.1f} MiB")
    print("| what | seconds | size |")
    print("|---|---|---|")
    print(f"| `appliance backup` while 4 streams run | {plain:.1f} | {size('plain.tar.gz'):.1f} MiB |")
    print(f"| `appliance backup --with-models` | {with_models:.1f} | {size('full.tar.gz'):.1f} MiB |")
    print(f"| `appliance restore` (without models) | {restore:.1f} | |")
    print(f"requests during the backups: {len(results)}, failed: {failed}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
