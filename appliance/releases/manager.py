"""The release service the CLI and the admin API call: registry, gate, schedules, swaps, probation."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.assistant import Assistant
from appliance.errors import ApplianceError
from appliance.llm.base import LLMBackend
from appliance.releases.backends import BackendFactory, backend_factory
from appliance.releases.probation import (
    AlertHook,
    MonitoringSignals,
    ObservedSignals,
    Probation,
    ProbationSignals,
    Watch,
    log_alert,
)
from appliance.releases.reembed import IndexSwitch, ReembedUnavailable
from appliance.releases.registry import ACTIVATABLE, ModelVersion, Registry, ReleaseError, now_iso
from appliance.releases.scheduler import SwapScheduler
from appliance.releases.swap import swap
from appliance.releases.validation import Progress, ValidationFailed, Validator
from appliance.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["ReembedUnavailable", "ReleaseManager"]


class ReleaseManager:
    """One per process. Without an assistant (CLI, server down) activation only updates the
    registry, and the server serves the active version when it next starts."""

    def __init__(self, settings: Settings, assistant: Assistant | None = None, *,
                 factory: BackendFactory | None = None, signals: ProbationSignals | None = None,
                 on_alert: AlertHook = log_alert, index_switch: IndexSwitch | None = None,
                 monitoring_store: Any = None, knowledge: Any = None):
        self.settings = settings
        self.assistant = assistant
        data_dir = settings.resolved_data_dir()
        self.registry = Registry(data_dir / "releases.db", Path(settings.releases.models_dir).expanduser())
        self.factory = factory or backend_factory(settings)
        self._knowledge = knowledge  # a KnowledgeBase for the golden set when there is no assistant
        self.validator = Validator(settings.releases, self.factory, knowledge=self.knowledge,
                                   knowledge_settings=settings.knowledge)
        self.on_alert = on_alert
        self.index_switch = index_switch
        self.monitoring_store = monitoring_store
        if signals is None:
            if monitoring_store is not None:
                signals = MonitoringSignals(monitoring_store)
            else:
                observed = ObservedSignals()
                if assistant is not None:
                    assistant.observers.append(observed)
                signals = observed
        self.signals = signals
        self.probation = Probation(settings.releases, signals, rollback=self._probation_rollback,
                                   passed=self._probation_passed, golden_score=self._current_golden)
        self.scheduler = SwapScheduler(self.registry, settings.releases, self._scheduled_activate)
        # At most one extra model in memory: a validation load or a swap, never both at once.
        self._model_lock = asyncio.Lock()
        self._validations: dict[str, asyncio.Task] = {}  # background validation jobs by version

    # -- process lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Find new version folders and re-register pending schedules (needs a running loop)."""
        self.registry.scan()
        for record in self.registry.interrupted_validations():
            log.warning("validation of %s was interrupted; it is staged again", record.key)
        self.scheduler.start()

    async def stop(self) -> None:
        self.probation.cancel()
        self.scheduler.shutdown()
        jobs = list(self._validations.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    def knowledge(self):
        """The knowledge base golden questions retrieve from, or None (they run open book)."""
        if self.assistant is not None:
            return self.assistant.knowledge
        return self._knowledge

    def close(self) -> None:
        self.registry.close()

    def load_active_backend(self) -> LLMBackend | None:
        """The backend for the registry's active version, or None when no version was activated."""
        record = self.registry.active()
        if record is None:
            return None
        return self.factory(record)

    # -- reading ---------------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        serving = self.assistant.backend.version if self.assistant and self.assistant.backend else None
        return [{**v.public(), "serving": v.key == serving} for v in self.registry.list()]

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.registry.history(limit)

    def status(self) -> dict[str, Any]:
        active = self.registry.active()
        return {"active": active.key if active else None,
                "serving": self.assistant.backend.version if self.assistant and self.assistant.backend else None,
                "probation": self.probation.status(), "schedules": self.scheduler.list(pending_only=True),
                "validating": sorted(self._validations),
                "reembed": self.index_switch.status() if self.index_switch is not None else None}

    def version(self, ref: str) -> dict[str, Any]:
        record = self.registry.find(ref)
        serving = self.assistant.backend.version if self.assistant and self.assistant.backend else None
        return {**record.public(), "serving": record.key == serving}

    # -- import and validation -------------------------------------------------------------------

    def import_path(self, source: Path, *, actor: str = "cli") -> ModelVersion:
        return self.registry.import_path(source, actor=actor)

    def register_upstream(self, model: str, *, actor: str = "cli") -> ModelVersion:
        return self.registry.register_upstream(model, actor=actor)

    def start_validation(self, ref: str, *, actor: str = "api") -> dict[str, Any]:
        """Run the gate as a background job; the version reads `validating` until it is done."""
        record = self._begin_validation(ref, actor)
        job = {"version": record.key, "state": "validating", "started_at": now_iso(), "actor": actor}
        task = asyncio.create_task(self._validate(record, actor, None), name=f"validate {record.key}")
        self._validations[record.key] = task
        task.add_done_callback(lambda t: self._validation_done(record.key, t))
        return job

    async def validate(self, ref: str, *, actor: str = "cli", progress: Progress | None = None) -> ModelVersion:
        """Run the gate and wait for it; `progress(step, checks)` hears each step as it starts."""
        record = self._begin_validation(ref, actor)
        return await self._validate(record, actor, progress)

    def _begin_validation(self, ref: str, actor: str) -> ModelVersion:
        record = self.registry.find(ref)
        if record.state == "active":
            raise ReleaseError(f"{record.key} is already active; validation is for candidate versions.")
        if record.key in self._validations:
            raise ReleaseError(f"{record.key} is already being validated; GET /api/models shows its progress.")
        self.registry.set_state(record.name, record.version, "validating",
                                validation={"running": True, "step": "queued", "checks": {}})
        self.registry.record("validation_started", record.name, record.version, actor=actor)
        return record

    def _validation_done(self, key: str, task: asyncio.Task) -> None:
        self._validations.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("validation of %s stopped: %r", key, task.exception())

    async def _validate(self, record: ModelVersion, actor: str, progress: Progress | None) -> ModelVersion:
        def step(name: str, checks: dict[str, Any]) -> None:
            self.registry.set_state(record.name, record.version, "validating", validation={
                "running": True, "step": name, "checks": checks})
            if progress is not None:
                progress(name, checks)

        try:
            async with self._model_lock:
                step("starting", {})
                active = self.registry.active()
                mode = self.validator.golden_mode()
                reference_score = self._recorded_golden(active, mode)
                if reference_score is None and active is not None and self.assistant is None:
                    # No server here (CLI): score the active version once so the gate compares.
                    step("golden_reference", {})
                    reference = await self.validator.run_golden(active)
                    reference_score = reference["score"]
                    self.registry.set_state(active.name, active.version, "active",
                                            validation={**active.validation, "golden": reference})
                report = await self.validator.validate(
                    record, reference_score=reference_score,
                    reference_backend=self.assistant.backend if self.assistant else None,
                    progress=step,
                )
        except asyncio.CancelledError:
            self.registry.set_state(record.name, record.version, "staged",
                                    reason="validation was interrupted; run it again")
            self.registry.record("validation_interrupted", record.name, record.version, actor=actor,
                                 reason="the appliance stopped during validation")
            raise
        except BaseException as exc:
            reason = getattr(exc, "message", None) or f"validation stopped: {exc!r}"
            self.registry.set_state(record.name, record.version, "failed", reason=reason)
            self.registry.record("validation_failed", record.name, record.version, actor=actor,
                                 reason=reason)
            raise
        result = report.as_dict()
        if report.ok:
            self.registry.set_state(record.name, record.version, "ready", validation=result)
            self.registry.record("validated", record.name, record.version, actor=actor, detail=result)
        else:
            self.registry.set_state(record.name, record.version, "failed", reason=report.reason,
                                    validation=result)
            self.registry.record("validation_failed", record.name, record.version, actor=actor,
                                 reason=report.reason, detail=result)
        reference = result["checks"].get("golden_reference")
        active = self.registry.active()
        if reference and active is not None and self._recorded_golden(active, reference["mode"]) is None:
            self.registry.set_state(active.name, active.version, "active",
                                    validation={**active.validation, "golden": reference})
        return self.registry.get(record.name, record.version)

    # -- activation and rollback -----------------------------------------------------------------

    async def activate(self, ref: str, *, actor: str = "cli", reason: str = "", force: bool = False,
                       event: str = "activated") -> dict[str, Any]:
        """Swap `ref` in now. Needs a passed validation unless `force` (recorded in the history)."""
        record = self.registry.find(ref)
        if record.state == "active" and self._serving(record):
            return {"version": record.key, "changed": False}
        if record.state not in ACTIVATABLE and not force:
            raise ValidationFailed(
                f"{record.key} is {record.state}"
                + (f" ({record.reason})" if record.reason else "")
                + "; run `appliance models validate` first (or activate with --force)."
            )
        if force and record.state not in ACTIVATABLE:
            reason = f"forced while {record.state}" + (f"; {reason}" if reason else "")
        previous = self.registry.active()
        result: dict[str, Any] = {"version": record.key, "previous": previous.key if previous else None,
                                  "changed": True}
        if self.assistant is None:
            self.registry.mark_active(record.name, record.version)
            self.registry.record(event, record.name, record.version, previous=result["previous"] or "",
                                 reason=reason or "takes effect when the server next starts", actor=actor)
            return result
        async with self._model_lock:
            previous_golden = self._recorded_golden(previous, self.validator.golden_mode())
            old = self.assistant.backend
            if previous_golden is None and old is not None and self.settings.releases.probation_golden \
                    and self.settings.releases.probation_seconds > 0 and event == "activated":
                previous_golden = (await self._score_and_record(old))["score"]
                if previous is not None:
                    self.registry.set_state(previous.name, previous.version, "active", validation={
                        **previous.validation, "golden": {"score": previous_golden,
                                                          "mode": self.validator.golden_mode()}})
            index = None
            try:
                # Before the new model loads: re-embedding can take long, and meanwhile the old
                # model and index serve and only one model is in memory.
                index = await self._prepare_index(record, previous)
                swapped = await swap(
                    self.assistant, lambda: self.factory(record),
                    drain_seconds=self.settings.server.drain_seconds,
                    warmup_timeout=self.settings.releases.warmup_timeout_seconds,
                    on_switch=(lambda: self.index_switch.install(index)) if index is not None else None,
                )
            except (ApplianceError, asyncio.CancelledError) as exc:
                if index is not None:
                    self.index_switch.discard(index)
                why = exc.message if isinstance(exc, ApplianceError) else "the activation was cancelled"
                self.registry.record("activation_failed", record.name, record.version, actor=actor,
                                     previous=result["previous"] or "", reason=why,
                                     detail=self._reembed_detail())
                raise
        self.registry.mark_active(record.name, record.version)
        result["swap"] = swapped.as_dict()
        if index is not None:
            result["swap"]["reembed"] = self.index_switch.status()
        self.registry.record(event, record.name, record.version, previous=result["previous"] or "",
                             reason=reason, actor=actor, detail=result["swap"])
        if self.settings.releases.probation_seconds > 0 and old is not None and event == "activated":
            now = time.time()
            self.probation.begin(Watch(
                version=record.key, backend_version=swapped.version,
                previous=previous.key if previous else (old.version if old else ""),
                previous_backend_version=swapped.previous_version or "", started=now,
                until=now + self.settings.releases.probation_seconds, previous_golden=previous_golden,
            ))
        return result

    async def rollback(self, ref: str | None = None, *, actor: str = "cli", reason: str = "",
                       failed: bool = False) -> dict[str, Any]:
        """Go back to `ref`, or to the most recent previous good version. One call, one swap."""
        current = self.registry.active()
        target = self.registry.find(ref) if ref else self.registry.rollback_target()
        if target is None:
            raise ReleaseError("There is no previous good version to roll back to; "
                               "`appliance models history` shows what was active before.")
        self.probation.cancel()
        result = await self.activate(target.key, actor=actor, event="rolled_back", force=True,
                                     reason=reason or f"manual rollback by {actor}")
        if current is not None and current.key != target.key:
            self.registry.set_state(current.name, current.version, "failed" if failed else "ready",
                                    reason=reason if failed else "")
        return result

    def cancel_reembed(self) -> bool:
        """Stop the re-embedding of an activation in progress: the activation fails, the current
        model, index and embedder keep serving. False when none is running."""
        return self.index_switch.cancel() if self.index_switch is not None else False

    def schedule(self, ref: str, *, at: datetime | None = None, actor: str = "cli") -> dict[str, Any]:
        """Activate at `at`, or at the next maintenance window when `at` is None."""
        record = self.registry.find(ref)
        if record.state not in ACTIVATABLE:
            raise ValidationFailed(f"{record.key} is {record.state}; validate it before scheduling it.")
        return self.scheduler.add(record.name, record.version, at=at, actor=actor)

    # -- internals -------------------------------------------------------------------------------

    def _serving(self, record: ModelVersion) -> bool:
        if self.assistant is None:
            return True
        backend = self.assistant.backend
        return backend is not None and backend.version in (record.key, _upstream_version(self, record))

    def _reembed_detail(self) -> dict[str, Any]:
        status = self.index_switch.status() if self.index_switch is not None else None
        return {"reembed": status} if status else {}

    async def _prepare_index(self, record: ModelVersion, previous: ModelVersion | None) -> Any | None:
        """A re-embedded index when `record` needs another embedder than the one serving."""
        switch = self.index_switch
        reason = "no knowledge base is connected" if switch is None else switch.unavailable
        if reason is None:
            return await switch.build(record.embedder_path)
        if record.embedder_path is not None and (previous is None or
                                                 record.embedder_sha256 != previous.embedder_sha256):
            raise ReembedUnavailable(
                f"This version brings a different embedder ({record.embedder_path}), so the knowledge "
                f"base must be re-embedded, but re-embedding is not available: {reason}. Activate a "
                "version with the current embedder, or make the knowledge base available."
            )
        return None

    @staticmethod
    def _recorded_golden(record: ModelVersion | None, mode: str) -> float | None:
        """The recorded golden score of `record`, if it was taken the same way (`mode`)."""
        if record is None:
            return None
        golden = record.validation.get("golden") or record.validation.get("checks", {}).get("golden")
        if not golden or golden.get("mode", "open_book") != mode:
            return None
        return golden.get("score")

    async def _score_and_record(self, backend: LLMBackend) -> dict[str, Any]:
        """Score `backend` on the golden set; with monitoring on, the run is stored beside the
        dashboards' figures (golden_runs), so probation decides on what the admin sees."""
        result = await self.validator.score_backend(backend)
        if self.monitoring_store is not None:
            row = await asyncio.to_thread(self.monitoring_store.add_golden_run, {
                "ts": time.time(), "set_path": self.validator.golden_path(),
                "questions": result["items"], "passed": result["passed"], "score": result["score"],
                "model_version": backend.version, "duration_s": result["seconds"],
                "detail": json.dumps({"source": "releases", "mode": result["mode"]})})
            result["golden_run_id"] = row["id"]
        return result

    async def _current_golden(self) -> dict[str, Any]:
        return await self._score_and_record(self.assistant.backend)

    async def _scheduled_activate(self, ref: str, actor: str, reason: str) -> Any:
        return await self.activate(ref, actor=actor, reason=reason)

    async def _probation_rollback(self, watch: Watch, reason: str) -> None:
        name, version = watch.version.split("/", 1)
        self.registry.record("probation_failed", name, version, reason=reason,
                             detail={"checks": watch.checks[-5:]})
        try:
            await self.rollback(watch.previous if "/" in watch.previous else None, actor="probation",
                                reason=f"automatic rollback: {reason}", failed=True)
        except ApplianceError as exc:
            self.on_alert("critical", f"Model {watch.version} failed probation and could not be rolled back",
                          f"{reason}. Rollback failed: {exc.message}")
            return
        self.on_alert("critical", f"Model {watch.version} rolled back",
                      f"{reason}. Now serving {watch.previous}.")

    def _probation_passed(self, watch: Watch) -> None:
        name, version = watch.version.split("/", 1)
        self.registry.record("probation_passed", name, version,
                             reason="no breach during the probation window",
                             detail={"golden": watch.golden, "checks": watch.checks[-1:]})
        if self.index_switch is not None:
            try:
                self.index_switch.settle()  # the index kept for a rollback is no longer needed
            except ApplianceError as exc:
                log.warning("could not drop the previous index: %s", exc.message)


def _upstream_version(manager: ReleaseManager, record: ModelVersion) -> str:
    if record.kind != "upstream":
        return record.key
    base = manager.settings.llm.upstream.base_url
    return f"upstream:{record.version}@{base}"

