"""Admin API for model versions under /api/models: thin over `ReleaseManager`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from appliance.errors import InvalidRequest
from appliance.releases import ReleaseManager
from appliance.server.auth import admin_only, note_audit, require_principal


class ImportBody(msgspec.Struct, forbid_unknown_fields=True):
    path: str | None = None  # a version folder or archive on the appliance's disk
    upstream_model: str | None = None  # or a model name on the OpenAI-compatible upstream


class ActivateBody(msgspec.Struct, forbid_unknown_fields=True):
    force: bool = False
    reason: str = ""


class ScheduleBody(msgspec.Struct, forbid_unknown_fields=True):
    at: str | None = None  # ISO 8601 time; omitted means the next maintenance window


class RollbackBody(msgspec.Struct, forbid_unknown_fields=True):
    to: str | None = None  # name/version; omitted means the previous good version
    reason: str = ""


class ModelsController(Controller):
    path = "/api/models"
    tags = ["Model versions"]
    guards = [admin_only]

    @get("/", summary="Model versions, the active one, probation and pending schedules")
    async def list_versions(self, releases: NamedDependency[ReleaseManager]) -> dict[str, Any]:
        return {"versions": releases.list(), **releases.status()}

    @get("/history", summary="Every import, validation, activation, rollback and its reason")
    async def history(self, releases: NamedDependency[ReleaseManager],
                      limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 200) -> dict[str, Any]:
        return {"history": releases.history(limit)}

    @post("/import", summary="Import a version folder or archive, or register an upstream model", status_code=201)
    async def import_version(self, data: JSONBody[ImportBody], request: Request,
                             releases: NamedDependency[ReleaseManager]) -> dict:
        if bool(data.path) == bool(data.upstream_model):
            raise InvalidRequest("Give exactly one of path (a version folder or archive) or upstream_model.")
        note_audit(request, data.path or data.upstream_model)
        if data.upstream_model:
            return releases.register_upstream(data.upstream_model, actor=_actor(request)).public()
        from anyio import to_thread

        record = await to_thread.run_sync(lambda: releases.import_path(data.path, actor=_actor(request)))
        note_audit(request, record.key)
        return record.public()

    @get("/{name:str}/{version:str}", summary="One version: state, validation progress and result")
    async def get_version(self, name: FromPath[str], version: FromPath[str],
                          releases: NamedDependency[ReleaseManager]) -> dict:
        return releases.version(f"{name}/{version}")

    @post("/{name:str}/{version:str}/validate", status_code=202,
          summary="Start the validation gate in the background; the version reads `validating` until done")
    async def validate(self, name: FromPath[str], version: FromPath[str], request: Request,
                       releases: NamedDependency[ReleaseManager]) -> dict:
        note_audit(request, f"{name}/{version}")
        job = releases.start_validation(f"{name}/{version}", actor=_actor(request))
        return {"job": job, "version": releases.version(f"{name}/{version}")}

    @post("/{name:str}/{version:str}/activate", status_code=202,
          summary="Start swapping this version in (a background job); the version reads "
          "`activating`, with its step, until done. 200 when it already serves")
    async def activate(self, name: FromPath[str], version: FromPath[str], request: Request,
                       releases: NamedDependency[ReleaseManager],
                       data: JSONBody[ActivateBody | None] = None) -> Response[dict]:
        body = data or ActivateBody()
        ref = f"{name}/{version}"
        note_audit(request, ref, force=body.force, reason=body.reason)
        job = releases.start_activation(ref, actor=_actor(request), force=body.force, reason=body.reason)
        if job is None:
            return Response({"job": None, "changed": False, "version": releases.version(ref)}, status_code=200)
        return Response({"job": job, "changed": True, "version": releases.version(ref)}, status_code=202)

    @post("/{name:str}/{version:str}/schedule", summary="Activate at a time or in the maintenance window",
          status_code=201)
    async def schedule(self, name: FromPath[str], version: FromPath[str], request: Request,
                       releases: NamedDependency[ReleaseManager],
                       data: JSONBody[ScheduleBody | None] = None) -> dict:
        at = parse_time(data.at) if data and data.at else None
        note_audit(request, f"{name}/{version}", at=at.isoformat() if at else "maintenance window")
        return releases.schedule(f"{name}/{version}", at=at, actor=_actor(request))

    @delete("/schedules/{schedule_id:str}", summary="Cancel a pending schedule", status_code=200)
    async def cancel_schedule(self, schedule_id: FromPath[str], request: Request,
                              releases: NamedDependency[ReleaseManager]) -> dict:
        note_audit(request, schedule_id)
        return releases.scheduler.cancel(schedule_id, actor=_actor(request))

    @delete("/reembed", summary="Cancel the knowledge-base re-embedding of an activation in progress",
            status_code=200)
    async def cancel_reembed(self, request: Request, releases: NamedDependency[ReleaseManager]) -> dict:
        note_audit(request, "knowledge-base re-embedding")
        return {"cancelled": releases.cancel_reembed(), "reembed": releases.status()["reembed"]}

    @get("/rollback", summary="Where a rollback would go now (the target version), or why it cannot")
    async def rollback_plan(self, releases: NamedDependency[ReleaseManager]) -> dict[str, Any]:
        plan = releases.rollback_plan()
        return {**plan, "version": releases.version(plan["target"]) if plan["target"] else None}

    @post("/rollback", status_code=202,
          summary="Start rolling back to the previous good version (or a named one) as a background "
          "job, like an activation; the target reads `activating`, with its step, until done. 200 "
          "when it already serves")
    async def rollback(self, request: Request, releases: NamedDependency[ReleaseManager],
                       data: JSONBody[RollbackBody | None] = None) -> Response[dict]:
        body = data or RollbackBody()
        note_audit(request, body.to or "previous good version", reason=body.reason)
        target, job = releases.start_rollback(body.to, actor=_actor(request), reason=body.reason)
        note_audit(request, target.key)
        return Response({"job": job, "changed": job is not None, "target": target.key,
                         "version": releases.version(target.key)},
                        status_code=202 if job is not None else 200)


def _actor(request: Request) -> str:
    """Who acted, as the release history records it."""
    return f"api:{require_principal(request).name}"


def parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not an ISO 8601 time such as 2026-05-01T03:00:00+09:00.",
                             param="at") from None
