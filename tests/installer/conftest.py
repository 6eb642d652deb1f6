"""Bundles built once per session with the real builder, and a way to run commands without network."""

from __future__ import annotations

import os
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


def offline(*argv: str | Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run argv in a fresh network namespace that has only loopback, so any network use fails."""
    cmd = ["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$@"', "offline", *map(str, argv)]
    # The launchers use $PYTHON: the same interpreter as the tests, whatever `python3` is.
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


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


@pytest.fixture(scope="session")
def bundle_broken(bundle_out, tmp_path_factory):
    """A newer version whose server exits at start, so its self-test must fail."""
    source = tmp_path_factory.mktemp("broken-src") / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "tests", "build", "dist", "models", "__pycache__", "*.egg-info"))
    cli = source / "appliance" / "cli.py"
    text = cli.read_text()
    assert "        run_server(settings)\n" in text
    cli.write_text(text.replace("        run_server(settings)\n",
                                "        raise SystemExit('deliberately broken build')\n"))
    return build(bundle_out, source=source, version=f"{BASE_VERSION}+test.3", llama=LLAMA,
                 log=lambda _: None)


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
