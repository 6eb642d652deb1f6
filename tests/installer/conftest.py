"""Bundles built once per session with the real builder, and a way to run commands without network."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from installer.bundle import REPO_ROOT, build, read_project

BASE_VERSION = read_project(REPO_ROOT)["version"]
# The test bundles ship the llama.cpp build this environment runs, so `./dev test` compiles
# nothing; ERP_TEST_PORTABLE_LLAMA=1 ships (and first compiles) the portable build instead.
PORTABLE_LLAMA = os.environ.get("ERP_TEST_PORTABLE_LLAMA") == "1"
LLAMA = "portable" if PORTABLE_LLAMA else "local"


def netns_problem() -> str | None:
    """Why commands cannot run in a loopback-only network namespace here, or None."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "needs `unshare` (util-linux) and `ip` (iproute2) for the air-gap proof"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace here (unshare -n: {probe.stderr.strip()})"
    return None


def offline(*argv: str | Path, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run argv in a fresh network namespace that has only loopback, so any network use fails."""
    cmd = ["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$@"', "offline", *map(str, argv)]
    # The launchers use $PYTHON: the same interpreter as the tests, whatever `python3` is.
    env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    print(result.stdout, result.stderr, sep="\n")  # the installer's own timings, for `pytest -rP`
    return result


def unpack(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    (folder,) = dest.iterdir()
    return folder


@pytest.fixture(scope="session")
def bundle_out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dist")


@pytest.fixture(scope="session")
def bundle_v1(bundle_out, embedder_dir):
    """The repository as it is, stamped with a test version, shipping the embedder."""
    return build(bundle_out, version=f"{BASE_VERSION}+test.1", embedder=embedder_dir, llama=LLAMA,
                 log=lambda _: None)


@pytest.fixture(scope="session")
def bundle_v2(bundle_out, embedder_dir):
    return build(bundle_out, version=f"{BASE_VERSION}+test.2", embedder=embedder_dir, llama=LLAMA,
                 log=lambda _: None)


def _patched_bundle(out: Path, tmp_path_factory, version: str, module: str, pattern: str, replacement: str):
    """A bundle of the repository with one change to `module`: a deliberately broken version."""
    source = tmp_path_factory.mktemp("broken-src") / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "tests", "build", "dist", "models", "__pycache__", "*.egg-info"))
    path = source / module
    text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.S)
    assert count == 1, f"{module} no longer has {pattern!r}"
    path.write_text(text)
    return build(out, source=source, version=version, llama=LLAMA, log=lambda _: None)


@pytest.fixture(scope="session")
def bundle_ready_500(bundle_out, tmp_path_factory):
    """A newer version whose /ready raises, so it answers HTTP 500 instead of 200 or 503."""
    return _patched_bundle(bundle_out, tmp_path_factory, f"{BASE_VERSION}+test.3",
                           "appliance/server/health.py", r"(    async def ready\(.*?\) -> Response:\n)",
                           r'\1        raise RuntimeError("deliberately broken /ready")\n')


# Written by the tests into the installation's data folder, as the site's own data.
MARKER_FILE = "marker.txt"


@pytest.fixture(scope="session")
def bundle_fails_on_data(bundle_out, tmp_path_factory):
    """A newer version that passes its self-test on a fresh data folder but exits at start on the
    data a site already has, as a failing migration would."""
    return _patched_bundle(bundle_out, tmp_path_factory, f"{BASE_VERSION}+test.4", "appliance/cli.py",
                           r"(\n( +)run_server\(settings\)\n)",
                           rf'\n\2if (settings.resolved_data_dir() / "{MARKER_FILE}").exists():\n'
                           r'\2    raise SystemExit("deliberately fails on data it served before")\1')


@pytest.fixture(scope="session")
def unpacked_v1(bundle_v1, tmp_path_factory) -> Path:
    return unpack(bundle_v1.archive, tmp_path_factory.mktemp("v1"))


def installer_cli(bundle_dir: Path) -> list[str]:
    """The bundle's own installer, as its launchers run it."""
    return [sys.executable, "-s", str(bundle_dir / "installer")]


def portable_variants(wheel: Path) -> bool:
    """Runtime CPU dispatch: a backend for old x86-64 servers and one for AVX2 ones, at least."""
    with zipfile.ZipFile(wheel) as whl:
        variants = [n for n in whl.namelist() if "libggml-cpu-" in n]
    return any("cpu-x64" in n for n in variants) and any("cpu-haswell" in n for n in variants)
