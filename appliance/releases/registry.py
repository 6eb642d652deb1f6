"""Model versions known to this appliance, their states, and the append-only history of changes.

SQLite (WAL) through sqlite-utils; the version folders themselves live under `releases.models_dir`
(by default `<data_dir>/models`), and the registry records each folder's absolute path.
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance import manifest as manifests
from appliance.database import Database
from appliance.errors import ApplianceError, InvalidRequest, NotFound
from appliance.releases.migrations import migrate

STATES = ("staged", "validating", "ready", "activating", "active", "failed", "retired")
# What a version may become next; activation needs a passed validation (or an explicit force).
ACTIVATABLE = ("ready", "active")
GGUF_ROLES = ("gguf", "llm")
UPSTREAM = "upstream"
# The model served before any version, registered at first start: the bundled GGUF, or the one
# engine.model_path names. Served from its GGUF like a built version ("local").
BASE_KINDS = ("bundled", "configured")
LOCAL_KINDS = ("local", *BASE_KINDS)
# Folders of <data_dir>/models the appliance uses for other things than versions.
RESERVED_NAMES = ("bundled", "embedder")

log = logging.getLogger(__name__)


class ReleaseError(ApplianceError):
    status = 409
    code = "release_conflict"
    kind = "invalid_request_error"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class ModelVersion:
    name: str
    version: str
    kind: str  # "local" (a built version folder), "bundled" / "configured" (the model served before
    # any version, with a manifest the appliance wrote) or "upstream" (a model name upstream)
    path: str
    state: str
    manifest: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    created_at: str = ""
    updated_at: str = ""
    activation: dict[str, Any] = field(default_factory=dict)  # the running or last activation job

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"

    def file_path(self, roles: tuple[str, ...]) -> Path | None:
        for entry in self.manifest.get("files", []):
            if entry.get("role") in roles:
                return Path(self.path) / entry["path"]
        return None

    @property
    def gguf_path(self) -> Path:
        found = self.file_path(GGUF_ROLES)
        if found is None:
            raise ReleaseError(f"Model version {self.key} has no GGUF file (role 'gguf') in its manifest.")
        return found

    @property
    def embedder_sha256(self) -> str:
        """One fingerprint for the embedder folder: its files' hashes, in path order."""
        hashes = sorted((e["path"], e["sha256"]) for e in self.manifest.get("files", [])
                        if e.get("role") == "embedder")
        return "|".join(h for _, h in hashes)

    @property
    def embedder_path(self) -> Path | None:
        first = self.file_path(("embedder",))
        if first is None:
            return None
        top = Path(self.manifest_file_rel(first)).parts[0]
        return Path(self.path) / top

    def manifest_file_rel(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "kind": self.kind, "path": self.path,
            "state": self.state, "reason": self.reason, "validation": self.validation,
            "activation": self.activation, "metrics": self.manifest.get("metrics", {}),
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


class Registry:
    """The versions table, the history table and the schedules table of one SQLite file."""

    def __init__(self, db_path: Path, models_dir: Path):
        self.db_path = Path(db_path)
        self.models_dir = Path(models_dir)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        # Used from the event loop and from worker threads: a connection per thread, writes in
        # IMMEDIATE transactions (`self.db.atomic()` is one; see appliance.database).
        self.db = Database(self.db_path)
        migrate(self.db)
        self._settle_relative_paths()

    def close(self) -> None:
        self.db.close()

    def _settle_relative_paths(self) -> None:
        """Versions recorded with a relative path get the absolute path of their folder. Such
        paths were relative to the working directory of whoever imported them (before models_dir
        was read from the data folder): the folder is looked for in the data folder first, where
        the default models_dir now puts it, then where the working directory puts it."""
        rows = list(self.db["model_versions"].rows_where("path != '' and path not like '/%'"))
        for row in rows:
            recorded = Path(row["path"]).expanduser()
            if recorded.is_absolute():
                continue
            candidates = [self.db_path.parent / recorded, Path.cwd() / recorded]
            found = next((c for c in candidates if (c / manifests.MANIFEST_NAME).is_file()), None)
            path = (found or candidates[0]).resolve()
            self.db["model_versions"].update((row["name"], row["version"]), {"path": str(path)})
            if found is None:
                log.warning("model version %s/%s was recorded at %s, which is neither in the data "
                            "folder nor here; it is expected at %s (copy its folder there, or "
                            "import it again)", row["name"], row["version"], row["path"], path)
            else:
                log.info("model version %s/%s: recorded path %s is %s", row["name"], row["version"],
                         row["path"], path)

    # -- versions --------------------------------------------------------------------------------

    def get(self, name: str, version: str) -> ModelVersion:
        try:
            row = self.db["model_versions"].get((name, version))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(
                f"No model version {name}/{version}; `appliance models list` shows the known ones."
            ) from None
        return _from_row(row)

    def find(self, ref: str) -> ModelVersion:
        """A version from 'name/version', or a bare version if it is unambiguous."""
        if "/" in ref:
            name, version = ref.split("/", 1)
            return self.get(name, version)
        rows = list(self.db["model_versions"].rows_where("version = ?", [ref]))
        if len(rows) == 1:
            return _from_row(rows[0])
        if not rows:
            raise NotFound(f"No model version {ref!r}; `appliance models list` shows the known ones.")
        raise InvalidRequest(f"{ref!r} matches several models; write it as name/version.")

    def list(self) -> list[ModelVersion]:
        return [_from_row(r) for r in self.db["model_versions"].rows_where(order_by="created_at, name, version")]

    def active(self) -> ModelVersion | None:
        rows = list(self.db["model_versions"].rows_where("state = 'active'"))
        return _from_row(rows[0]) if rows else None

    def add(self, name: str, version: str, *, kind: str, path: str, manifest: dict[str, Any],
            actor: str = "system") -> ModelVersion:
        stamp = now_iso()
        self.db["model_versions"].insert(
            {"name": name, "version": version, "kind": kind, "path": path, "manifest": json.dumps(manifest),
             "state": "staged", "validation": "{}", "reason": "", "created_at": stamp, "updated_at": stamp},
        )
        self.record("imported", name, version, reason=f"{kind} version registered", actor=actor)
        return self.get(name, version)

    def set_state(self, name: str, version: str, state: str, *, reason: str = "",
                  validation: dict[str, Any] | None = None,
                  activation: dict[str, Any] | None = None) -> ModelVersion:
        if state not in STATES:
            raise ValueError(state)
        update: dict[str, Any] = {"state": state, "reason": reason, "updated_at": now_iso()}
        if validation is not None:
            update["validation"] = json.dumps(validation)
        if activation is not None:
            update["activation"] = json.dumps(activation)
        self.db["model_versions"].update((name, version), update)
        return self.get(name, version)

    def set_activation(self, name: str, version: str, activation: dict[str, Any]) -> None:
        """Record an activation job's progress on its version, leaving the state as it is."""
        self.db["model_versions"].update((name, version), {"activation": json.dumps(activation),
                                                           "updated_at": now_iso()})

    def begin_activation(self, record: ModelVersion, activation: dict[str, Any], *,
                         event: str | None, actor: str, reason: str = "") -> None:
        """The version reads `activating` (with the job) and, for `event`, the history says so."""
        with self.db.atomic():
            self.set_state(record.name, record.version, "activating", reason=record.reason,
                           activation=activation)
            if event:
                self.record(event, record.name, record.version, actor=actor, reason=reason,
                            previous=activation.get("previous") or "")

    def end_activation(self, record: ModelVersion, activation: dict[str, Any], *, event: str,
                       actor: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        """A job that did not switch: the version returns to the state it had, with a history entry."""
        with self.db.atomic():
            self.set_state(record.name, record.version, activation.get("from_state") or "ready",
                           reason=activation.get("from_reason", ""), activation=activation)
            self.record(event, record.name, record.version, actor=actor, reason=reason,
                        previous=activation.get("previous") or "", detail=detail)

    def switch_active(self, record: ModelVersion, activation: dict[str, Any], *, event: str,
                      actor: str, reason: str, detail: dict[str, Any],
                      replaced_as: tuple[str, str] = ("ready", "")) -> None:
        """The moment the version starts serving: active, the one it replaces `replaced_as`
        (state, reason), and the history, in one transaction."""
        with self.db.atomic():
            replaced = self.mark_active(record.name, record.version)
            if replaced is not None and replaced.key != record.key:
                self.set_state(replaced.name, replaced.version, replaced_as[0], reason=replaced_as[1])
            self.set_activation(record.name, record.version, activation)
            self.record(event, record.name, record.version, actor=actor, reason=reason,
                        previous=activation.get("previous") or "", detail=detail)

    def interrupted_activations(self) -> list[ModelVersion]:
        """Activations a stopped process left unfinished. Before the switch the version goes back
        to the state it had (the previous version serves), with an `activation_interrupted` entry;
        after it (the old version was draining) the activation stands, as the history says."""
        found = []
        for record in self.list():
            if record.state != "activating" and not record.activation.get("running"):
                continue
            job = {**record.activation, "running": False, "finished_at": now_iso()}
            if record.state != "activating":
                self.set_activation(record.name, record.version, {**job, "ok": True, "note": (
                    "the appliance stopped while the replaced version drained")})
                continue
            step = record.activation.get("step", "unknown")
            reason = (f"the appliance stopped during the activation (at step {step}); the previous "
                      "version kept serving; activate it again")
            self.end_activation(record, {**job, "ok": False, "reason": reason}, reason=reason,
                                event="activation_interrupted",
                                actor=record.activation.get("actor", "system"))
            found.append(self.get(record.name, record.version))
        return found

    def interrupted_validations(self) -> list[ModelVersion]:
        """Versions a stopped process left `validating`: staged again, each with a history entry."""
        found = [_from_row(r) for r in self.db["model_versions"].rows_where("state = 'validating'")]
        for record in found:
            self.set_state(record.name, record.version, "staged",
                           reason="validation was interrupted; run it again",
                           validation={**record.validation, "running": False})
            self.record("validation_interrupted", record.name, record.version,
                        reason="the appliance stopped while this version was being validated "
                        f"(at step {record.validation.get('step', 'unknown')}); validate it again")
        return found

    def mark_active(self, name: str, version: str) -> ModelVersion | None:
        """Make one version active; the one it replaces goes back to ready (a rollback target)."""
        previous = self.active()
        with self.db.atomic():
            if previous is not None and previous.key != f"{name}/{version}":
                self.db["model_versions"].update(
                    (previous.name, previous.version), {"state": "ready", "updated_at": now_iso()}
                )
            self.db["model_versions"].update((name, version), {"state": "active", "reason": "",
                                                               "updated_at": now_iso()})
        return previous

    # -- history ---------------------------------------------------------------------------------

    def record(self, event: str, name: str, version: str, *, previous: str = "", reason: str = "",
               actor: str = "system", detail: dict[str, Any] | None = None) -> None:
        self.db["model_history"].insert(
            {"at": now_iso(), "event": event, "name": name, "version": version, "previous": previous,
             "reason": reason, "actor": actor, "detail": json.dumps(detail or {})},
        )

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.db["model_history"].rows_where(order_by="id desc", limit=limit)
        return [{**row, "detail": json.loads(row["detail"] or "{}")} for row in rows]

    def rollback_target(self) -> ModelVersion | None:
        return self.rollback_choice()[0]

    def rollback_choice(self) -> tuple[ModelVersion | None, str]:
        """Where a rollback goes: the most recently active version, other than the current one,
        that is still good, else the model served before any version; or None and why not."""
        current = self.active()
        if current is None:
            return None, "no version is active yet, so there is nothing to roll back from"
        passed_over: dict[str, ModelVersion] = {}
        rows = self.db.query(
            "select name, version from model_history where event in ('activated', 'rolled_back') "
            "order by id desc"
        )
        for row in rows:
            key = f"{row['name']}/{row['version']}"
            if key == current.key or key in passed_over:
                continue
            try:
                candidate = self.get(row["name"], row["version"])
            except NotFound:
                continue
            if candidate.state == "ready":
                return candidate, ""
            passed_over[key] = candidate
        # A data folder from before the served model was registered has no history of it.
        for record in reversed(self.list()):
            if record.kind in BASE_KINDS and record.key != current.key:
                if record.state == "ready":
                    return record, ""
                passed_over.setdefault(record.key, record)
        if not passed_over:
            return None, (f"{current.key} is the only version that has served here, so there is "
                          "nothing before it to go back to")
        earlier = ", ".join(f"{r.key} is {r.state}" for r in passed_over.values())
        return None, (f"no version that served before {current.key} is still good ({earlier}); "
                      "activate a ready version instead")

    # -- finding and importing versions ----------------------------------------------------------

    def scan(self) -> list[ModelVersion]:
        """Register every `models_dir/<name>/<version>/manifest.json` not yet known; returns the new ones."""
        added = []
        if not self.models_dir.is_dir():
            return added
        for manifest_file in sorted(self.models_dir.glob(f"*/*/{manifests.MANIFEST_NAME}")):
            folder = manifest_file.parent
            name, version = folder.parent.name, folder.name
            if name in RESERVED_NAMES or self.db["model_versions"].count_where(
                    "name = ? and version = ?", [name, version]):
                continue
            try:
                manifest = manifests.read(folder)
            except manifests.ManifestError as exc:
                record = self.add(name, version, kind="local", path=str(folder), manifest={})
                self.set_state(name, version, "failed", reason=exc.message)
                self.record("validation_failed", name, version, reason=exc.message)
                added.append(self.get(record.name, record.version))
                continue
            added.append(self.add(manifest.name or name, manifest.version or version, kind="local",
                                  path=str(folder), manifest=manifest_dict(manifest)))
        return added

    def import_path(self, source: Path, *, actor: str = "cli") -> ModelVersion:
        """Copy a version folder or archive (.tar, .tar.gz, .tgz, .zip) into models_dir, checksums verified."""
        source = Path(source).expanduser()
        if not source.exists():
            raise NotFound(f"{source} does not exist; give a version folder or a .tar.gz/.zip of one.")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.models_dir, prefix=".import-") as tmp:
            staging = Path(tmp) / "version"
            if source.is_dir():
                shutil.copytree(source, staging)
            else:
                _extract(source, Path(tmp) / "unpacked")
                staging = _version_root(Path(tmp) / "unpacked")
            manifest = manifests.verify(staging)  # raises naming the first bad file
            if manifest.name in RESERVED_NAMES:
                raise ReleaseError(f"A model version may not be named {manifest.name!r}: "
                                   f"{self.models_dir / manifest.name} holds the appliance's "
                                   f"{manifest.name} model. Rename it in its manifest.json "
                                   "and build it again.")
            target = self.models_dir / manifest.name / manifest.version
            if self.db["model_versions"].count_where("name = ? and version = ?",
                                                     [manifest.name, manifest.version]):
                raise ReleaseError(f"Model version {manifest.name}/{manifest.version} is already imported.")
            if target.exists():
                shutil.rmtree(target)  # a leftover folder the registry never knew of
            target.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(target)
        return self.add(manifest.name, manifest.version, kind="local", path=str(target),
                        manifest=manifest_dict(manifest), actor=actor)

    def register_upstream(self, model: str, *, actor: str = "cli") -> ModelVersion:
        """An upstream (OpenAI-compatible) model name as a version, validated and swapped like a GGUF."""
        if self.db["model_versions"].count_where("name = ? and version = ?", [UPSTREAM, model]):
            return self.get(UPSTREAM, model)
        return self.add(UPSTREAM, model, kind="upstream", path="", manifest={"name": UPSTREAM, "version": model},
                        actor=actor)


def manifest_dict(manifest: manifests.Manifest) -> dict[str, Any]:
    return json.loads(manifest.to_json())


def _from_row(row: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        name=row["name"], version=row["version"], kind=row["kind"], path=row["path"], state=row["state"],
        manifest=json.loads(row["manifest"] or "{}"), validation=json.loads(row["validation"] or "{}"),
        reason=row["reason"] or "", created_at=row["created_at"], updated_at=row["updated_at"],
        activation=json.loads(row.get("activation") or "{}"),
    )


def _extract(archive: Path, into: Path) -> None:
    into.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(into)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(into, filter="data")  # "data" refuses absolute paths and links out
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise manifests.ManifestError(
            f"{archive} is not a readable .tar.gz or .zip archive ({exc}); copy it again."
        ) from exc


def _version_root(unpacked: Path) -> Path:
    """The folder holding manifest.json: the archive's top, or its single top-level folder."""
    if (unpacked / manifests.MANIFEST_NAME).is_file():
        return unpacked
    found = sorted(unpacked.rglob(manifests.MANIFEST_NAME), key=lambda p: len(p.parts))
    if not found:
        raise manifests.ManifestError("The archive holds no manifest.json; package a whole version folder.")
    return found[0].parent
