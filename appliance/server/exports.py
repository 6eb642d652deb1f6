"""CSV downloads for admins: the audit log and daily usage over a period. Each export is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Stream

from appliance.accounts import Accounts
from appliance.accounts.exports import (
    AUDIT_COLUMNS,
    Period,
    audit_pages,
    audit_rows,
    content_disposition,
    csv_body,
    csv_header,
    usage_csv,
)
from appliance.server.auth import admin_only, client_ip, require_principal
from appliance.server.quotas import quotas_of

Day = Annotated[str | None, QueryParameter(max_length=10)]
CSV = "text/csv"  # Litestar adds "; charset=utf-8"


def _download(name: str) -> dict[str, str]:
    return {"Content-Disposition": content_disposition(name), "Cache-Control": "no-store"}


def _record(request: Request, accounts: Accounts, action: str, period: Period) -> None:
    principal = require_principal(request)
    accounts.audit(principal.name, action, f"{period.since}..{period.until}", status=200,
                   ip=client_ip(request.scope), via=principal.via)


class ExportsController(Controller):
    path = "/api/admin"
    tags = ["Exports"]
    guards = [admin_only]

    @get("/audit/export", summary="The audit log of a period as CSV (days as YYYY-MM-DD in "
         "quotas.timezone, both included; default the last 30 days)", media_type=CSV)
    async def audit_export(self, request: Request, state: State, since: Day = None,
                           until: Day = None) -> Stream:
        accounts: Accounts = state.accounts
        period = Period.parse(since, until, quotas_of(state).zone)
        await anyio.to_thread.run_sync(_record, request, accounts, "audit_exported", period)
        pages = audit_pages(accounts, period)

        async def body() -> AsyncIterator[str]:
            yield csv_header(AUDIT_COLUMNS)
            # One page per worker-thread hop: a year of entries never sits in memory at once.
            while (page := await anyio.to_thread.run_sync(next, pages, None)) is not None:
                yield csv_body(audit_rows(page, period.zone))

        return Stream(body(), media_type=CSV, headers=_download(period.name("audit")))

    @get("/usage/export", summary="Daily usage per user and API key over a period as CSV",
         media_type=CSV)
    async def usage_export(self, request: Request, state: State, since: Day = None,
                           until: Day = None) -> Response:
        quotas = quotas_of(state)
        period = Period.parse(since, until, quotas.zone)

        def build() -> str:
            _record(request, state.accounts, "usage_exported", period)
            return usage_csv(quotas.usage(period.since.isoformat(), period.until.isoformat()))

        text = await anyio.to_thread.run_sync(build)
        return Response(text, media_type=CSV, headers=_download(period.name("usage")))
