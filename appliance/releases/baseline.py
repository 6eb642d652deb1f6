"""The model served before any version (the bundled GGUF, or the one `engine.model_path` names),
registered as a version so that every swap, the first included, has somewhere to go back to.

Its version is derived from the GGUF's sha256 (hashed once per file, see `checksums.py`); its
manifest, written by the appliance under `<data_dir>/models/<name>/<version>/`, points at the
GGUF where it lies instead of copying it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from appliance import manifest as manifests
from appliance.errors import ModelLoadError, NotFound
from appliance.releases.checksums import ChecksumCache
from appliance.releases.registry import (
    BASE_KINDS,
    RESERVED_NAMES,
    ModelVersion,
    Registry,
    manifest_dict,
)
from appliance.settings import Settings

log = logging.getLogger(__name__)

BUNDLED_NAME = "smollm2-135m-instruct"


def served_model(settings: Settings) -> tuple[Path, str]:
    """The GGUF the settings serve when no version is active, and its kind (blocking: the
    bundled model is re-encoded once, on first use)."""
    from appliance.engine.model import resolve_model_path  # loads llama.cpp: only when needed

    configured = settings.engine.model_path
    path = resolve_model_path(settings.resolve(configured) if configured else "",
                              bundled_type=settings.engine.bundled_model_type,
                              cache_dir=bundled_cache_dir(settings))
    return path, "configured" if settings.engine.model_path else "bundled"


def bundled_cache_dir(settings: Settings) -> Path:
    return settings.resolved_data_dir() / "models" / "bundled"


def version_name(path: Path, kind: str) -> str:
    if kind == "bundled":
        return BUNDLED_NAME
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "model"
    return f"{name}-model" if name in RESERVED_NAMES else name


def register(registry: Registry, settings: Settings) -> ModelVersion:
    """Register the served model if it is not yet, and settle which version is active:
    - none was activated: this one is (the appliance keeps serving what it served);
    - another bundled or configured one is: the settings now name this file, so this one is;
    - a built version is: that one stays, and this one is `ready`, a rollback target.
    Blocking (re-encoding, hashing): call it from a worker thread."""
    path, kind = served_model(settings)
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist; check engine.model_path.")
    sha256 = ChecksumCache(registry.db).sha256(path)
    name, version = version_name(path, kind), sha256[:12]
    try:
        record = registry.get(name, version)
    except NotFound:
        record = _add(registry, settings, path, kind, name, version, sha256)
    active = registry.active()
    if active is None or (active.kind in BASE_KINDS and active.key != record.key):
        why = (f"the {_describe(kind)} served before any version was activated" if active is None
               else f"the settings now serve {path} ({_describe(kind)}) instead of {active.key}")
        with registry.db.atomic():
            registry.mark_active(record.name, record.version)
            registry.record("activated", record.name, record.version, actor="system", reason=why,
                            previous=active.key if active else "")
        log.info("registered %s as the active model version: %s", record.key, why)
    elif record.state == "staged":
        # It served before a version replaced it: known good, a target to roll back to.
        registry.set_state(record.name, record.version, "ready")
    return registry.get(record.name, record.version)


def _add(registry: Registry, settings: Settings, path: Path, kind: str, name: str, version: str,
         sha256: str) -> ModelVersion:
    folder = settings.resolved_data_dir() / "models" / name / version
    folder.mkdir(parents=True, exist_ok=True)
    # Relative while the GGUF lies in the data folder (so the folder can move), else absolute.
    try:
        rel = Path(os.path.relpath(path, folder)).as_posix() \
            if path.resolve().is_relative_to(settings.resolved_data_dir().resolve()) else str(path)
    except ValueError:
        rel = str(path)
    manifest = manifests.Manifest(
        name=name, version=version,
        files=[manifests.FileEntry(rel, sha256, path.stat().st_size, "gguf")],
        lineage={"kind": kind, "source": _describe(kind), "gguf": str(path)},
    )
    manifests.write(folder, manifest)
    record = registry.add(name, version, kind=kind, path=str(folder),
                          manifest=manifest_dict(manifest))
    log.info("registered the %s as model version %s (manifest %s)", _describe(kind), record.key,
             folder)
    return record


def _describe(kind: str) -> str:
    return "bundled model" if kind == "bundled" else "model engine.model_path names"


__all__ = ["BASE_KINDS", "BUNDLED_NAME", "register", "served_model"]
