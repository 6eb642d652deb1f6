"""Start the installed server exactly as the unit does, on a free loopback port, and ask it one question."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from installer.errors import SelfTestError
from installer.service import ServiceCommand

# Answerable from the sample knowledge base that every fresh install ingests on first start.
QUESTION = "How many hours of overtime are allowed per week?"
# Present in versions that ship the knowledge base; then every answer must carry its sources.
KNOWLEDGE_MODULE = "appliance.knowledge"


@dataclass
class SelfTestResult:
    answer: str
    sources_checked: bool
    seconds: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, body: dict | None = None, timeout: float = 10) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def has_knowledge_base(python: Path) -> bool:
    probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({KNOWLEDGE_MODULE!r}) else 1)"
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def _run_as(user: str | None) -> dict:
    """Run as the service user when we are root and it exists (a real install), else as ourselves."""
    if not user or os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def run(command: ServiceCommand, *, python: Path, timeout: float = 600, log=print,
        require_grounded: bool = False) -> SelfTestResult:
    """Start the service's command line, wait for /ready, ask one question. With
    `require_grounded` (an embedder is installed) retrieval must be ready and the answer grounded."""
    """Raise SelfTestError unless the server becomes ready and gives a non-empty answer."""
    started = time.monotonic()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": command.working_directory or "/",
        **command.environment,
        # Env beats the config file, so the test server never collides with the running service.
        "APPLIANCE_SERVER__HOST": "127.0.0.1",
        "APPLIANCE_SERVER__PORT": str(port),
        # A fresh install has no users or keys yet; this private loopback server, alive for the
        # test only, answers without them. The service keeps its own setting (auth on).
        "APPLIANCE_AUTH__ENABLED": "false",
    }
    want_sources = has_knowledge_base(python)
    log(f"Self-test: starting `{' '.join(command.argv)}` on {base} ...")
    with tempfile.TemporaryFile(mode="w+") as output:
        run_as = _run_as(command.user)
        try:
            proc = subprocess.Popen(command.argv, env=env, cwd=command.working_directory, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True, **run_as)
        except OSError as exc:
            who = f"the service user {command.user}" if run_as else "the installer"
            raise SelfTestError(
                f"Self-test failed: cannot start {command.argv[0]} ({exc}). {who} must be able to read "
                f"and run it and the Python its virtual environment uses ({sys.executable}); "
                "install with a system-wide python3 (PYTHON=/usr/bin/python3)."
            ) from exc

        def fail(reason: str) -> SelfTestError:
            output.seek(0)
            tail = "".join(output.readlines()[-30:])
            return SelfTestError(f"Self-test failed: {reason}\n--- server output (last lines) ---\n{tail}")

        try:
            deadline = started + timeout
            model = None
            while model is None:
                if proc.poll() is not None:
                    raise fail(f"the server exited with code {proc.returncode} before it was ready.")
                if time.monotonic() > deadline:
                    raise fail(f"the server was not ready within {timeout:.0f} s.")
                try:
                    status, body = _request(f"{base}/ready", timeout=5)
                    if status == 200:
                        model = body.get("model") or ""
                except (urllib.error.URLError, OSError, ValueError):
                    pass
                time.sleep(0.5)
            while require_grounded:  # first start ingests the sample knowledge base
                retrieval = (_request(f"{base}/ready", timeout=5)[1].get("retrieval") or {})
                if retrieval.get("status") == "ready":
                    break
                if retrieval.get("status") == "unavailable":
                    raise fail(f"retrieval is unavailable: {retrieval.get('message')}")
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise fail(f"retrieval was not ready within {timeout:.0f} s ({retrieval}).")
                time.sleep(0.5)
            log(f"Self-test: ready after {time.monotonic() - started:.1f} s; asking one question ...")
            status, body = _request(f"{base}/v1/chat/completions", {
                "model": model,
                "messages": [{"role": "user", "content": QUESTION}],
                "max_tokens": 48,
                "temperature": 0,
            }, timeout=max(30.0, deadline - time.monotonic()))
            if status != 200:
                raise fail(f"POST /v1/chat/completions answered HTTP {status}: {body}")
            try:
                answer = (body["choices"][0]["message"]["content"] or "").strip()
            except (KeyError, IndexError, TypeError):
                raise fail(f"the chat response has no choices[0].message.content: {body}")
            if not answer:
                raise fail("the model gave an empty answer.")
            if want_sources and "sources" not in body:
                raise fail("this version has a knowledge base, but the answer carries no `sources`.")
            if require_grounded and not (body.get("grounded") and body.get("sources")):
                raise fail(f"the answer is not grounded in the knowledge base: {body.get('retrieval_notice')}")
        finally:
            _stop(proc)
    ocr = ocr_availability(python, env, run_as)
    if ocr:
        log(f"Self-test: {ocr}")
    return SelfTestResult(answer, want_sources, time.monotonic() - started)


def ocr_availability(python: Path, env: dict, run_as: dict) -> str | None:
    """The installed version's line on OCR of scanned documents; None for versions without it."""
    probe = "from appliance.knowledge.ocr import availability; print(availability())"
    try:
        done = subprocess.run([str(python), "-c", probe], env=env, capture_output=True, text=True,
                              timeout=60, **run_as)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
