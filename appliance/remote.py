"""The running server as commands reach it: found through the data folder's lock, authenticated
with its local admin token (or an admin's API key), its error bodies raised as ApplianceErrors.

`writer(settings, command)` is how a command that changes data picks its way: with a server
holding the data folder it yields that server (act through its API), otherwise it takes the
folder's lock for the command's duration and yields None (act on the files directly).
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from appliance.datafolder import (
    DataFolderLock,
    FolderBusy,
    Holder,
    busy_message,
    local_token,
    read_holder,
)
from appliance.errors import ApplianceError
from appliance.settings import Settings

OPERATOR_HEADER = "X-Appliance-Operator"
STARTING_SECONDS = 60.0  # a server that holds the folder but does not answer yet is starting


class ServerError(ApplianceError):
    """An error the running server answered with (its message says what to do)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


def operator_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


@dataclass
class RunningServer:
    """A server that holds a data folder, and the credential a command uses with it."""

    url: str
    credential: str
    holder: Holder

    def call(self, method: str, path: str, *, timeout: float = 3600, **kwargs: Any) -> Any:
        """One API call; connection errors are retried while the server starts."""
        headers = {"Authorization": f"Bearer {self.credential}", OPERATOR_HEADER: operator_name()}
        deadline = time.monotonic() + STARTING_SECONDS
        while True:
            try:
                response = httpx.request(method, f"{self.url}{path}", headers=headers,
                                         timeout=timeout, **kwargs)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise ApplianceError(
                        f"The appliance server (pid {self.holder.pid}) holds the data folder but "
                        f"does not answer at {self.url}; check its log, or stop it.") from None
                time.sleep(0.2)
            except httpx.HTTPError as exc:
                raise ApplianceError(f"The appliance server at {self.url} stopped answering ({exc}); "
                                     "check its log.") from exc
        if response.status_code >= 400:
            raise _error_of(response)
        return response.json() if response.content else None

    def wait_knowledge(self, timeout: float = 600) -> None:
        """Wait until the server's knowledge base is open (first start ingests the sample)."""
        deadline = time.monotonic() + timeout
        while True:
            retrieval = (self._ready().get("retrieval") or {})
            if retrieval.get("status") == "ready":
                return
            if retrieval.get("status") == "unavailable":
                raise ApplianceError(f"The server's knowledge base is unavailable: "
                                     f"{retrieval.get('message')}")
            if time.monotonic() > deadline:
                raise ApplianceError("The server's knowledge base did not open in time; check its log.")
            time.sleep(0.5)

    def _ready(self) -> dict:
        try:
            return self.call("GET", "/ready", timeout=30)
        except ServerError as exc:
            if exc.status == 503:  # the model may still load: retrieval is reported all the same
                return getattr(exc, "body", {}) or {}
            raise


def _error_of(response: httpx.Response) -> ServerError:
    try:
        body = response.json()
        error = body["error"]
        message, code = error["message"], str(error.get("code", "error"))
    except (ValueError, KeyError, TypeError):
        body, message, code = {}, f"HTTP {response.status_code}: {response.text[:200]}", "error"
    if response.status_code in (401, 403):
        message += (" Commands act through the running server as an admin: run them as the "
                    "service user (who can read the server's local admin token), or pass an admin's "
                    "API key with --api-key or $APPLIANCE_API_KEY.")
    error = ServerError(response.status_code, code, message)
    error.body = body  # type: ignore[attr-defined]
    return error


def connect_url(host: str, port: int) -> str:
    """Where a command on this machine reaches a server listening on `host`."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def find_server(data_dir: Path, api_key: str | None = None) -> RunningServer | None:
    """The server holding `data_dir`, or None when no server does. Raises FolderBusy when a
    command holds it, and explains when this user has no way to act as an admin."""
    holder = read_holder(data_dir, attempts=50)
    if holder is None:
        return None
    if holder.kind != "server":
        raise FolderBusy(busy_message(data_dir, holder))
    credential = api_key or local_token(data_dir)
    if not credential:
        raise ApplianceError(
            f"{holder.describe().capitalize()} holds the data folder {data_dir}, and this user cannot "
            "read its local admin token (run/admin-token): run the command as the service user "
            "(sudo -u erp-appliance ...), or pass an admin's API key with --api-key or "
            "$APPLIANCE_API_KEY.")
    deadline = time.monotonic() + 5
    while not holder.url and time.monotonic() < deadline:  # it took the folder a moment ago
        time.sleep(0.05)
        holder = read_holder(data_dir, attempts=10) or holder
    if not holder.url:
        raise ApplianceError(f"{holder.describe().capitalize()} holds the data folder {data_dir} but "
                             "has not said where it listens; check its log, or stop it.")
    return RunningServer(holder.url, credential, holder)


@contextmanager
def writer(settings: Settings, command: str, *, api_key: str | None = None
           ) -> Iterator[RunningServer | None]:
    """The running server to act through, or None while this command holds the folder itself."""
    data_dir = settings.resolved_data_dir()
    lock = DataFolderLock(data_dir)
    try:
        lock.acquire("command", command=command)
    except FolderBusy:
        server = find_server(data_dir, api_key)
        if server is None:  # it was freed meanwhile: take it after all
            lock.acquire("command", command=command)
        else:
            yield server
            return
    try:
        yield None
    finally:
        lock.release()
