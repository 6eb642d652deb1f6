"""Run the app under uvicorn: first SIGINT/SIGTERM drains in-flight requests, a second stops at once."""

from __future__ import annotations

import logging

import uvicorn

from appliance.datafolder import FolderBusy, busy_message, read_holder
from appliance.settings import Settings

log = logging.getLogger(__name__)


def run_server(settings: Settings) -> None:
    from appliance.cli import configure_logging
    from appliance.server.app import create_app

    configure_logging(settings.log_level)
    holder = read_holder(settings.resolved_data_dir(), attempts=10)
    if holder is not None and holder.kind == "server":  # refused before anything loads
        raise FolderBusy(busy_message(settings.resolved_data_dir(), holder))
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.server.drain_seconds,
        lifespan="on",
        access_log=settings.log_level == "debug",
    )
    log.info("serving on http://%s:%s (data in %s)", settings.server.host, settings.server.port,
             settings.resolved_data_dir())
    uvicorn.Server(config).run()
