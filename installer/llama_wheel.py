"""The llama-cpp-python wheel the bundle ships: compiled once for a portable x86-64 baseline, then cached."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from installer.errors import BundleError

# Runtime CPU dispatch: one CPU backend per instruction-set level (SSE4.2 ... AVX-512, AMX) is
# built as a loadable module and llama.cpp picks the best one the server's CPU supports.
# OpenMP off: the wheel must not depend on the build machine's libgomp. Multimodal (mtmd) off:
# the appliance serves text only, and it halves the compile.
PORTABLE_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_OPENMP=OFF "
    "-DLLAVA_BUILD=OFF -DCMAKE_INSTALL_BINDIR=llama_cpp/lib"
)


def cache_root() -> Path:
    return Path(os.environ.get("ERP_INSTALLER_CACHE", "~/.cache/erp-appliance-installer")).expanduser()


def cache_key(version: str, cmake_args: str) -> str:
    return f"{version}-{hashlib.sha256(f'{version}|{cmake_args}'.encode()).hexdigest()[:12]}"


def pinned_version(requirements: list[str]) -> str:
    """The exact llama-cpp-python version the project pins (the wheel is compiled for it)."""
    for req in requirements:
        match = re.fullmatch(r"\s*llama[-_.]cpp[-_.]python\s*==\s*([\w.+-]+)\s*", req, re.I)
        if match:
            return match.group(1)
    raise BundleError(
        "pyproject.toml must pin llama-cpp-python exactly (llama-cpp-python==X.Y.Z): the bundle "
        "ships a wheel compiled for one version."
    )


def portable_wheel(version: str, cmake_args: str = PORTABLE_CMAKE_ARGS, *, log=print) -> Path:
    """Return the cached portable wheel for `version`, compiling it first if needed (minutes).

    $ERP_INSTALLER_LLAMA_WHEEL names a wheel built elsewhere (a CI artifact) to use instead.
    """
    if given := os.environ.get("ERP_INSTALLER_LLAMA_WHEEL"):
        if not Path(given).is_file():
            raise BundleError(f"ERP_INSTALLER_LLAMA_WHEEL={given} does not exist.")
        return Path(given)
    folder = cache_root() / "llama-cpp-python" / cache_key(version, cmake_args)
    folder.mkdir(parents=True, exist_ok=True)
    # One compile at a time on this machine: a second builder waits for the first one's wheel.
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(folder.glob("llama_cpp_python-*.whl"))
        if found:
            return found[0]
        log(f"Compiling llama-cpp-python {version} for a portable CPU baseline "
            f"(5-30 minutes; cached in {folder} afterwards)...")
        with tempfile.TemporaryDirectory(prefix="llama-wheel-") as tmp:
            env = {**os.environ, "CMAKE_ARGS": cmake_args}
            env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
            # --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and could hand back a native build.
            cmd = [sys.executable, "-m", "pip", "wheel", f"llama-cpp-python=={version}", "--no-deps",
                   "--no-binary", "llama-cpp-python", "--no-cache-dir", "-w", tmp]
            with open(folder / "build.log", "w") as out:
                rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
            built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
            if rc != 0 or not built:
                raise BundleError(f"Compiling llama-cpp-python {version} failed; see {folder / 'build.log'}.")
            shutil.move(str(built[0]), folder / built[0].name)
            (folder / "cmake-args.txt").write_text(cmake_args + "\n")
        return folder / built[0].name
