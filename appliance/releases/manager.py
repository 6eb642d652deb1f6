"""The release service the CLI and the admin API call: registry, gate, schedules, swaps, probation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
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
from appliance.releases.registry import ACTIVATABLE, ModelVersion, Registry, ReleaseError
from appliance.releases.scheduler import SwapScheduler
from appliance.releases.swap import swap
from appliance.releases.validation import ValidationFailed, Validator
from appliance.settings import Settings

log = logging.getLogger(__name__)

# reembed(embedder_path) -> a new index handle; install_index(handle) swaps it in with the model.
ReembedHook = Callable[[Path], Awaitable[Any]]
InstallIndexHook = Callable[[Any], None]


class ReembedUnavailable(ReleaseError):
    code = "reembed_unavailable"


async def no_reembed(embedder_path: Path) -> Any:
    raise ReembedUnavailable(
        f"This version brings a different embedder ({embedder_path}), so the knowledge base must be "
        "re-embedded, but re-embedding is not available in this appliance (no knowledge base is "
        "connected). Activate a version with the current embedder, or install the knowledge base."
    )


class ReleaseManager:
    """One per process. Without an assistant (CLI, server down) activation only updates the
    registry, and the server serves the active version when it next starts."""

    def __init__(self, settings: Settings, assistant: Assistant | None = None, *,
                 factory: BackendFactory | None = None, signals: ProbationSignals | None = None,
                 on_alert: AlertHook = log_alert, reembed: ReembedHook = no_reembed,
                 install_index: InstallIndexHook | None = None, monitoring_store: Any = None):
        self.settings = settings
        self.assistant = assistant
        data_dir = settings.resolved_data_dir()
        self.registry = Registry(data_dir / "releases.db", Path(settings.releases.models_dir).expanduser())
        self.factory = factory or backend_factory(settings)
        self.validator = Validator(settings.releases, self.factory)
        self.on_alert = on_alert
        self.reembed = reembed
        self.install_index = install_index
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

    # -- process lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Find new version folders and re-register pending schedules (needs a running loop)."""
        self.registry.scan()
        self.scheduler.start()

    async def stop(self) -> None:
        self.probation.cancel()
        self.scheduler.shutdown()

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
                "probation": self.probation.status(), "schedules": self.scheduler.list(pending_only=True)}

    # -- import and validation -------------------------------------------------------------------

    def import_path(self, source: Path, *, actor: str = "cli") -> ModelVersion:
        return self.registry.import_path(source, actor=actor)

    def register_upstream(self, model: str, *, actor: str = "cli") -> ModelVersion:
        return self.registry.register_upstream(model, actor=actor)

    async def validate(self, ref: str, *, actor: str = "cli") -> ModelVersion:
        record = self.registry.find(ref)
        if record.state == "active":
            raise ReleaseError(f"{record.key} is already active; validation is for candidate versions.")
        self.registry.set_state(record.name, record.version, "validating")
        try:
            async with self._model_lock:
                active = self.registry.active()
                reference_score = self._recorded_golden(active)
                if reference_score is None and active is not None and self.assistant is None:
                    # No server here (CLI): score the active version once so the gate compares.
                    reference = await self.validator.run_golden(active)
                    reference_score = reference["score"]
                    self.registry.set_state(active.name, active.version, "active",
                                            validation={**active.validation, "golden": reference})
                report = await self.validator.validate(
                    record, reference_score=reference_score,
                    reference_backend=self.assistant.backend if self.assistant else None,
                )
        except BaseException as exc:
            reason = getattr(exc, "message", None) or f"validation stopped: {exc!r}"
            self.registry.set_state(record.name, record.version, "failed", reason=reason)
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
        if reference and active is not None and self._recorded_golden(active) is None:
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
            previous_golden = self._recorded_golden(previous)
            old = self.assistant.backend
            if previous_golden is None and old is not None and self.settings.releases.probation_golden \
                    and self.settings.releases.probation_seconds > 0 and event == "activated":
                previous_golden = (await self.validator.score_backend(old))["score"]
                if previous is not None:
                    self.registry.set_state(previous.name, previous.version, "active", validation={
                        **previous.validation, "golden": {"score": previous_golden}})
            index_holder: list[Any] = []

            async def reembed_if_needed(_new: LLMBackend) -> None:
                if record.embedder_path is not None and (previous is None or
                                                         record.embedder_sha256 != previous.embedder_sha256):
                    index_holder.append(await self.reembed(record.embedder_path))

            try:
                swapped = await swap(
                    self.assistant, lambda: self.factory(record),
                    drain_seconds=self.settings.server.drain_seconds,
                    warmup_timeout=self.settings.releases.warmup_timeout_seconds,
                    before_switch=reembed_if_needed,
                    on_switch=lambda: self.install_index(index_holder[0])
                    if self.install_index and index_holder else None,
                )
            except ApplianceError as exc:
                self.registry.record("activation_failed", record.name, record.version, actor=actor,
                                     previous=result["previous"] or "", reason=exc.message)
                raise
        self.registry.mark_active(record.name, record.version)
        result["swap"] = swapped.as_dict()
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

    @staticmethod
    def _recorded_golden(record: ModelVersion | None) -> float | None:
        if record is None:
            return None
        golden = record.validation.get("golden") or record.validation.get("checks", {}).get("golden")
        return golden.get("score") if golden else None

    async def _current_golden(self) -> float:
        return (await self.validator.score_backend(self.assistant.backend))["score"]

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


def _upstream_version(manager: ReleaseManager, record: ModelVersion) -> str:
    if record.kind != "upstream":
        return record.key
    base = manager.settings.llm.upstream.base_url
    return f"upstream:{record.version}@{base}"

