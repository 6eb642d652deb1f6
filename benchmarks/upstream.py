"""Added latency of the appliance in front of an OpenAI-compatible upstream.

Method: `python -m llama_cpp.server` serves the bundled model (re-encoded to Q8_0) on loopback as
the upstream; `appliance serve` runs in front of it with `llm.backend = "openai"`, the response
cache off and retrieval off (`"rag": false`), so the difference is the appliance's own work
(authenticating the API key, parsing, validation, proxying the stream, metrics). Each round
sends the same non-streaming request (1 completion token, temperature 0) once directly to the
upstream and once through the appliance, in alternating order; the figure is the median of the
per-round differences.

    python benchmarks/upstream.py --rounds 60
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.accounts import Accounts  # noqa: E402
from appliance.engine.model import resolve_model_path  # noqa: E402

MODEL = "bench-upstream"


def wait(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[2]} exited with {proc.returncode}")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        model = str(resolve_model_path("", bundled_type="q8_0", cache_dir=Path(data_dir) / "models"))
        upstream = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parents[1] / "tests" / "llama_server.py"), "--model", model, "--model_alias", MODEL,
             "--host", "127.0.0.1", "--port", "8771", "--n_ctx", "1024", "--verbose", "False"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {**os.environ, "APPLIANCE_LLM__BACKEND": "openai",
               "APPLIANCE_LLM__UPSTREAM__BASE_URL": "http://127.0.0.1:8771/v1",
               "APPLIANCE_LLM__UPSTREAM__MODEL": MODEL, "APPLIANCE_CACHE__ENABLED": "false",
               "APPLIANCE_KNOWLEDGE__ENABLED": "false", "APPLIANCE_LOG_LEVEL": "warning"}
        # Auth stays on, as in production: the appliance's requests carry an API key.
        accounts = Accounts(Path(data_dir) / "accounts.db")
        secret = accounts.create_key(accounts.create_user("benchmark", None).id, "upstream benchmark")[0]
        accounts.close()
        appliance = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port", "8772",
                                      "--data-dir", data_dir], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait("http://127.0.0.1:8771/v1/models", upstream)
            wait("http://127.0.0.1:8772/ready", appliance)
            body = {"model": MODEL, "max_tokens": 1, "temperature": 0, "rag": False,
                    "messages": [{"role": "user", "content": "Say yes."}]}
            direct, proxied = [], []
            with httpx.Client(timeout=60) as client:
                def timed(url: str) -> float:
                    headers = {"Authorization": f"Bearer {secret}"} if ":8772/" in url else {}
                    start = time.perf_counter()
                    response = client.post(url, json=body, headers=headers)
                    response.raise_for_status()
                    return time.perf_counter() - start

                for _ in range(5):  # warm both paths
                    timed("http://127.0.0.1:8771/v1/chat/completions")
                    timed("http://127.0.0.1:8772/v1/chat/completions")
                for i in range(args.rounds):
                    order = [("d", "http://127.0.0.1:8771"), ("a", "http://127.0.0.1:8772")]
                    for kind, base in order if i % 2 == 0 else order[::-1]:
                        (direct if kind == "d" else proxied).append(timed(f"{base}/v1/chat/completions"))
        finally:
            appliance.terminate()
            upstream.terminate()
            appliance.wait(timeout=60)
            upstream.wait(timeout=60)
    added = [1000 * (a - d) for a, d in zip(proxied, direct)]
    print(f"rounds: {args.rounds}; direct median {1000 * statistics.median(direct):.1f} ms, "
          f"through the appliance median {1000 * statistics.median(proxied):.1f} ms")
    print(f"added latency per request: median {statistics.median(added):.2f} ms, "
          f"p90 {sorted(added)[int(0.9 * len(added))]:.2f} ms")


if __name__ == "__main__":
    main()
