"""The llama-cpp-python wheel the bundle ships: a portable build (compiled once, then cached) for
customers' servers, or the build this environment already runs (`local`) for tests and servers of
the build machine's kind."""

from __future__ import annotations

import csv
import fcntl
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
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


def choose(spec: str | Path, version: str, *, log=print) -> tuple[Path, str]:
    """The wheel for `--llama-wheel`: "portable", "local" or a wheel file; and how it was built."""
    if str(spec) == "portable":
        return portable_wheel(version, log=log), f"portable ({PORTABLE_CMAKE_ARGS})"
    if str(spec) == "local":
        return local_wheel(version, log=log), "local (this environment's build, for its CPU)"
    path = Path(spec)
    if not path.is_file() or not path.name.startswith("llama_cpp_python-"):
        raise BundleError(f"--llama-wheel {spec}: use portable, local, or a llama_cpp_python-*.whl file.")
    return path, f"given ({path.name})"


def portable_wheel(version: str, cmake_args: str = PORTABLE_CMAKE_ARGS, *, log=print) -> Path:
    """Return the cached portable wheel for `version`, compiling it first if needed (minutes)."""
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


def local_wheel(version: str, *, log=print) -> Path:
    """The wheel of the llama-cpp-python this Python runs: pip's cached build of it when the cache
    still holds that very build, else the installed files packed into a wheel again (seconds)."""
    try:
        dist = importlib.metadata.distribution("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise BundleError(f"llama-cpp-python is not installed for {sys.executable}; run the build with "
                          "the project's environment (.venv/bin/python -m installer build), or use "
                          "--llama-wheel portable.") from None
    if dist.version != version:
        raise BundleError(f"This environment runs llama-cpp-python {dist.version}, but pyproject.toml "
                          f"pins {version}: run ./dev setup first, or use --llama-wheel portable.")
    installed = _hashes(dist.read_text("RECORD") or "")
    for cached in _pip_cached_wheels(version):
        with zipfile.ZipFile(cached) as whl:
            record = next((n for n in whl.namelist() if n.endswith(".dist-info/RECORD")), None)
            if record and _hashes(whl.read(record).decode()) == installed:
                return cached
    return _repack(dist, installed, log=log)


def _hashes(record: str) -> dict[str, str]:
    """Path -> hash of a RECORD's package files; pip adds the metadata of the install itself."""
    return {row[0]: row[1] for row in csv.reader(io.StringIO(record))
            if len(row) >= 2 and row[1] and ".dist-info/" not in row[0]}


def _pip_cached_wheels(version: str) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "cache", "list", "llama_cpp_python", "--format=abspath"]
    out = subprocess.run(cmd, capture_output=True, text=True)  # fails when pip's cache is off
    names = (Path(line.strip()) for line in out.stdout.splitlines() if line.strip()) if out.returncode == 0 else ()
    return sorted(p for p in names if p.name.startswith(f"llama_cpp_python-{version}-") and p.is_file())


# What an installer adds to a distribution's metadata; the wheel's own RECORD is written anew.
_INSTALL_METADATA = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}


def _repack(dist: importlib.metadata.Distribution, installed: dict[str, str], *, log) -> Path:
    from wheel.wheelfile import WheelFile  # build side only: the bundle's installer never packs

    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if len(tags) != 1:
        raise BundleError(f"Cannot pack the installed llama-cpp-python again (WHEEL tags {tags}); "
                          "use --llama-wheel portable or a wheel file.")
    digest = hashlib.sha256(repr(sorted(installed.items())).encode()).hexdigest()[:12]
    folder = cache_root() / "llama-cpp-python" / f"{dist.version}-local-{digest}"
    wheel = folder / f"llama_cpp_python-{dist.version}-{tags[0]}.whl"
    if wheel.is_file():
        return wheel
    log(f"Packing the installed llama-cpp-python {dist.version} into {wheel} ...")
    folder.mkdir(parents=True, exist_ok=True)
    data = f"llama_cpp_python-{dist.version}.data"
    # Written under its own name (WheelFile reads the tags from it), then renamed into place.
    with tempfile.TemporaryDirectory(prefix=".pack-", dir=folder) as tmp:
        packed = Path(tmp) / wheel.name
        with WheelFile(packed, "w") as out:
            for file in dist.files or ():
                parts = file.parts
                if "__pycache__" in parts or (parts[0].endswith(".dist-info") and parts[-1] in _INSTALL_METADATA):
                    continue
                source = Path(file.locate()).resolve()
                if parts[0] == "..":  # outside site-packages: the wheel's data scheme, under sys.prefix
                    arcname = f"{data}/data/{source.relative_to(Path(sys.prefix).resolve()).as_posix()}"
                else:
                    arcname = file.as_posix()
                out.write(str(source), arcname)
        os.replace(packed, wheel)
    return wheel
