"""The model-version manifest shared by the build and the appliance: `models/<name>/<version>/manifest.json`.

Kept free of torch and numpy: the appliance reads and verifies manifests at import time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


class ManifestError(ApplianceError):
    code = "invalid_manifest"


@dataclass
class FileEntry:
    path: str  # relative to the version folder, always with forward slashes
    sha256: str
    size: int
    role: str = ""  # "gguf", "embedder", "report", ...


@dataclass
class Manifest:
    name: str
    version: str
    files: list[FileEntry]
    recipe: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    # Held-out answer figures per language and answer mode ({"ko": {"extractive": {"good": ...},
    # "generative": {...}}, "en": ...}) as the build measured them: what answers.mode = "auto" reads.
    answer_figures: dict[str, Any] = field(default_factory=dict)
    # The model's verified answers beat quoting the evidence in no language: kept for the record,
    # served extractively.
    extractive_only: bool = False
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    def file(self, role: str) -> FileEntry:
        """The first file with `role`; raises if the version has none."""
        for entry in self.files:
            if entry.role == role:
                return entry
        raise ManifestError(f"Model version {self.name}/{self.version} has no {role!r} file.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(folder: Path, roles: dict[str, str] | None = None) -> list[FileEntry]:
    """Entries for every file under `folder` (except the manifest); `roles` maps a relative path
    or a top-level folder name to its role."""
    roles = roles or {}
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST_NAME:
            continue
        role = roles.get(rel) or roles.get(rel.split("/", 1)[0], "")
        entries.append(FileEntry(rel, sha256_file(path), path.stat().st_size, role))
    return entries


def write(folder: Path, manifest: Manifest) -> Path:
    """Write `manifest.json` into `folder` atomically (temp file, fsync, rename)."""
    if not manifest.created_at:
        manifest.created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    target = folder / MANIFEST_NAME
    tmp = folder / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(manifest.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def read(path: Path) -> Manifest:
    """Load a manifest from a version folder or its `manifest.json`."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(
            f"{path} does not exist; a model version folder needs the manifest.json the build writes."
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        files = [FileEntry(**entry) for entry in raw.pop("files")]
        return Manifest(files=files, **raw)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path} is not a valid model manifest ({exc}); rebuild the version.") from exc


def verify(path: Path) -> Manifest:
    """Check every listed file exists with the recorded size and sha256; raise naming the first bad file."""
    manifest = read(path)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    for entry in manifest.files:
        file_path = folder / entry.path
        if not file_path.is_file():
            raise ManifestError(f"{file_path} is missing; copy the whole version folder again.")
        size = file_path.stat().st_size
        if size != entry.size:
            raise ManifestError(
                f"{file_path} is {size} bytes but the manifest says {entry.size} (truncated copy?); "
                "copy the version folder again."
            )
        if sha256_file(file_path) != entry.sha256:
            raise ManifestError(
                f"{file_path} does not match its sha256 in the manifest (corrupted or edited); "
                "copy the version folder again or rebuild it."
            )
    return manifest


def file_path(folder: Path, role: str, *, check: bool = True) -> Path:
    """The verified path of a version's file with `role` (e.g. "gguf" for engine.model_path)."""
    folder = Path(folder)
    manifest = verify(folder) if check else read(folder)
    return folder / manifest.file(role).path
