"""The release service the CLI and the admin API call: registry, gate, schedules, swaps, probation."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.assistant import Assistant
from appliance.errors import ApplianceError
from appliance.llm.base import LLMBackend
from appliance.releases import baseline
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

__all__ = ["ActivationJob", "ReembedUnavailable", "ReleaseManager"]


@dataclass
class ActivationJob:
    """One activation (or rollback) under way; `as_dict` is what its version's `activation` shows."""

    record: ModelVersion  # as it was before the job began
    event: str  # what the history calls success: "activated" or "rolled_back"
    actor: str
    reason: str  # why it was asked for (the failure reason, if any, goes in `as_dict`'s "reason")
    force: bool
    previous: ModelVersion | None
    replaced_as: tuple[str, str] = ("ready", "")  # state and reason `previous` takes at the switch
    started_at: str = field(default_factory=now_iso)
    step: str = "starting"
    steps: dict[str, Any] = field(default_factory=dict)  # figures of the finished steps
    switched: bool = False
    finished: bool = False
    started: float = field(default_factory=time.monotonic)

    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def as_dict(self, **outcome: Any) -> dict[str, Any]:
        return {"running": not self.finished, "event": self.event, "step": self.step,
                "steps": dict(self.steps), "actor": self.actor, "requested_reason": self.reason,
                "force": self.force, "previous": self.previous.key if self.previous else None,
                "from_state": self.record.state, "from_reason": self.record.reason,
                "started_at": self.started_at, **outcome}


FIGURES_SECONDS = 10.0  # a version's golden figures are read again after this long (a validation may have changed them)

class ReleaseManager:
    """One per process. Without an assistant (CLI, server down) activation only updates the
    registry, and the server serves the active version when it next starts."""

    def __init__(self, settings: Settings, assistant: Assistant | None = None, *,
                 factory: BackendFactory | None = None, signals: ProbationSignals | None = None,
                 on_alert: AlertHook = log_alert, index_switch: IndexSwitch | None = None,
                 monitoring_store: Any = None, knowledge: Any = None):
        self.settings = settings
        self.assistant = assistant
        # What serves now belongs to the assistant's Serving: swaps go through it, and scoring
        # the serving model holds a lease on it like a request.
        self.serving = assistant.serving if assistant is not None else None
        data_dir = settings.resolved_data_dir()
        self.registry = Registry(data_dir / "releases.db",
                                 settings.resolve(settings.releases.models_dir))
        self.factory = factory or backend_factory(settings)
        self._knowledge = knowledge  # a KnowledgeBase for the golden set when there is no assistant
        self.validator = Validator(settings.releases, self.factory, knowledge=self.knowledge,
                                   knowledge_settings=settings.knowledge,
                                   answer_settings=settings.answers)
        self.on_alert = on_alert
        self._figures: dict[str, tuple[float, dict | None]] = {}  # answer_figures, briefly cached
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
        self._job: ActivationJob | None = None  # the one activation (or rollback) under way
        self._activation: asyncio.Task | None = None

    # -- process lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Find new version folders and re-register pending schedules (needs a running loop)."""
        self.registry.scan()
        for record in self.registry.interrupted_validations():
            log.warning("validation of %s was interrupted; it is staged again", record.key)
        for record in self.registry.interrupted_activations():
            log.warning("activation of %s was interrupted before the switch; %s, the version "
                        "before it, serves", record.key, record.activation.get("previous"))
        self.scheduler.start()

    async def stop(self) -> None:
        self.probation.cancel()
        self.scheduler.shutdown()
        jobs = [*self._validations.values(), *([self._activation] if self._activation else [])]
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

    def register_served_model(self) -> ModelVersion | None:
        """Register the bundled or configured GGUF as a version (see `baseline.py`) and settle
        which version is active; None when the settings serve an upstream model. Blocking."""
        if self.settings.llm.backend != "local" or self.settings.llm.fallback:
            return None
        return baseline.register(self.registry, self.settings)

    def load_active_backend(self) -> LLMBackend | None:
        """The backend for the registry's active version, or None when no version was activated."""
        record = self.registry.active()
        if record is None:
            return None
        return self.factory(record)

    # -- reading ---------------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        return [self._public(v) for v in self.registry.list()]

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.registry.history(limit)

    def status(self) -> dict[str, Any]:
        active = self.registry.active()
        return {"active": active.key if active else None,
                "serving": self._serving_version(),
                "probation": self.probation.status(), "schedules": self.scheduler.list(pending_only=True),
                "validating": sorted(self._validations),
                "activating": self._job.record.key if self._job is not None else None,
                "rollback": self.rollback_plan(),
                "reembed": self.index_switch.status() if self.index_switch is not None else None}

    def busy(self) -> str | None:
        """What the releases are timing or swapping now (a validation, an activation or
        probation's golden run), or None: other heavy work on the same cores waits for it."""
        if self._validations:
            return f"{', '.join(sorted(self._validations))} is being validated"
        if self._job is not None:
            return f"{self._job.record.key} is being activated"
        watch = self.probation.watch
        if watch is not None and watch.golden is None and self.settings.releases.probation_golden:
            return f"probation is scoring {watch.version} on the golden set"
        return None

    def rollback_plan(self) -> dict[str, Any]:
        """Where `rollback` without a target would go, named before anyone acts: `target`
        (name/version, or None), `from` (the active version) and, without a target, `reason`."""
        active = self.registry.active()
        plan: dict[str, Any] = {"target": None, "target_kind": None,
                                "from": active.key if active else None, "reason": ""}
        if self._job is not None:
            plan["reason"] = (f"{self._job.record.key} is being activated; roll back once that has "
                              "finished.")
            return plan
        target, why = self.registry.rollback_choice()
        if target is None:
            plan["reason"] = f"There is no version to roll back to: {why}."
        else:
            plan.update(target=target.key, target_kind=target.kind)
        return plan

    def version(self, ref: str) -> dict[str, Any]:
        return self._public(self.registry.find(ref))

    def _public(self, record: ModelVersion) -> dict[str, Any]:
        row = {**record.public(), "serving": record.key == self._serving_version()}
        if self._job is not None and self._job.record.key == record.key and not self._job.finished:
            row["activation"] = {**row["activation"], **self._job_view(self._job)}
        return row

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
        if record.state == "activating":
            raise ReleaseError(f"{record.key} is being activated; validate it once that has finished.")
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
                # The version the candidate would replace is scored in the same run: the serving
                # model here, or (no server: the CLI) the active version loaded for it.
                recorded = self._recorded_golden(active, self.validator.golden_mode())
                with self._serving_lease() as serving:
                    report = await self.validator.validate(
                        record, reference_score=recorded,
                        reference_backend=serving,
                        reference_record=active if serving is None and active is not None else None,
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

    def start_activation(self, ref: str, *, actor: str = "api", reason: str = "",
                         force: bool = False, event: str = "activated") -> dict[str, Any] | None:
        """Swap `ref` in as a background job (its steps show on the version); None when it
        already serves. Refusals (not validated, another activation running) raise at once."""
        if self.assistant is None:
            raise ReleaseError("No model is served in this process; activate through the server.")
        job = self._begin_activation(ref, actor=actor, reason=reason, force=force, event=event)
        if job is None:
            return None
        self._spawn(job, None)
        return self._job_view(job)

    async def activate(self, ref: str, *, actor: str = "cli", reason: str = "", force: bool = False,
                       event: str = "activated", progress: Progress | None = None,
                       replaced_as: tuple[str, str] = ("ready", "")) -> dict[str, Any]:
        """Swap `ref` in now and wait. Needs a passed validation unless `force` (recorded in the
        history); `progress(step, job)` hears each step as it starts."""
        if self.assistant is None:
            record = self.registry.find(ref)
            if record.state == "active":
                return {"version": record.key, "changed": False}
            reason = self._check_activatable(record, force, reason)
            previous = self.registry.active()
            note = "takes effect when the server next starts"
            self.registry.switch_active(
                record, {"running": False, "ok": True, "event": event, "actor": actor, "force": force,
                         "previous": previous.key if previous else None, "finished_at": now_iso(),
                         "note": note},
                event=event, actor=actor, reason=reason or note, detail={}, replaced_as=replaced_as)
            return {"version": record.key, "previous": previous.key if previous else None, "changed": True}
        job = self._begin_activation(ref, actor=actor, reason=reason, force=force, event=event)
        if job is None:
            return {"version": self.registry.find(ref).key, "changed": False}
        job.replaced_as = replaced_as
        return await self._spawn(job, progress)

    async def rollback(self, ref: str | None = None, *, actor: str = "cli", reason: str = "",
                       failed: bool = False) -> dict[str, Any]:
        """Go back to `ref`, or to the most recent previous good version, and wait. One swap."""
        target = self._rollback_target(ref)
        # The version rolled back from is marked in the same step as the switch, so no reader
        # ever sees it as a good version to go back to.
        return await self.activate(target.key, actor=actor, event="rolled_back", force=True,
                                   reason=reason or f"manual rollback by {actor}",
                                   replaced_as=("failed", reason) if failed else ("ready", ""))

    def start_rollback(self, ref: str | None = None, *, actor: str = "api",
                       reason: str = "") -> tuple[ModelVersion, dict[str, Any] | None]:
        """Roll back as a background job, like `start_activation`: the target version and the
        job (None when it already serves). Refusals raise at once."""
        target = self._rollback_target(ref)
        return target, self.start_activation(target.key, actor=actor, force=True, event="rolled_back",
                                             reason=reason or f"manual rollback by {actor}")

    def _rollback_target(self, ref: str | None) -> ModelVersion:
        """Where a rollback goes; refuses while an activation runs. Ends any probation."""
        if self._job is not None:
            raise ReleaseError(f"{self._job.record.key} is being activated; roll back once that has "
                               "finished (or cancel its re-embedding with DELETE /api/models/reembed).")
        if ref:
            target = self.registry.find(ref)
        else:
            target, why = self.registry.rollback_choice()
            if target is None:
                raise ReleaseError(f"There is no version to roll back to: {why}. `appliance models "
                                   "history` shows what served before.")
        self.probation.cancel()
        return target

    def _check_activatable(self, record: ModelVersion, force: bool, reason: str) -> str:
        """The reason to record; raises when the version may not be activated now."""
        if record.state in ("validating", "activating"):
            raise ReleaseError(f"{record.key} is {record.state}; wait for that to finish "
                               f"(GET /api/models/{record.key} shows its progress).")
        if record.state not in ACTIVATABLE and not force:
            raise ValidationFailed(
                f"{record.key} is {record.state}"
                + (f" ({record.reason})" if record.reason else "")
                + "; run `appliance models validate` first (or activate with --force)."
            )
        if force and record.state not in ACTIVATABLE:
            return f"forced while {record.state}" + (f"; {reason}" if reason else "")
        return reason

    def _begin_activation(self, ref: str, *, actor: str, reason: str, force: bool,
                          event: str) -> ActivationJob | None:
        record = self.registry.find(ref)
        if self._job is not None:
            key = self._job.record.key
            raise ReleaseError(f"{key} is being activated; one activation runs at a time. GET "
                               f"/api/models/{key} shows its progress; wait for it to finish (or "
                               "cancel its re-embedding with DELETE /api/models/reembed).")
        if record.state == "active" and self._serving(record):
            return None
        reason = self._check_activatable(record, force, reason)
        previous = self.registry.active()
        refusal = self._index_refusal(record, previous)
        if refusal is not None:
            self.registry.record("activation_failed", record.name, record.version, actor=actor,
                                 previous=previous.key if previous else "", reason=refusal.message)
            raise refusal
        job = ActivationJob(record, event=event, actor=actor, reason=reason, force=force,
                            previous=previous)
        self.registry.begin_activation(record, job.as_dict(), actor=actor, reason=reason,
                                       event="activation_started" if event == "activated" else None)
        self._job = job
        return job

    def _spawn(self, job: ActivationJob, progress: Progress | None) -> asyncio.Task:
        task = asyncio.create_task(self._run_activation(job, progress), name=f"activate {job.record.key}")
        self._activation = task
        task.add_done_callback(lambda t: self._activation_done(job, t, background=progress is None))
        return task

    def _activation_done(self, job: ActivationJob, task: asyncio.Task, *, background: bool) -> None:
        if not job.finished:  # cancelled before it began: nothing ran, the old version serves
            self._finish_unswitched(job, "activation_interrupted",
                                    "the appliance stopped before the activation began")
        self._job = self._activation = None
        if background and not task.cancelled() and task.exception() is not None:
            log.error("activation of %s failed: %s", job.record.key,
                      getattr(task.exception(), "message", None) or repr(task.exception()))

    async def _run_activation(self, job: ActivationJob, progress: Progress | None) -> dict[str, Any]:
        record, previous = job.record, job.previous

        def step(name: str, figures: dict[str, Any] | None = None) -> None:
            job.step = name
            job.steps.update(figures or {})
            self.registry.set_activation(record.name, record.version, job.as_dict())
            if progress is not None:
                progress(name, self._job_view(job))

        index = None
        try:
            if self._model_lock.locked():
                step("queued")  # a validation holds the second model slot; this waits for it
            async with self._model_lock:
                step("starting")
                old = self.serving.backend
                previous_golden = self._recorded_golden(previous, self.validator.golden_mode())
                if previous_golden is None and old is not None and self.settings.releases.probation_golden \
                        and self.settings.releases.probation_seconds > 0 and job.event == "activated":
                    step("golden_reference")
                    with self._serving_lease() as serving:
                        previous_golden = (await self._score_and_record(serving))["score"]
                    if previous is not None:
                        self.registry.set_state(previous.name, previous.version, "active", validation={
                            **previous.validation, "golden": {"score": previous_golden,
                                                              "mode": self.validator.golden_mode()}})
                # Before the new model loads: re-embedding can take long, and meanwhile the old
                # model and index serve and only one model is in memory.
                index = await self._prepare_index(record, previous, lambda: step("reembed"))
                if index is not None:
                    job.steps["reembed"] = self.index_switch.status()
                swapped = await swap(
                    self.serving, lambda: self.factory(record),
                    drain_seconds=self.settings.server.drain_seconds,
                    warmup_timeout=self.settings.releases.warmup_timeout_seconds,
                    on_switch=lambda: self._switch(job, index), progress=step,
                )
        except BaseException as exc:
            if job.switched:  # stopped while the replaced model drained: the activation stands
                self._finish_switched(job, None, note="the appliance stopped while the replaced "
                                      "version drained")
                raise
            if index is not None:
                self.index_switch.discard(index)
            if isinstance(exc, asyncio.CancelledError):
                was = previous.key if previous else "the previous model"
                self._finish_unswitched(job, "activation_interrupted", (
                    f"the appliance stopped during the activation (at step {job.step}); {was} kept "
                    "serving; activate it again"))
            else:
                self._finish_unswitched(job, "activation_failed", getattr(exc, "message", None)
                                        or f"the activation stopped: {exc!r}")
            raise
        result: dict[str, Any] = {"version": record.key, "previous": previous.key if previous else None,
                                  "changed": True, "swap": swapped.as_dict()}
        if index is not None:
            result["swap"]["reembed"] = self.index_switch.status()
        self._finish_switched(job, result["swap"])
        if self.settings.releases.probation_seconds > 0 and old is not None and job.event == "activated":
            now = time.time()
            self.probation.begin(Watch(
                version=record.key, backend_version=swapped.version,
                previous=previous.key if previous else (old.version if old else ""),
                previous_backend_version=swapped.previous_version or "", started=now,
                until=now + self.settings.releases.probation_seconds, previous_golden=previous_golden,
            ))
        return result

    def _switch(self, job: ActivationJob, index: Any | None) -> None:
        """In the loop step of the model switch: the index, then the registry and its history."""
        if index is not None:
            self.index_switch.install(index)
        job.step = "switch"
        self.registry.switch_active(job.record, {**job.as_dict(), "switched_at": now_iso()},
                                    event=job.event, actor=job.actor, reason=job.reason,
                                    detail=dict(job.steps), replaced_as=job.replaced_as)
        job.switched = True

    def _finish_switched(self, job: ActivationJob, swap_figures: dict[str, Any] | None, *,
                         note: str = "") -> None:
        job.finished = True
        outcome = {"ok": True, "finished_at": now_iso(), "seconds": job.seconds()}
        if swap_figures is not None:
            outcome["swap"] = swap_figures
        if note:
            outcome["note"] = note
        self.registry.set_activation(job.record.name, job.record.version, job.as_dict(**outcome))

    def _finish_unswitched(self, job: ActivationJob, event: str, reason: str) -> None:
        job.finished = True
        activation = job.as_dict(ok=False, reason=reason, finished_at=now_iso(), seconds=job.seconds())
        self.registry.end_activation(job.record, activation, event=event, actor=job.actor,
                                     reason=reason, detail={"steps": job.steps, **self._reembed_detail()})

    def _job_view(self, job: ActivationJob) -> dict[str, Any]:
        """The job as the API shows it, with the re-embedding's live progress during that step."""
        view = job.as_dict()
        if job.step == "reembed" and self.index_switch is not None:
            view["reembed"] = self.index_switch.status()
        return view

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
        if self.serving is None:
            return True
        backend = self.serving.backend
        return backend is not None and backend.version in (record.key, _upstream_version(self, record))

    def _serving_version(self) -> str | None:
        backend = self.serving.backend if self.serving is not None else None
        return backend.version if backend is not None else None

    @contextmanager
    def _serving_lease(self) -> Iterator[LLMBackend | None]:
        """The serving backend, held open (like a request's) while it is scored; None without one."""
        if self.serving is None or self.serving.backend is None:
            yield None
            return
        with self.serving.lease(ready=False) as lease:
            yield lease.backend

    def _reembed_detail(self) -> dict[str, Any]:
        status = self.index_switch.status() if self.index_switch is not None else None
        return {"reembed": status} if status else {}

    def _index_refusal(self, record: ModelVersion, previous: ModelVersion | None) -> ReembedUnavailable | None:
        """Why `record` cannot be activated now because of its embedder, or None."""
        switch = self.index_switch
        reason = "no knowledge base is connected" if switch is None else switch.unavailable
        if reason is None or record.embedder_path is None or (
                previous is not None and record.embedder_sha256 == previous.embedder_sha256):
            return None
        return ReembedUnavailable(
            f"This version brings a different embedder ({record.embedder_path}), so the knowledge "
            f"base must be re-embedded, but re-embedding is not available: {reason}. Activate a "
            "version with the current embedder, or make the knowledge base available."
        )

    async def _prepare_index(self, record: ModelVersion, previous: ModelVersion | None,
                             on_start: Callable[[], None]) -> Any | None:
        """A re-embedded index when `record` needs another embedder than the one serving."""
        refusal = self._index_refusal(record, previous)
        if refusal is not None:
            raise refusal
        if self.index_switch is None or self.index_switch.unavailable is not None:
            return None
        return await self.index_switch.build(record.embedder_path, on_start=on_start)

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

    def answer_figures(self, version: str) -> dict | None:
        """Golden figures per language and mode of the version serving as `version` (a backend's
        version label): measured by this appliance's gate, else recorded by the build in its
        manifest; None when neither measured it (answers are then quoted)."""
        cached = self._figures.get(version)
        if cached is not None and time.monotonic() - cached[0] < FIGURES_SECONDS:
            return cached[1]
        name, _, number = version.partition("/")
        try:
            record = self.registry.get(name, number)
        except ApplianceError:
            figures = None
        else:
            golden = record.validation.get("checks", {}).get("golden") or record.validation.get("golden") or {}
            figures = golden.get("answers") or record.manifest.get("answer_figures") or None
        self._figures[version] = (time.monotonic(), figures)
        return figures

    async def _current_golden(self) -> dict[str, Any]:
        with self.serving.lease(ready=False) as lease:
            return await self._score_and_record(lease.backend)

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

