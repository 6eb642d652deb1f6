"""Watched sources: folders (a mounted SMB or NFS share) kept in the knowledge base.

A run ingests new and changed files through the ingest path, removes the documents of deleted
files (only those that came from this source), and reports unreadable files without stopping
the rest. Each run is recorded in knowledge.db; `SourceScheduler` runs them inside the server.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.errors import ApplianceError, Conflict, NotFound, NotReady
from appliance.knowledge.ingest import IngestReport
from appliance.knowledge.parsers import ParseError, supported
from appliance.settings import SourceSettings
from appliance.threadnames import name_native_thread

log = logging.getLogger(__name__)

KEPT_PER_RUN = 200  # errors and warnings recorded per run; the counts stay exact


class SourceUnavailable(ApplianceError):
    """The folder is missing, unreadable or (suspiciously) empty: nothing is changed."""

    code = "source_unavailable"


class RunStopped(ApplianceError):
    code = "source_run_stopped"


def document_name(source: str, relative: str) -> str:
    """A watched file's document name: the source's name, then its path in the folder."""
    return f"{source}/{relative}"


class WatchedSources:
    """The configured sources of one knowledge base; one run at a time per source."""

    def __init__(self, kb, settings: Sequence[SourceSettings]):
        self.kb = kb
        self.settings = {s.name: s for s in settings}
        self._running: dict[str, int] = {}  # source name -> id of its run in progress
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.stopping = threading.Event()  # set: runs in progress end after their current file

    def get(self, name: str) -> SourceSettings:
        source = self.settings.get(name)
        if source is None:
            known = ", ".join(self.settings) or "none are configured ([[knowledge.sources]])"
            raise NotFound(f"No watched source named {name!r}; known: {known}.")
        return source

    def groups(self, source: SourceSettings) -> list[str]:
        return sorted(set(source.groups or self.kb.settings.default_groups))

    # -- reading ----------------------------------------------------------------------------------
    def describe(self, name: str | None = None) -> list[dict]:
        """Each source's settings, documents, whether it runs now, and its last run."""
        names = [self.get(name).name] if name else list(self.settings)
        last = self.kb.store.last_source_runs()
        counts = self.kb.store.origin_counts()
        with self._lock:
            running = dict(self._running)
        return [{"name": n, "path": str(self.settings[n].resolve(self.settings[n].path)),
                 "groups": self.groups(self.settings[n]),
                 "cron": self.settings[n].cron, "interval_minutes": self.settings[n].interval_minutes,
                 "exclude": list(self.settings[n].exclude), "documents": counts.get(n, 0),
                 "running": n in running, "last_run": last.get(n)} for n in names]

    def history(self, name: str, limit: int = 20) -> list[dict]:
        return self.kb.store.source_runs(self.get(name).name, limit)

    # -- running ----------------------------------------------------------------------------------
    def begin(self, name: str, trigger: str) -> dict:
        """Record a run as started (Conflict if this source is already running); `execute` does it."""
        self.get(name)
        with self._lock:
            if name in self._running:
                raise Conflict(f"The source {name!r} is already running (run {self._running[name]}); "
                               "wait for it to finish.")
            self._running[name] = 0
        try:
            run = self.kb.store.start_source_run(name, trigger)
        except BaseException:
            with self._lock:
                del self._running[name]
            raise
        with self._lock:
            self._running[name] = run["id"]
        return run

    def run(self, name: str, trigger: str = "cli", *,
            progress: Callable[[str], None] | None = None) -> dict:
        """Run a source now, here (blocking); returns the finished run record."""
        return self.execute(self.begin(name, trigger), progress=progress)

    def execute(self, run: dict, *, progress: Callable[[str], None] | None = None) -> dict:
        """Do a begun run and record its outcome; never raises for a file or a missing folder."""
        name = run["source"]
        tally = _Tally()
        try:
            self._sync(self.get(name), tally, progress)
            state, message = "done", ""
        except (SourceUnavailable, RunStopped) as exc:
            state, message = "failed", exc.message
        except Exception as exc:  # recorded on the run; the log has the trace
            log.exception("watched source %s: run %s failed", name, run["id"])
            state, message = "failed", getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        try:
            self.kb.persist()
        except Exception:  # the next start's repair re-embeds what the index file lacks
            log.exception("watched source %s: could not write the vector index", name)
        try:
            finished = self.kb.store.finish_source_run(
                run["id"], state, tally.counts(), tally.errors[:KEPT_PER_RUN],
                tally.warnings[:KEPT_PER_RUN], message)
        finally:
            with self._idle:
                self._running.pop(name, None)
                self._idle.notify_all()
        log.info("watched source %s: %s (%s)%s", name, state, ", ".join(
            f"{v} {k}" for k, v in tally.counts().items() if v) or "no change",
            f": {message}" if message else "")
        return finished

    def _sync(self, source: SourceSettings, tally: _Tally,
              progress: Callable[[str], None] | None) -> None:
        root = source.resolve(source.path)
        if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
            raise SourceUnavailable(f"{root} is not a readable folder (is the share mounted?); "
                                    "nothing was changed.")
        groups = self.groups(source)
        kept = {d.source: d for d in self.kb.store.documents_from(source.name)}
        seen: set[str] = set()
        unlisted: list[str] = []  # folders that could not be listed: their documents stay
        report = IngestReport()
        try:
            for path, relative, error in _walk(root, source.exclude):
                if error:
                    tally.error(relative or ".", error)
                    unlisted.append(f"{source.name}/{relative}")
                elif not supported(path.name):
                    tally.skipped += 1
                else:
                    if self.stopping.is_set():
                        raise RunStopped("the appliance stopped during this run; the next run "
                                         "goes on from here")
                    key = document_name(source.name, relative)
                    seen.add(key)
                    self._file(path, relative, key, kept.get(key), groups, report, tally, source.name,
                               progress)
        finally:  # what went in before a stop counts too
            tally.take(report, prefix=f"{source.name}/")
        gone = [doc for key, doc in kept.items()
                if key not in seen and not any(_under(key, folder) for folder in unlisted)]
        if gone and not seen and not unlisted:
            raise SourceUnavailable(f"{root} holds no files now, but {len(kept)} documents came from "
                                    "it (is the share mounted?); nothing was removed.")
        for document in gone:
            self.kb.delete(document.id, persist=False)
            tally.removed += 1

    def _file(self, path: Path, relative: str, key: str, known, groups: list[str],
              report: IngestReport, tally: _Tally, origin: str,
              progress: Callable[[str], None] | None) -> None:
        """Ingest one file unless its size and mtime say it is unchanged; failures are tallied."""
        try:
            stat = path.stat()
            if known is not None and (known.size, known.modified) == (stat.st_size, stat.st_mtime) \
                    and list(known.groups) == groups and not (known.needs_ocr and self.kb.ocr.available):
                report.unchanged.append(key)  # not even read
                return
            if progress:
                progress(relative)
            limit = self.kb.settings.max_upload_bytes
            if stat.st_size > limit:
                tally.error(relative, f"larger than knowledge.max_upload_bytes ({limit} bytes)")
                return
            self.kb.ingestor.ingest_bytes(key, path.read_bytes(), groups, report, origin=origin,
                                          modified=stat.st_mtime)
        except ParseError as exc:
            tally.error(relative, exc.message.removeprefix(f"{key}: "))
        except OSError as exc:
            tally.error(relative, f"cannot read it ({exc.strerror or exc})")

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is in progress; False if one still is after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._running, timeout)

    def abandon_interrupted(self) -> int:
        """Runs left 'running' by a process that stopped mid-run are marked failed (at start-up)."""
        return self.kb.store.abandon_source_runs("the appliance stopped during this run; the next "
                                                 "run picks up where it left off")


class _Tally:
    def __init__(self):
        self.added = self.updated = self.unchanged = self.removed = self.skipped = self.failed = 0
        self.errors: list[dict] = []
        self.warnings: list[dict] = []

    def error(self, file: str, reason: str) -> None:
        self.failed += 1
        self.errors.append({"file": file, "reason": reason})

    def take(self, report: IngestReport, prefix: str) -> None:
        self.added += len(report.added)
        self.updated += len(report.updated)
        self.unchanged += len(report.unchanged)
        self.warnings += [{"file": s.removeprefix(prefix), "message": m} for s, m in report.warnings]

    def counts(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "removed": self.removed, "skipped": self.skipped, "failed": self.failed}


def _under(key: str, folder: str) -> bool:
    return key.startswith(folder.rstrip("/") + "/")


def _walk(root: Path, exclude: Sequence[str]) -> Iterator[tuple[Path, str, str]]:
    """(file, path relative to root, "") for every visible file in name order, and
    (folder, relative path, reason) for each folder that cannot be listed."""
    failures: list[OSError] = []

    def unlisted() -> Iterator[tuple[Path, str, str]]:
        while failures:
            exc = failures.pop()
            folder = Path(exc.filename or root)
            yield folder, _relative(root, folder), f"cannot list the folder ({exc.strerror or exc})"

    for folder, dirs, files in os.walk(root, onerror=failures.append):
        yield from unlisted()
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in exclude):
                continue
            path = Path(folder) / name
            if path.is_file():
                yield path, _relative(root, path), ""
    yield from unlisted()


def _relative(root: Path, path: Path) -> str:
    relative = Path(path).relative_to(root).as_posix()
    return "" if relative == "." else relative


class SourceScheduler:
    """Runs each watched source on its schedule inside the server (APScheduler, one worker
    thread, so runs take turns), and runs one now on request through the same worker."""

    def __init__(self, sources: WatchedSources, timezone: str = "UTC"):
        self.sources = sources
        self.timezone = ZoneInfo(timezone)
        self.scheduler = None

    def start(self) -> None:
        """Start on the running event loop; an interval source that is due (or never ran) runs now."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        abandoned = self.sources.abandon_interrupted()
        if abandoned:
            log.warning("%d watched-source runs were cut off by the last stop; marked failed", abandoned)
        pool = ThreadPoolExecutor(1, pool_kwargs={"initializer": name_native_thread,
                                                  "initargs": ("sources",)})
        self.scheduler = AsyncIOScheduler(timezone=self.timezone, executors={"default": pool})
        last = self.sources.kb.store.last_source_runs()
        now = datetime.now(self.timezone)
        for name, source in self.sources.settings.items():
            job = dict(id=name, args=[name], max_instances=1, coalesce=True, misfire_grace_time=None)
            if source.cron:
                self.scheduler.add_job(self._scheduled, CronTrigger.from_crontab(
                    source.cron, timezone=self.timezone), **job)
            elif source.interval_minutes > 0:
                started = last[name]["started_at"] if name in last else None
                due = now if started is None else datetime.fromtimestamp(started, self.timezone) \
                    + timedelta(minutes=source.interval_minutes)
                self.scheduler.add_job(self._scheduled, IntervalTrigger(
                    minutes=source.interval_minutes, timezone=self.timezone),
                    next_run_time=max(due, now), **job)
        self.scheduler.start()

    def next_runs(self) -> dict[str, str | None]:
        if self.scheduler is None:
            return {}
        jobs = {job.id: job.next_run_time for job in self.scheduler.get_jobs()}
        return {name: jobs[name].isoformat() if jobs.get(name) else None
                for name in self.sources.settings}

    def describe(self, name: str | None = None) -> list[dict]:
        upcoming = self.next_runs()
        return [{**row, "next_run": upcoming.get(row["name"])} for row in self.sources.describe(name)]

    def run_now(self, name: str, trigger: str = "manual") -> dict:
        """Begin a run now (Conflict if it is running) and hand it to the worker; returns the run."""
        if self.scheduler is None:
            raise NotReady("Watched sources are stopping; run the source after the restart.")
        run = self.sources.begin(name, trigger)
        self.scheduler.add_job(self.sources.execute, args=[run], id=f"run-{run['id']}")
        return run

    def stop(self, timeout: float) -> None:
        """Stop scheduling; a run in progress ends after its current file (blocking, up to `timeout`)."""
        self.sources.stopping.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None
        if not self.sources.wait_idle(timeout):
            log.warning("a watched-source run did not stop within %.0f s", timeout)

    def _scheduled(self, name: str) -> None:
        try:
            self.sources.run(name, "schedule")
        except Conflict:
            log.info("watched source %s is still running; this scheduled run is skipped", name)
