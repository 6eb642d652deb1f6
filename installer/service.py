"""The systemd unit: render it for a layout, read back what ExecStart runs, and drive systemctl when present."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from installer.layout import SERVICE_USER, UNIT_NAME, Layout


@dataclass
class ServiceCommand:
    argv: list[str]
    environment: dict[str, str]
    user: str | None
    working_directory: str | None


def render_unit(template: str, layout: Layout, *, user: str = SERVICE_USER, memory_max: str | None = None) -> str:
    text = layout.rewrite(template)
    text = re.sub(r"(?m)^(User|Group)=.*$", lambda m: f"{m.group(1)}={user}", text)
    if memory_max:
        if not re.fullmatch(r"\d+[KMGT]?|\d+%|infinity", memory_max):
            raise ValueError(f"--memory-max {memory_max!r}: use a size like 8G, 6144M or 50%.")
        text = re.sub(r"(?m)^MemoryMax=.*$", f"MemoryMax={memory_max}", text)
    return text


def unit_value(text: str, key: str) -> str | None:
    found = re.findall(rf"(?m)^{key}=(.*)$", text)
    return found[-1].strip() if found else None


def service_command(unit_text: str) -> ServiceCommand:
    """The process systemd would start for this unit: ExecStart, Environment=, User=."""
    exec_start = unit_value(unit_text, "ExecStart")
    if not exec_start:
        raise ValueError("The unit has no ExecStart line.")
    env: dict[str, str] = {}
    for line in re.findall(r"(?m)^Environment=(.*)$", unit_text):
        for item in shlex.split(line):
            key, _, value = item.partition("=")
            env[key] = value
    return ServiceCommand(shlex.split(exec_start.lstrip("-@+!")), env, unit_value(unit_text, "User"),
                          unit_value(unit_text, "WorkingDirectory"))


def systemd_running(layout: Layout) -> bool:
    """Only a real install (prefix /) on a host booted with systemd talks to systemctl."""
    return layout.prefix == Path("/") and Path("/run/systemd/system").is_dir() and bool(shutil.which("systemctl"))


def systemctl(*args: str) -> None:
    subprocess.run(["systemctl", *args], check=True)


def stop(layout: Layout) -> None:
    """Stop the service (it drains in-flight requests for up to server.drain_seconds)."""
    if systemd_running(layout):
        subprocess.run(["systemctl", "stop", UNIT_NAME], check=False)


def start(layout: Layout) -> None:
    """Enable the unit and (re)start it: a running service stops (drains) first."""
    if systemd_running(layout):
        systemctl("daemon-reload")
        systemctl("enable", UNIT_NAME)
        systemctl("restart", UNIT_NAME)  # starts a stopped unit; one start, not `enable --now` and another


def remove(layout: Layout) -> None:
    if systemd_running(layout):
        subprocess.run(["systemctl", "disable", "--now", UNIT_NAME], check=False)
    layout.unit.unlink(missing_ok=True)
    if systemd_running(layout):
        subprocess.run(["systemctl", "daemon-reload"], check=False)


def local_url(layout: Layout) -> str:
    """Where the service answers on this machine: [server] host and port of the settings file, or
    the unit's APPLIANCE_SERVER__* environment (drop-ins are not read)."""
    try:
        server = tomllib.loads(layout.config.read_text(encoding="utf-8")).get("server", {})
    except (OSError, tomllib.TOMLDecodeError):
        server = {}
    env = service_command(layout.unit.read_text(encoding="utf-8")).environment
    host = env.get("APPLIANCE_SERVER__HOST", server.get("host", "127.0.0.1"))
    port = env.get("APPLIANCE_SERVER__PORT", server.get("port", 8080))
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _unit_state() -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", UNIT_NAME, "-p", "ActiveState", "-p", "SubState",
                          "-p", "NRestarts", "-p", "ExecMainStatus"], capture_output=True, text=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def watch_unit() -> Callable[[float], str | None]:
    """Waits on the (re)started service: says why it went down (it exited, so systemd restarts or
    gave up on it), or None while it runs."""
    restarts = _unit_state().get("NRestarts")

    def watch(seconds: float) -> str | None:
        time.sleep(seconds)
        state = _unit_state()
        if (state.get("ActiveState") in ("failed", "inactive", "deactivating")
                or state.get("SubState") == "auto-restart" or state.get("NRestarts") != restarts):
            return (f"the service stopped ({state.get('ActiveState')}/{state.get('SubState')}, exit "
                    f"status {state.get('ExecMainStatus')}); `journalctl -u {UNIT_NAME}` has its output.")
        return None

    return watch
