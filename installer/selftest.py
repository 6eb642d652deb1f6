"""Start the installed server exactly as the unit does, on a free loopback port, and ask it one question.

Waiting for readiness ends at once when the server exits or when /ready answers anything but
200 (ready) or 503 (still loading): only a slow start is worth the whole timeout.
"""

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from installer.errors import SelfTestError
from installer.service import ServiceCommand

# Answerable from the sample knowledge base that every fresh install ingests on first start.
QUESTION = "How many hours of overtime are allowed per week?"
# Present in versions that ship the knowledge base; then every answer must carry its sources.
KNOWLEDGE_MODULE = "appliance.knowledge"
# The test server needs the model and the knowledge base, nothing else: monitoring would schedule
# the golden QA run, system samples and alert rules, and send alerts through the site's channels.
BACKGROUND_WORK_OFF = {"APPLIANCE_MONITORING__ENABLED": "false"}

# Waits up to the given seconds for the server to go away; returns why it did, or None.
Watch = Callable[[float], str | None]


class NotReady(Exception):
    """The server will not become ready: it exited, /ready answered an error, or time ran out."""


@dataclass
class SelfTestResult:
    answer: str
    sources_checked: bool
    seconds: float
    ready_seconds: float  # from the start until /ready answered 200: what a restart costs


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
        raw = exc.read() or b"{}"
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"body": raw[:300].decode("utf-8", "replace")}


def wait_ready(base: str, watch: Watch, deadline: float, *, retrieval: bool = False) -> dict:
    """Poll `base`/ready until it answers 200 (with `retrieval`, also until the knowledge base is
    ready) and return its body; raise NotReady as soon as waiting longer cannot help."""
    while True:
        try:
            status, body = _request(f"{base}/ready", timeout=5)
        except (urllib.error.URLError, OSError, ValueError):
            status, body = None, {}  # not listening yet
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        if status == 200:
            state = body.get("retrieval") or {}
            if not retrieval or state.get("status") == "ready":
                return body
            if state.get("status") == "unavailable":
                raise NotReady(f"retrieval is unavailable: {state.get('message')}")
        elif status == 503 and error.get("code") == "model_load_failed":
            raise NotReady(f"the model failed to load: {error.get('message')}")
        elif status is not None and status != 503:
            raise NotReady(f"GET /ready answered HTTP {status}, which is neither ready (200) nor "
                           f"still loading (503): {json.dumps(body)[:300]}")
        if time.monotonic() > deadline:
            what = "its knowledge base" if status == 200 else "it"
            raise NotReady(f"{what} was not ready by the end of the self-test timeout.")
        if (gone := watch(0.5)) is not None:
            raise NotReady(gone)


def watch_process(proc: subprocess.Popen) -> Watch:
    def watch(seconds: float) -> str | None:
        try:
            code = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
        return f"the server exited with code {code} before it was ready."

    return watch


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
        require_grounded: bool = False, data_dir: Path | None = None) -> SelfTestResult:
    """Start the service's command line, wait for /ready, ask one question; raise SelfTestError
    unless the answer is not empty. With `require_grounded` (an embedder is installed) retrieval
    must be ready and the answer grounded. `data_dir` runs it on another data folder than the
    settings name (a scratch one, while the service keeps the real one)."""
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
        **BACKGROUND_WORK_OFF,
        **({"APPLIANCE_DATA_DIR": str(data_dir)} if data_dir is not None else {}),
    }
    want_sources = has_knowledge_base(python)
    where = f" with the data folder {data_dir}" if data_dir is not None else ""
    log(f"Self-test: starting `{' '.join(command.argv)}` on {base}{where} ...")
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
            return SelfTestError(f"Self-test failed after {time.monotonic() - started:.1f} s: {reason}\n"
                                 f"--- server output (last lines) ---\n{tail}")

        try:
            deadline = started + timeout
            try:
                body = wait_ready(base, watch_process(proc), deadline, retrieval=require_grounded)
            except NotReady as exc:
                raise fail(str(exc)) from None
            ready = time.monotonic() - started
            log(f"Self-test: ready after {ready:.1f} s; asking one question ...")
            try:
                status, body = _request(f"{base}/v1/chat/completions", {
                    "model": body.get("model") or "",
                    "messages": [{"role": "user", "content": QUESTION}],
                    "max_tokens": 48,
                    "temperature": 0,
                }, timeout=max(30.0, deadline - time.monotonic()))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise fail(f"POST /v1/chat/completions got no answer ({exc}).") from None
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
    return SelfTestResult(answer, want_sources, time.monotonic() - started, ready)


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
