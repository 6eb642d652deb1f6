"""The Litestar application: `create_app(settings)`; resources live on `app.state`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components

from appliance import __version__
from appliance.accounts import Accounts
from appliance.accounts.quotas import Quotas
from appliance.assistant import Assistant
from appliance.cache import ResponseCache
from appliance.datafolder import DataFolderLock
from appliance.errors import ApplianceError, DirectoryUnavailable
from appliance.llm.base import LLMBackend
from appliance.monitoring.monitor import Monitor
from appliance.remote import connect_url
from appliance.server.accounts import AdminController, AuthController
from appliance.server.auth import (
    CREDENTIALS,
    SECURITY_SCHEMES,
    AuthMiddleware,
    is_loopback,
    local_principal,
)
from appliance.server.conversations import ConversationsController
from appliance.server.errors import exception_handlers
from appliance.server.exports import ExportsController
from appliance.server.health import HealthController
from appliance.server.knowledge import KnowledgeController, SourcesController
from appliance.server.models_admin import ModelsController
from appliance.server.monitoring import MonitoringController
from appliance.server.openai import OpenAIController
from appliance.server.quotas import QuotaMiddleware, QuotasController, UsageController, write_usage
from appliance.server.request_metrics import RequestMetricsMiddleware
from appliance.server.ui import ui_router
from appliance.settings import Settings

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 3600.0  # expired sessions and audit entries past their retention go hourly


def load_backend(settings: Settings) -> LLMBackend:
    from appliance.llm import create_backend

    return create_backend(settings)


def watch_backend(backend: LLMBackend, alerts) -> None:
    """Alerts for what a backend reports itself: an upstream outage (saying whether a fallback
    answers) and a failed generation engine; recovery resolves them."""
    listeners = getattr(backend, "listeners", None)
    if listeners is None or any(getattr(known, "alerts", None) is alerts for known in listeners):
        return  # nothing to watch, or watched already (a release factory's backend)

    fallback = getattr(backend, "fallback", None)
    meanwhile = f"; {fallback.version} answers meanwhile" if fallback is not None else ""

    def on_event(event: str, detail: dict) -> None:
        if event == "outage_started":
            alerts.set_condition("upstream_outage", True,
                                 f"The upstream LLM at {detail['base_url']} is failing: "
                                 f"{detail['reason']}{meanwhile}.")
        elif event == "outage_ended":
            alerts.set_condition("upstream_outage", False,
                                 f"The upstream LLM at {detail['base_url']} answers again after "
                                 f"{detail['seconds']:.0f} s.")
        elif event == "engine_failed":
            alerts.set_condition("engine_failure", True,
                                 f"The generation engine of {detail['model']} failed "
                                 f"({detail['reason']}); the requests it held got 503, and it "
                                 f"restarts in {detail['retry_in']:.1f} s.")
        elif event == "engine_restarted":
            alerts.set_condition("engine_failure", False,
                                 f"The generation engine of {detail['model']} serves again after "
                                 f"{detail['seconds']:.1f} s.")

    on_event.alerts = alerts  # type: ignore[attr-defined]
    listeners.append(on_event)
    if fallback is not None:
        watch_backend(fallback, alerts)


def watched_factory(factory, alerts):
    """A release backend factory whose backends raise alerts like the first one."""

    def create(record):
        backend = factory(record)
        watch_backend(backend, alerts)
        return backend

    return create


def _release_alerts(monitor: Monitor):
    """Rollbacks and failed activations go out through the monitoring alert channels."""

    def on_alert(severity: str, title: str, detail: str) -> None:
        name = "release_" + "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_")
        monitor.alerts.set_condition(name[:64], True, f"{title}: {detail}", severity=severity)

    return on_alert


def _model_error(state: State) -> str | None:
    return state.get("model_error")


def open_knowledge(settings: Settings, assistant: Assistant, state: State) -> None:
    """Open the knowledge base; on a fresh data dir, ingest the bundled sample (blocking)."""
    from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path

    state.knowledge_status = "opening"
    kb = KnowledgeBase.open(settings)
    fresh = kb.store.meta("sample_ingested") is None and not kb.store.documents()
    if fresh and settings.knowledge.ingest_sample_on_first_start and sample_kb_path().is_dir():
        state.knowledge_status = "ingesting"
        assistant.knowledge = kb  # searchable while the sample goes in
        report = kb.ingest([sample_kb_path()])
        log.info("ingested the sample knowledge base: %d documents, %d chunks, %d failed",
                 len(report.added), report.chunks, len(report.failed))
    kb.store.set_meta("sample_ingested", "1")
    assistant.knowledge = kb
    state.knowledge_status = "ready"
    kb.start_rechunk()  # documents cut by an older chunker: search serves them meanwhile


def open_accounts(settings: Settings, state: State) -> Accounts:
    """Open accounts.db; with auth off, every request acts as the local developer (blocking)."""
    accounts = Accounts.open(settings)
    accounts.housekeeping()
    state.accounts = accounts
    if not settings.auth.enabled:
        state.local_principal = local_principal(accounts, settings)
        where = settings.server.host
        log.warning("auth is off (auth.enabled = false): every request acts as the local developer, "
                    "an admin%s", "" if is_loopback(where) else
                    f", and the server listens on {where}: anyone who reaches it is an admin")
    elif accounts.admin_count() == 0:
        log.warning("no admin account yet: create one with `appliance users create-admin --username NAME` "
                    "(same data dir), then sign in at the web UI or create API keys")
    directory = accounts.directory
    if settings.auth.enabled and directory is not None:
        log.info("directory sign-in through %s (%s), %d mapped groups", directory.settings.url,
                 directory.transport, len(directory.settings.groups))
        if not directory.can_check:
            log.warning("no directory service account (auth.directory.bind_dn): a user removed or "
                        "disabled in the directory keeps their sessions and keys until they expire")
    return accounts


async def directory_checks(accounts: Accounts, interval: float) -> None:
    """Re-check directory users who hold sessions or keys every `interval` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            done = await anyio.to_thread.run_sync(accounts.check_directory_users)
        except DirectoryUnavailable as exc:  # nothing is cut on a guess; the next round retries
            log.warning("directory check skipped: %s", exc.message)
            continue
        except Exception:
            log.exception("directory check failed; it runs again in %.0f s", interval)
            continue
        if done["shut_out"]:
            log.info("directory check: %d of %d users shut out (removed, disabled or unmapped)",
                     done["shut_out"], done["checked"])


async def housekeeping(accounts: Accounts) -> None:
    """The accounts' periodic clean-up, off the request path, until cancelled."""
    while True:
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
        try:
            done = await anyio.to_thread.run_sync(accounts.housekeeping)
        except Exception:  # a locked or full disk now must not end the clean-up for good
            log.exception("accounts housekeeping failed; it runs again in %.0f s", HOUSEKEEPING_SECONDS)
            continue
        if done["audit"]:
            log.info("deleted %d audit entries older than %d days", done["audit"],
                     accounts.settings.audit_retention_days)


async def scheduled_backups(settings: Settings) -> None:
    """Back up on `backup.schedule`, keeping the newest `backup.keep`, until cancelled."""
    from datetime import datetime

    from apscheduler.triggers.cron import CronTrigger

    from appliance.backup import scheduled_backup

    trigger = CronTrigger.from_crontab(settings.backup.schedule)
    while True:
        now = datetime.now().astimezone()
        fire = trigger.get_next_fire_time(None, now)
        await asyncio.sleep(max(0.0, (fire - now).total_seconds()))
        try:
            report = await anyio.to_thread.run_sync(scheduled_backup, settings)
            log.info("scheduled backup written: %s (%s)", report.path, report.summary())
        except Exception:  # a full disk tonight must not end tomorrow's backup
            log.exception("scheduled backup failed; the next one runs as scheduled")


def create_app(settings: Settings, backend: LLMBackend | None = None, *, knowledge=None) -> Litestar:
    """Build the app. Without `backend`, the model loads in the background after start-up;
    without `knowledge`, the knowledge base opens (and on first start ingests) in the background."""
    cache = ResponseCache(settings.cache.max_entries, settings.cache.ttl_seconds, settings.cache.enabled)
    assistant = Assistant(backend, cache, knowledge=knowledge, knowledge_settings=settings.knowledge,
                          answer_settings=settings.answers)
    monitor = Monitor(settings, assistant) if settings.monitoring.enabled else None
    state = State({"settings": settings, "assistant": assistant, "model_error": None,
                   "monitor": monitor, "accounts": None, "quotas": None, "local_principal": None,
                   "data_folder": None, "local_token": None,
                   "knowledge_status": "ready" if knowledge is not None else "opening"})
    holder: dict = {}  # the release manager opens in the lifespan, where the data dir exists

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.resolved_data_dir().mkdir(parents=True, exist_ok=True)
        # One writer per data folder: this server, until it stops (a command that holds the
        # folder now is waited for; another server is refused).
        folder = state.data_folder = DataFolderLock(settings.resolved_data_dir())
        await anyio.to_thread.run_sync(lambda: folder.acquire(
            "server", command="appliance serve", wait_for_commands=True))
        try:
            state.local_token = folder.issue_token()
            folder.publish_url(connect_url(settings.server.host, settings.server.port))
            async with _serving(app):
                yield
        finally:
            folder.release()

    @asynccontextmanager
    async def _serving(app: Litestar) -> AsyncIterator[None]:
        accounts = await anyio.to_thread.run_sync(open_accounts, settings, state)
        quotas = state.quotas = await anyio.to_thread.run_sync(Quotas, accounts, settings.quotas)
        from appliance.releases import ReleaseManager
        from appliance.releases.backends import backend_factory
        from appliance.releases.reembed import KnowledgeIndexSwitch

        # With monitoring on, probation judges on its store and alerts through its channels.
        monitoring = {"on_alert": _release_alerts(monitor), "monitoring_store": monitor.store,
                      "factory": watched_factory(backend_factory(settings), monitor.alerts)} \
            if monitor is not None else {}
        releases = holder["releases"] = app.state.releases = ReleaseManager(
            settings, assistant, index_switch=KnowledgeIndexSwitch(assistant, settings), **monitoring)
        assistant.figures = releases.answer_figures  # auto mode: per version and language
        releases.start()
        if monitor is not None:  # no accuracy run on the same cores while a version is timed
            monitor.golden_deferred_by = releases.busy
        cleaner = asyncio.create_task(housekeeping(accounts), name="accounts housekeeping")
        backups = asyncio.create_task(scheduled_backups(settings), name="scheduled backups") \
            if settings.backup.schedule else None
        checker = None
        check_minutes = settings.auth.directory.check_minutes
        if settings.auth.enabled and accounts.directory is not None and accounts.directory.can_check \
                and check_minutes > 0:
            checker = asyncio.create_task(directory_checks(accounts, check_minutes * 60),
                                          name="directory checks")
        usage_writer = asyncio.create_task(write_usage(quotas), name="usage writer")
        loader = knowledge_task = None
        if assistant.backend is None:
            loader = asyncio.create_task(_load(app))
        elif monitor is not None:
            watch_backend(assistant.backend, monitor.alerts)
        if assistant.knowledge is None:
            knowledge_task = asyncio.create_task(_open_knowledge())
        if monitor is not None:
            monitor.start()
        if assistant.knowledge is not None:
            await _start_sources()
        try:
            yield
        finally:
            holder["stopping"] = True
            cleaner.cancel()
            if backups is not None:
                backups.cancel()
            if checker is not None:
                checker.cancel()
            if loader is not None and not loader.done():
                loader.cancel()
            await releases.stop()
            # The answers under way end first (within the drain time), then the model is freed.
            await assistant.serving.shutdown(settings.server.drain_seconds)
            if knowledge_task is not None:
                # A sample ingest in flight finishes its document; repair covers the rest.
                await asyncio.wait({knowledge_task}, timeout=settings.server.drain_seconds)
            await _stop_sources()
            if assistant.knowledge is not None and knowledge is None:
                await anyio.to_thread.run_sync(assistant.knowledge.close)
            releases.close()
            if monitor is not None:  # last, so the drained requests are recorded too
                await monitor.stop()
            # A clean-up or directory check in flight ends first.
            await asyncio.gather(cleaner, *([checker] if checker else []), return_exceptions=True)
            usage_writer.cancel()
            await asyncio.gather(usage_writer, return_exceptions=True)
            await anyio.to_thread.run_sync(quotas.flush)  # the drained requests' usage too
            accounts.close()

    async def _start_sources() -> None:
        """Watched sources run once the knowledge base is open (on the event loop's scheduler)."""
        from appliance.knowledge.sources import SourceScheduler

        if holder.get("stopping"):  # the knowledge base opened while the server was stopping
            return
        scheduler = SourceScheduler(assistant.knowledge.sources, settings.releases.timezone)
        try:
            scheduler.start()
        except Exception:  # answering goes on; only the watched folders wait for a restart
            log.exception("watched sources could not start")
            return
        holder["sources"] = scheduler

    async def _stop_sources() -> None:
        scheduler = holder.pop("sources", None)
        if scheduler is not None:  # a run in progress stops after its current file
            await anyio.to_thread.run_sync(scheduler.stop, settings.server.drain_seconds)

    async def _open_knowledge() -> None:
        try:
            await anyio.to_thread.run_sync(open_knowledge, settings, assistant, state)
        except ApplianceError as exc:
            state.knowledge_status = "unavailable"
            assistant.knowledge_error = exc.message
            log.warning("retrieval unavailable, answering without the knowledge base: %s",
                        exc.message)
        except Exception:
            state.knowledge_status = "unavailable"
            assistant.knowledge_error = "The knowledge base failed to open; the server log has details."
            log.exception("knowledge base failed to open")
        else:
            await _start_sources()

    async def _load(app: Litestar) -> None:
        try:
            backend = await anyio.to_thread.run_sync(_startup_backend, app)
            assistant.serving.install(backend)
            if monitor is not None:
                watch_backend(backend, monitor.alerts)
            log.info("model ready: %s", backend.version)
        except ApplianceError as exc:
            app.state.model_error = exc.message
            log.error("model failed to load: %s", exc.message)

    def _startup_backend(app: Litestar) -> LLMBackend:
        """The registry's active version; the bundled or configured model is registered first
        (as the active version when none was activated), so it is a version to roll back to."""
        releases = app.state.releases
        try:
            served = releases.register_served_model()
        except ApplianceError as exc:
            if releases.registry.active() is None:
                raise
            # An activated version serves without it; only the way back to it is missing.
            log.warning("the configured model could not be registered as a version: %s", exc.message)
            served = None
        active = releases.registry.active()
        if active is not None:
            try:
                return releases.factory(active)
            except ApplianceError as exc:
                log.error("active version %s does not load (%s); serving the configured model",
                          active.key, exc.message)
                releases.registry.record("load_failed", active.name, active.version, reason=exc.message)
        if served is not None and (active is None or served.key != active.key):
            return releases.factory(served)
        return load_backend(settings)

    # Outermost first: request metrics also count the requests that authentication refuses.
    middleware = [DefineMiddleware(RequestMetricsMiddleware, monitor=monitor)] if monitor else []
    middleware.append(DefineMiddleware(AuthMiddleware, settings=settings))
    middleware.append(DefineMiddleware(QuotaMiddleware))  # inside auth: it needs the caller
    handlers = [HealthController, OpenAIController, KnowledgeController, SourcesController,
                MonitoringController, ModelsController, AuthController, AdminController,
                ConversationsController, UsageController, QuotasController, ExportsController]
    if settings.server.ui:
        handlers.append(ui_router())
    return Litestar(
        route_handlers=handlers,
        dependencies={
            "assistant": Provide(lambda: assistant, sync_to_thread=False),
            "model_error": Provide(_model_error, sync_to_thread=False),
            "releases": Provide(lambda: holder["releases"], sync_to_thread=False),
            "sources": Provide(lambda: holder.get("sources"), sync_to_thread=False),
            "accounts": Provide(lambda: state.accounts, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False),
        },
        state=state,
        middleware=middleware,
        lifespan=[lifespan],
        exception_handlers=exception_handlers,
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="ERP Appliance API", version=__version__, path="/schema",
            description="OpenAI-compatible chat, completions and embeddings over the appliance's "
            "local models, grounded in its knowledge base. Every operation needs an API key "
            "(`Authorization: Bearer erp-...`) or the web UI's session unless it says otherwise.",
            security=CREDENTIALS, components=Components(security_schemes=SECURITY_SCHEMES),
        ),
        debug=False,
    )
