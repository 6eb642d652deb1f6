"""The gate a version passes before it may become active: checksums, isolated load, golden QA."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from appliance import manifest as manifests
from appliance.answers import golden
from appliance.errors import ApplianceError
from appliance.llm.base import LLMBackend
from appliance.releases.backends import BackendFactory
from appliance.releases.registry import LOCAL_KINDS, ModelVersion, ReleaseError
from appliance.settings import ReleasesSettings

Progress = Callable[[str, dict[str, Any]], None]  # (step now running, checks finished so far)


class ValidationFailed(ReleaseError):
    code = "validation_failed"
    status = 422


@dataclass
class ValidationReport:
    ok: bool
    reason: str = ""
    checks: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "checks": self.checks,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class Validator:
    """Runs the checks in order and stops at the first failure, whose reason says what to do."""

    def __init__(self, settings: ReleasesSettings, factory: BackendFactory, *,
                 knowledge: Callable[[], Any] | None = None, knowledge_settings=None,
                 answer_settings=None):
        self.settings = settings
        self.factory = factory
        self.knowledge = knowledge or (lambda: None)  # the knowledge base golden questions use
        self.knowledge_settings = knowledge_settings
        self.answer_settings = answer_settings  # answers.mode: which modes the run scores

    def golden_mode(self) -> str:
        return golden.RETRIEVAL if self.knowledge() is not None else golden.OPEN_BOOK

    def golden_path(self) -> str:
        configured = self.settings.golden_path
        return str(self.settings.resolve(configured) if configured else golden.BUNDLED_GOLDEN)

    async def validate(self, record: ModelVersion, *, reference_score: float | None = None,
                       reference_backend: LLMBackend | None = None,
                       reference_record: ModelVersion | None = None,
                       progress: Progress | None = None) -> ValidationReport:
        """`reference_backend` (the serving model) or `reference_record` (the active version, loaded
        here) is scored right after the candidate, so both figures come from the same run on the
        same machine; `reference_score` (a recorded score) is used when neither is given."""
        checks: dict[str, Any] = {}
        step = progress or (lambda name, done: None)
        try:
            if record.kind in LOCAL_KINDS:
                step("checksums", dict(checks))
                checks["checksums"] = await anyio.to_thread.run_sync(self.check_checksums, record)
                step("isolated_load", dict(checks))
                checks["isolated_load"] = await self.check_isolated_load(record)
            step("golden", dict(checks))
            checks["golden"] = await self.run_golden(
                record, on_item=lambda done, total: step(f"golden {done}/{total}", dict(checks)),
                warm=True)
            if reference_backend is not None or reference_record is not None:
                step("golden_reference", dict(checks))
                checks["golden_reference"] = await self.score_reference(reference_backend,
                                                                        reference_record)
                reference_score = checks["golden_reference"]["score"]
            self.check_quality(checks["golden"], reference_score, checks.get("golden_reference"))
        except ValidationFailed as exc:
            return ValidationReport(False, exc.message, checks)
        return ValidationReport(True, "", checks)

    async def score_reference(self, backend: LLMBackend | None,
                              record: ModelVersion | None) -> dict[str, Any]:
        """The golden figures of the version the candidate would replace."""
        if backend is not None:
            return await self.score_backend(backend, warm=True)
        try:
            return await self.run_golden(record, warm=True)
        except ValidationFailed as exc:
            raise ValidationFailed(f"The active version {record.key} could not be scored for "
                                   f"comparison: {exc.message}") from exc

    def check_checksums(self, record: ModelVersion) -> dict[str, Any]:
        try:
            manifest = manifests.verify(record.path)
        except manifests.ManifestError as exc:
            raise ValidationFailed(f"Checksum check failed: {exc.message}") from exc
        gguf = record.gguf_path
        with gguf.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ValidationFailed(f"{gguf} is not a GGUF file (bad magic bytes); rebuild the version.")
        return {"ok": True, "files": len(manifest.files)}

    async def check_isolated_load(self, record: ModelVersion) -> dict[str, Any]:
        """Load and run the GGUF in a child process with a timeout: crashes and hangs stay there."""
        timeout = self.settings.load_timeout_seconds
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "appliance.releases.probe", str(record.gguf_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ValidationFailed(
                f"Loading {record.gguf_path.name} hung for more than {timeout:g} s in the isolated test "
                "process; the file is likely corrupt (or raise releases.load_timeout_seconds)."
            ) from None
        except BaseException:  # cancelled (a stopped job, shutdown): the child must not outlive it
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        if process.returncode < 0:
            name = signal.Signals(-process.returncode).name
            raise ValidationFailed(
                f"Loading {record.gguf_path.name} crashed llama.cpp ({name}) in the isolated test process; "
                "the file is corrupt or not a model llama.cpp supports."
            )
        lines = stdout.decode("utf-8", "replace").strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise ValidationFailed(
                f"The isolated test load of {record.gguf_path.name} failed (exit {process.returncode}): "
                + " / ".join(tail)
            ) from None
        if not result.get("ok"):
            raise ValidationFailed(f"The model does not load: {result.get('error')}")
        return result

    async def run_golden(self, record: ModelVersion, on_item=None, *, warm: bool = False) -> dict[str, Any]:
        try:
            backend = await anyio.to_thread.run_sync(self.factory, record)
        except ApplianceError as exc:
            raise ValidationFailed(f"The model does not load: {exc.message}") from exc
        try:
            return await self.score_backend(backend, on_item=on_item, warm=warm)
        finally:
            await backend.close()

    async def score_backend(self, backend: LLMBackend, on_item=None, *,
                            warm: bool = False) -> dict[str, Any]:
        """The golden score, with retrieval from the knowledge base when there is one. `warm`:
        one untimed question first, so that one-off costs of a model's first answers and of the
        first retrieval do not land on the timings of whichever version is scored first."""
        items = golden.load_golden(self.golden_path(), limit=self.settings.golden_limit)
        options = {"max_tokens": self.settings.golden_max_tokens, "knowledge": self.knowledge(),
                   "knowledge_settings": self.knowledge_settings,
                   "answer_settings": self.answer_settings}
        if warm and items:
            await golden.score(backend, items[:1], **options)
        return await golden.score(backend, items, on_item=on_item, **options)

    def check_quality(self, result: dict[str, Any], reference_score: float | None,
                      reference: dict[str, Any] | None = None) -> None:
        """The score rule (at least the reference's minus the tolerance), then latency: relative
        to the reference measured in the same run, and under the optional absolute ceiling."""
        s = self.settings
        if result["errors"] == result["items"]:
            raise ValidationFailed(f"Every golden question failed with an error: {result['first_error']}")
        if reference_score is not None:
            floor = reference_score - s.golden_tolerance
            if result["score"] < floor - 1e-9:
                raise ValidationFailed(
                    f"Golden QA score {result['score']:.2f} is below the active version's "
                    f"{reference_score:.2f} minus the tolerance {s.golden_tolerance:.2f} "
                    f"({result['passed']} of {result['items']} passed, {result['mode'].replace('_', ' ')})."
                )
        p95 = result["latency_p95"]
        if reference and reference.get("latency_p95") and p95 > reference["latency_p95"] * s.golden_latency_ratio:
            raise ValidationFailed(
                f"Golden answers took {p95:.1f} s at p95, over {s.golden_latency_ratio:g} x the serving "
                f"version's {reference['latency_p95']:.1f} s measured in the same run "
                "(releases.golden_latency_ratio)."
            )
        if s.max_latency_seconds and p95 > s.max_latency_seconds:
            raise ValidationFailed(
                f"Golden answers took {p95:.1f} s at p95, over the ceiling "
                f"releases.max_latency_seconds = {s.max_latency_seconds:g}."
            )
