"""Build the offline bundle: wheelhouse, selected models, default settings, unit, install scripts, checksums."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from installer import llama_wheel
from installer.checksums import sha256_file, write_sums
from installer.errors import BundleError

INSTALLER_DIR = Path(__file__).resolve().parent
REPO_ROOT = INSTALLER_DIR.parent
TEMPLATES = INSTALLER_DIR / "templates"
BUNDLE_META = "bundle.json"
# Wheels that mean the build-side stack leaked into the runtime (torch pulls CUDA and triton).
# nvidia-ml-py is not one of them: it is the pure-Python NVML binding monitoring reads GPUs with.
FORBIDDEN_WHEELS = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia[_-](?!ml[_-]py-).*)-", re.I)
# What the appliance wheel is built from; everything else in the repo stays out of the copy.
_SKIP_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "*.egg-info",
                                        ".pytest_cache", ".hypothesis")
# Only at the top: appliance/data (the sample knowledge base, the golden set) is package data.
_SKIP_AT_TOP = {"build", "dist", "models", "tests", "data", "var", "node_modules", ".benchmarks",
                ".setuptools-build"}


def source_skip(root: Path):
    """A copytree `ignore` for the appliance's source tree rooted at `root`."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(_SKIP_ANYWHERE(directory, names))
        if Path(directory).resolve() == root.resolve():
            skipped |= _SKIP_AT_TOP & set(names)
        return skipped

    return ignore


@dataclass
class BuiltBundle:
    archive: Path
    sha256: str
    size_bytes: int
    version: str
    seconds: float


def platform_tag() -> str:
    """cp311-linux_x86_64: the wheelhouse holds compiled wheels for one Python and one platform."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{sysconfig.get_platform().replace('-', '_')}"


def read_project(source: Path) -> dict:
    pyproject = source / "pyproject.toml"
    if not pyproject.is_file():
        raise BundleError(f"{pyproject} not found; pass --source with the appliance's project folder.")
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    if "name" not in project or "version" not in project:
        raise BundleError(f"{pyproject} needs a static [project] name and version.")
    return project


def _pip(args: list[str], log_file: Path) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    with log_file.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(True)[-25:])
        raise BundleError(f"pip {args[0]} failed (exit {rc}); last lines of {log_file}:\n{tail}")


def _appliance_wheel(source: Path, version: str | None, wheels: Path, log_file: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="appliance-src-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=source_skip(source))
        if version:
            pyproject = copy / "pyproject.toml"
            text, count = re.subn(r'(?m)^version\s*=\s*"[^"]*"', f'version = "{version}"',
                                  pyproject.read_text(encoding="utf-8"), count=1)
            if count != 1:
                raise BundleError(f"Could not set the version in {source / 'pyproject.toml'}.")
            pyproject.write_text(text, encoding="utf-8")
        before = set(wheels.glob("*.whl"))
        _pip(["wheel", "--no-deps", "--no-cache-dir", "-w", str(wheels), str(copy)], log_file)
    built = sorted(set(wheels.glob("*.whl")) - before)
    if len(built) != 1:
        raise BundleError(f"Expected one appliance wheel from {source}, got {[p.name for p in built]}.")
    return built[0]


def _collect_dependencies(project: dict, appliance: Path, llama: Path, wheels: Path, log_file: Path,
                          *, refresh: bool, log) -> None:
    """Put the wheels of the resolved dependency set of pyproject.toml into `wheels`.

    The resolved set is cached per (dependencies, Python, platform, llama wheel), so a rebuild of
    unchanged dependencies needs no network; `refresh` resolves against the index again.
    """
    key_source = json.dumps([sorted(project.get("dependencies", [])), platform_tag(), str(llama)])
    cached = llama_wheel.cache_root() / "wheelhouse" / hashlib.sha256(key_source.encode()).hexdigest()[:16]
    if refresh or not (cached / ".complete").is_file():
        log("Resolving and downloading the runtime dependencies of pyproject.toml ...")
        with tempfile.TemporaryDirectory(prefix="wheelhouse-") as tmp:
            # The explicit llama wheel wins over PyPI's sdist, so pip never compiles it here.
            _pip(["wheel", "-w", tmp, str(appliance), str(llama)], log_file)
            (Path(tmp) / appliance.name).unlink()
            shutil.rmtree(cached, ignore_errors=True)
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(tmp, cached)
        (cached / ".complete").write_text(key_source + "\n")
    else:
        log(f"Reusing the resolved runtime dependencies from {cached} (--refresh-wheels resolves again).")
    for wheel in cached.glob("*.whl"):
        shutil.copy2(wheel, wheels / wheel.name)
    # Offline proof that the wheelhouse alone satisfies the appliance wheel, as on the server.
    _pip(["install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(wheels),
          "--only-binary", ":all:", "--quiet", str(appliance)], log_file)


def _check_no_torch(wheels: Path) -> None:
    leaked = sorted(p.name for p in wheels.glob("*.whl") if FORBIDDEN_WHEELS.match(p.name))
    if leaked:
        raise BundleError(
            "The runtime wheelhouse must not contain torch or CUDA wheels, but it has: "
            + ", ".join(leaked)
            + ". A runtime dependency in pyproject.toml pulls them in; move it to build/."
        )


def _copy_models(models_dir: Path, selected: list[str], dest: Path) -> list[dict]:
    shipped = []
    for spec in selected:
        name, sep, version = spec.partition("/")
        folder = models_dir / name / version
        if not sep or not name or not version or "/" in version:
            raise BundleError(f"--model {spec!r}: use NAME/VERSION, e.g. --model erp-assistant/1.2.0.")
        if not (folder / "manifest.json").is_file():
            available = sorted(
                f"{m.parent.parent.name}/{m.parent.name}" for m in models_dir.glob("*/*/manifest.json")
            )
            raise BundleError(
                f"Model {spec} not found: {folder / 'manifest.json'} does not exist. "
                f"Available in {models_dir}: {', '.join(available) or 'none (run the build pipeline)'}."
            )
        shutil.copytree(folder, dest / name / version, symlinks=False)
        shipped.append({"name": name, "version": version})
    return shipped


def _render_installer(stage: Path) -> None:
    target = stage / "installer"
    target.mkdir()
    for module in sorted(INSTALLER_DIR.glob("*.py")):
        shutil.copy2(module, target / module.name)
    for launcher in ("install.sh", "upgrade", "uninstall"):
        shutil.copy2(TEMPLATES / launcher, stage / launcher)
        (stage / launcher).chmod(0o755)


def _write_archive(stage: Path, archive: Path) -> None:
    tmp = archive.with_name(f".{archive.name}.tmp")

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(stage, arcname=stage.name, filter=normalise)
    os.replace(tmp, archive)


EMBEDDER_FILES = ("model.onnx", "tokenizer.json", "embedder.json")


def _copy_embedder(folder: Path, dest: Path) -> None:
    """Ship the knowledge base's int8 ONNX embedder, so the installed appliance answers grounded."""
    missing = [name for name in EMBEDDER_FILES if not (folder / name).is_file()]
    if missing:
        raise BundleError(f"{folder} is not an embedder artifact (missing {', '.join(missing)}); "
                          f"create one with `appliance-build embedder --out {folder}`.")
    dest.mkdir(parents=True, exist_ok=True)
    for name in EMBEDDER_FILES:
        shutil.copy2(folder / name, dest / name)


def build(
    out: Path,
    *,
    source: Path = REPO_ROOT,
    models: list[str] = (),
    models_dir: Path | None = None,
    version: str | None = None,
    llama: str | Path = "portable",
    embedder: Path | None = None,
    refresh: bool = False,
    log=print,
) -> BuiltBundle:
    """Build `erp-appliance-<version>-<platform>.tar.gz` (and its .sha256) in `out`.

    `llama`: "portable" (every CPU variant, compiled once per machine), "local" (the build this
    environment runs, for this machine's CPU: tests, servers of the same kind) or a wheel file.
    """
    started = time.monotonic()
    source = source.resolve()
    project = read_project(source)
    version = version or project["version"]
    name = project["name"]
    out.mkdir(parents=True, exist_ok=True)
    log_file = out / f"{name}-{version}-build.log"
    log_file.write_text("")
    llama, llama_build = llama_wheel.choose(
        llama, llama_wheel.pinned_version(project.get("dependencies", [])), log=log
    )

    with tempfile.TemporaryDirectory(prefix="bundle-", dir=out) as tmp:
        stage = Path(tmp) / f"{name}-{version}"
        wheels = stage / "wheels"
        wheels.mkdir(parents=True)
        log(f"Building the {name} {version} wheel from {source} ...")
        appliance = _appliance_wheel(source, version if version != project["version"] else None,
                                     wheels, log_file)
        _collect_dependencies(project, appliance, llama, wheels, log_file, refresh=refresh, log=log)
        _check_no_torch(wheels)
        if not any(wheels.glob("llama_cpp_python-*.whl")):
            raise BundleError("The wheelhouse has no llama-cpp-python wheel; see the build log.")

        shipped = _copy_models((models_dir or source / "models").resolve(), list(models), stage / "models")
        if embedder is not None:
            _copy_embedder(embedder, stage / "models" / "embedder")
        (stage / "config").mkdir()
        shutil.copy2(TEMPLATES / "appliance.toml", stage / "config" / "appliance.toml")
        (stage / "systemd").mkdir()
        shutil.copy2(TEMPLATES / "erp-appliance.service", stage / "systemd" / "erp-appliance.service")
        _render_installer(stage)
        meta = {
            "name": name,
            "version": version,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "platform": platform_tag(),
            "appliance_wheel": appliance.name,
            "llama_cpp_build": llama_build,
            "models": shipped,
            "embedder": embedder is not None,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (stage / BUNDLE_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        write_sums(stage)

        archive = out / f"{name}-{version}-{platform_tag()}.tar.gz"
        log(f"Writing {archive} ...")
        _write_archive(stage, archive)
    digest = sha256_file(archive)
    archive.with_name(archive.name + ".sha256").write_text(f"{digest}  {archive.name}\n")
    return BuiltBundle(archive, digest, archive.stat().st_size, version, time.monotonic() - started)

