"""Back up a data folder while the appliance serves, and restore it onto an empty one.

A backup is one .tar.gz: every SQLite database copied with SQLite's online backup (a consistent
snapshot while the server writes), the other files of the data folder as they are (the FAISS
indexes are written atomically; the restored server's start-up repair re-embeds whatever a
snapshot taken mid-ingest lacks), the settings, and the manifest of every model version. Model
files (and the embedder under `<data>/models`) are referenced by their checksums; with
`with_models` they are copied too. Reading only, a backup never gets in the server's way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.datafolder import RUN_DIR, DataFolderLock
from appliance.errors import ApplianceError, ConfigError
from appliance.manifest import MANIFEST_NAME, sha256_file
from appliance.settings import CONFIG_ENV, Settings

log = logging.getLogger(__name__)

FORMAT = 1
BACKUP_MANIFEST = "backup.json"
BACKUPS_DIR = "backups"
MODELS_DIR = "models"
FILE_PREFIX = "appliance-backup-"
# Never part of a backup: the lock and token of whoever runs now, older backups, SQLite's
# side files (the online backup already folds the WAL in), and half-written temp files.
_SKIPPED_DIRS = {RUN_DIR, BACKUPS_DIR, MODELS_DIR}
_SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp")


class BackupError(ApplianceError):
    code = "backup_failed"


@dataclass
class BackupReport:
    path: Path
    bytes: int = 0
    seconds: float = 0.0
    databases: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    model_files_copied: int = 0

    def summary(self) -> str:
        return (f"{len(self.databases)} databases, {len(self.files)} other files, "
                f"{len(self.models)} model versions ({self.model_files_copied} model files copied), "
                f"{self.bytes / 2**20:.1f} MiB in {self.seconds:.1f} s")


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _data_files(data_dir: Path) -> list[Path]:
    out = []
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if rel.parts[0] in _SKIPPED_DIRS or not path.is_file() or path.name.endswith(_SKIPPED_SUFFIXES):
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue
        out.append(path)
    return out


def _file_entries(root: Path, skip: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    return [{"path": p.relative_to(root).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(root.rglob("*"))
            if p.is_file() and not any(p.is_relative_to(folder) for folder in skip)]


def _model_versions(releases_db: Path) -> list[dict[str, Any]]:
    if not releases_db.exists():
        return []
    with closing(sqlite3.connect(releases_db)) as conn:
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT name, version, kind, path, manifest FROM model_versions").fetchall()
        except sqlite3.OperationalError:  # no registry yet
            return []
    return [{"name": r["name"], "version": r["version"], "kind": r["kind"], "path": r["path"] or "",
             "manifest": json.loads(r["manifest"] or "{}")} for r in rows]


def create_backup(settings: Settings, out: Path, *, with_models: bool = False,
                  config_path: str | Path | None = None) -> BackupReport:
    """Write a backup of the data folder to `out` (atomically: a temp file, then a rename)."""
    data_dir = settings.resolved_data_dir()
    if not data_dir.is_dir():
        raise ConfigError(f"No data folder at {data_dir}; point --data-dir / --config at the appliance's data.")
    out = Path(out).expanduser().resolve()
    if out.is_relative_to(data_dir) and not out.is_relative_to(data_dir / BACKUPS_DIR):
        raise BackupError(f"Write the backup outside the data folder {data_dir} (or under its "
                          f"{BACKUPS_DIR}/ folder), not into the data it backs up.")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = BackupReport(out)
    manifest: dict[str, Any] = {"format": FORMAT, "appliance_version": __version__,
                                "created_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                                "data_dir": str(data_dir), "with_models": with_models}
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=out.parent) as tmp:
        staging = Path(tmp)
        for path in _data_files(data_dir):
            rel = path.relative_to(data_dir).as_posix()
            target = staging / "data" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if _is_sqlite(path):
                with closing(sqlite3.connect(path, timeout=30)) as source, \
                        closing(sqlite3.connect(target)) as copy:
                    source.backup(copy)  # consistent while the server writes
                    copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                report.databases.append(rel)
            else:
                try:
                    shutil.copy2(path, target)
                except FileNotFoundError:  # replaced meanwhile (an index persisted): its successor
                    continue  # is a later snapshot than the databases; repair reconciles either way
                report.files.append(rel)
        manifest["databases"], manifest["files"] = report.databases, report.files
        manifest["settings"] = _settings_snapshot(settings, staging, config_path)
        versions = _model_versions(staging / "data" / "releases.db")
        for version in versions:  # a relative path is from before the registry settled them
            if version["path"] and not Path(version["path"]).is_absolute():
                version["path"] = str(data_dir / version["path"])
        folders = [Path(v["path"]) for v in versions if v["kind"] == "local" and v["path"]]
        manifest["data_models"] = _data_models(data_dir, staging, with_models, report, folders)
        for version in versions:
            report.models.append(f"{version['name']}/{version['version']}")
            if version["kind"] != "local" or not version["path"]:
                continue
            folder = Path(version["path"])
            manifest_file = folder / MANIFEST_NAME
            if manifest_file.is_file():
                target = staging / "versions" / version["name"] / version["version"]
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(manifest_file, target / MANIFEST_NAME)
                if with_models and folder.is_dir():
                    for entry in version["manifest"].get("files", []):
                        source = folder / entry["path"]
                        if source.is_file():
                            (target / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(source, target / entry["path"])
                            report.model_files_copied += 1
        manifest["model_versions"] = [{k: v for k, v in version.items() if k != "manifest"}
                                      for version in versions]
        (staging / BACKUP_MANIFEST).write_text(json.dumps(manifest, indent=2))
        partial = out.with_name(f".{out.name}.partial")
        with tarfile.open(partial, "w:gz", compresslevel=1) as archive:
            archive.add(staging, arcname=".")
        with partial.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, out)
    report.bytes = out.stat().st_size
    report.seconds = time.perf_counter() - started
    log.info("backed up %s to %s: %s", data_dir, out, report.summary())
    return report


def _settings_snapshot(settings: Settings, staging: Path, config_path) -> dict[str, Any]:
    """The effective settings (secrets masked) and the settings file they came from, if any."""
    folder = staging / "settings"
    folder.mkdir()
    (folder / "effective.json").write_text(json.dumps(settings.model_dump(mode="json"), indent=2))
    path = config_path or os.environ.get(CONFIG_ENV)
    if path and Path(path).expanduser().is_file():
        shutil.copy2(Path(path).expanduser(), folder / "appliance.toml")
        return {"config_file": str(Path(path).expanduser().resolve())}
    return {"config_file": None}


def _data_models(data_dir: Path, staging: Path, with_models: bool, report: BackupReport,
                 versions: list[Path]) -> list[dict]:
    """The embedder and cached model files under <data>/models: checksums, or copies. Version
    folders there (imported versions) are backed up as versions, by their manifests."""
    root = data_dir / MODELS_DIR
    if not root.is_dir():
        return []
    entries = _file_entries(root, skip=tuple(versions))
    if with_models:
        for entry in entries:
            target = staging / "data" / MODELS_DIR / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / entry["path"], target)
            report.model_files_copied += 1
    return entries


# -- restore --------------------------------------------------------------------------------------

@dataclass
class RestoreReport:
    data_dir: Path
    databases: list[str] = field(default_factory=list)
    files: int = 0
    missing_models: list[str] = field(default_factory=list)
    settings_dir: Path | None = None
    seconds: float = 0.0


def restore_backup(archive: Path, data_dir: Path) -> RestoreReport:
    """Unpack a backup into `data_dir`, which must be empty (or not exist)."""
    archive = Path(archive).expanduser()
    data_dir = Path(data_dir).expanduser().resolve()
    if not archive.is_file():
        raise BackupError(f"{archive} does not exist; give the .tar.gz that `appliance backup` wrote.")
    if data_dir.exists() and any(data_dir.iterdir()):
        shown = ", ".join(sorted(p.name for p in data_dir.iterdir())[:5])
        raise BackupError(f"The data folder {data_dir} is not empty (it holds {shown}); restore into "
                          "a new folder, or move this one aside first.")
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    report = RestoreReport(data_dir)
    with DataFolderLock(data_dir) as lock:
        lock.acquire("command", command="appliance restore")
        try:
            _unpack(archive, data_dir, report)
        except BaseException:
            for child in data_dir.iterdir():  # leave the folder as empty as it was
                if child.name != RUN_DIR:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            raise
    shutil.rmtree(data_dir / RUN_DIR, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _unpack(archive: Path, data_dir: Path, report: RestoreReport) -> None:
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=data_dir) as tmp:
        staging = Path(tmp)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")  # refuses absolute paths and links out
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupError(f"{archive} is not a readable backup ({exc}); copy it again.") from exc
        try:
            manifest = json.loads((staging / BACKUP_MANIFEST).read_text())
        except (FileNotFoundError, ValueError) as exc:
            raise BackupError(f"{archive} has no readable {BACKUP_MANIFEST}: not an appliance backup.") from exc
        if manifest.get("format") != FORMAT:
            raise BackupError(f"{archive} is a backup of format {manifest.get('format')}; this "
                              f"appliance ({__version__}) restores format {FORMAT}.")
        for rel in manifest["databases"]:
            with closing(sqlite3.connect(staging / "data" / rel)) as conn:
                if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise BackupError(f"{rel} in {archive} is damaged; use another backup.")
        old_dir = manifest["data_dir"]
        for path in sorted((staging / "data").rglob("*")):
            if path.is_file():
                target = data_dir / path.relative_to(staging / "data")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                report.files += 1
        report.databases = list(manifest["databases"])
        _relocate(data_dir, old_dir)
        report.missing_models = _check_models(manifest, staging, data_dir)
        settings_dir = data_dir / "restored-settings"
        shutil.move(str(staging / "settings"), settings_dir)
        report.settings_dir = settings_dir


def _relocate(data_dir: Path, old_dir: str) -> None:
    """Paths recorded under the old data folder now point into the new one."""
    if old_dir == str(data_dir):
        return
    knowledge = data_dir / "knowledge" / "knowledge.db"
    if knowledge.exists():
        with closing(sqlite3.connect(knowledge)) as conn, conn:
            for key in ("index", "previous_index"):
                row = conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
                if not row or not row[0]:
                    continue
                record = json.loads(row[0])
                if record.get("embedder_path", "").startswith(old_dir + os.sep):
                    record["embedder_path"] = str(data_dir) + record["embedder_path"][len(old_dir):]
                    conn.execute("UPDATE meta SET value = ? WHERE key = ?", [json.dumps(record), key])
    releases = data_dir / "releases.db"
    if releases.exists():
        with closing(sqlite3.connect(releases)) as conn, conn:
            conn.execute("UPDATE model_versions SET path = ? || substr(path, ?) WHERE path LIKE ?",
                         [str(data_dir), len(old_dir) + 1, old_dir + os.sep + "%"])


def _check_models(manifest: dict, staging: Path, data_dir: Path) -> list[str]:
    """Model files the restored registry names: present with the right checksum, restored from
    the backup's copies, or reported missing (to copy back or import again)."""
    missing = []
    for entry in manifest.get("data_models", []):
        path = data_dir / MODELS_DIR / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            missing.append(f"{path} (sha256 {entry['sha256'][:12]}...)")
    releases = data_dir / "releases.db"
    for version in manifest.get("model_versions", []):
        if version["kind"] != "local" or not version["path"]:
            continue
        key = f"{version['name']}/{version['version']}"
        copied = staging / "versions" / version["name"] / version["version"]
        recorded = Path(version["path"])
        if recorded.is_relative_to(manifest["data_dir"]):
            recorded = data_dir / recorded.relative_to(manifest["data_dir"])
        if not (copied / MANIFEST_NAME).is_file():
            continue
        files = json.loads((copied / MANIFEST_NAME).read_text()).get("files", [])
        if all((recorded / f["path"]).is_file() and sha256_file(recorded / f["path"]) == f["sha256"]
               for f in files):
            continue  # the version's files are where the registry says, intact
        if all((copied / f["path"]).is_file() for f in files):
            target = data_dir / MODELS_DIR / version["name"] / version["version"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(copied, target)
            with closing(sqlite3.connect(releases)) as conn, conn:
                conn.execute("UPDATE model_versions SET path = ? WHERE name = ? AND version = ?",
                             [str(target), version["name"], version["version"]])
            continue
        missing.append(f"{key}: {recorded} (sha256 of each file in its manifest.json)")
    return missing


# -- scheduled backups ----------------------------------------------------------------------------

def backup_dir(settings: Settings) -> Path:
    return settings.resolve(settings.backup.dir or BACKUPS_DIR)


def scheduled_backup(settings: Settings) -> BackupReport:
    """One scheduled backup into `backup.dir`, then only the newest `backup.keep` are kept."""
    folder = backup_dir(settings)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]  # sorts by time, to the millisecond
    report = create_backup(settings, folder / f"{FILE_PREFIX}{stamp}.tar.gz",
                           with_models=settings.backup.with_models)
    prune_backups(folder, settings.backup.keep)
    return report


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `folder` (by the time in their names)."""
    found = sorted(folder.glob(f"{FILE_PREFIX}*.tar.gz"))
    removed = found[:-keep] if keep > 0 else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
