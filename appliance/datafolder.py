"""One writer per data folder: whoever changes the data holds an exclusive lock on `run/lock`.

The server holds it for its whole life and records in `run/holder.json` where it listens; a
command that changes data (ingest, users, keys, models) takes it while it works, or, when a
server holds it, acts through that server's API instead. The server also writes a local admin
token (`run/admin-token`, readable only by the service user) so an operator on the same machine
can do that without creating an API key first. The kernel drops the lock when its holder dies,
even by kill -9; a holder file left behind by a dead holder is ignored.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

RUN_DIR = "run"
LOCAL_TOKEN_PREFIX = "local-"
_WAIT_LOG_SECONDS = 30.0


class FolderBusy(ApplianceError):
    status = 409
    code = "data_folder_busy"


@dataclass(frozen=True)
class Holder:
    """Who holds a data folder: `kind` is "server" or "command"."""

    kind: str
    pid: int
    command: str = ""
    url: str = ""
    since: float = 0.0

    def describe(self) -> str:
        if self.kind == "server":
            return f"an appliance server (pid {self.pid}{', ' + self.url if self.url else ''})"
        return f"`{self.command or 'appliance'}` (pid {self.pid})"


def run_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RUN_DIR


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class DataFolderLock:
    """The exclusive lock on one data folder (fcntl.flock on run/lock)."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.run = run_dir(self.data_dir)
        self._fd: int | None = None
        self.holder: Holder | None = None
        self.token: str | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, kind: str, *, command: str = "", wait_for_commands: bool = False) -> None:
        """Take the lock or raise FolderBusy naming the holder. A server (`wait_for_commands`)
        waits for a command that holds it to finish, and refuses only another server."""
        try:
            self.run.mkdir(parents=True, exist_ok=True)
            os.chmod(self.run, 0o700)
            fd = os.open(self.run / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:
            raise FolderBusy(f"This user may not write the data folder {self.data_dir} (it belongs "
                             "to the appliance's service user); run the command as that user, e.g. "
                             "`sudo -u erp-appliance appliance ...`.") from None
        last_log = 0.0
        unknown_until = time.monotonic() + 2.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            other = read_holder(self.data_dir, attempts=10)
            if other is None:
                # Free again, or held by a holder still writing its file (or by a reader's
                # probe this instant): try again for a moment before calling it busy.
                if time.monotonic() < unknown_until:
                    time.sleep(0.02)
                    continue
            elif other.kind == "command" and wait_for_commands:
                if time.monotonic() - last_log > _WAIT_LOG_SECONDS:
                    last_log = time.monotonic()
                    log.warning("waiting for %s to finish with the data folder %s",
                                other.describe(), self.data_dir)
                time.sleep(0.2)
                continue
            os.close(fd)
            raise FolderBusy(busy_message(self.data_dir, other))
        self._fd = fd
        self.holder = Holder(kind, os.getpid(), command=command, since=time.time())
        self._publish()

    def publish_url(self, url: str) -> None:
        """Record where the server listens (once its socket is bound)."""
        if self.holder is not None:
            self.holder = Holder(**{**self.holder.__dict__, "url": url})
            self._publish()

    def issue_token(self) -> str:
        """A new local admin token for this server's life, in a file only the owner reads."""
        self.token = LOCAL_TOKEN_PREFIX + secrets.token_urlsafe(32)
        _write_private(self.run / "admin-token", self.token)
        return self.token

    def _publish(self) -> None:
        _write_private(self.run / "holder.json", json.dumps(self.holder.__dict__))

    def release(self) -> None:
        if self._fd is None:
            return
        for name in ("admin-token", "holder.json"):
            (self.run / name).unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        self.holder = None
        self.token = None

    def __enter__(self) -> DataFolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(data_dir: Path) -> bool:
    """Whether anyone holds the data folder now (a brief shared-lock probe)."""
    path = run_dir(data_dir) / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except PermissionError:
        raise FolderBusy(f"This user may not open the data folder {data_dir} (it belongs to the "
                         "appliance's service user); run the command as that user, e.g. "
                         "`sudo -u erp-appliance appliance ...`.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return False


def read_holder(data_dir: Path, *, attempts: int = 1) -> Holder | None:
    """The live holder of the data folder, or None when it is free (or its file not yet written)."""
    for attempt in range(attempts):
        if not is_locked(data_dir):
            return None
        try:
            fields = json.loads((run_dir(data_dir) / "holder.json").read_text())
            holder = Holder(**fields)
            os.kill(holder.pid, 0)  # a file from a dead holder whose lock another one now holds
            return holder
        except (FileNotFoundError, ValueError, TypeError, ProcessLookupError):
            if attempt + 1 < attempts:
                time.sleep(0.02)
        except PermissionError:  # the process exists but belongs to another user
            return holder
    return None


def local_token(data_dir: Path) -> str | None:
    """The running server's local admin token, if this user may read it."""
    try:
        return (run_dir(data_dir) / "admin-token").read_text().strip() or None
    except (FileNotFoundError, PermissionError):
        return None


def busy_message(data_dir: Path, holder: Holder | None) -> str:
    who = holder.describe() if holder is not None else "another appliance process"
    if holder is not None and holder.kind == "server":
        return (f"The data folder {data_dir} is served by {who}; stop it first, or give this one "
                "another --data-dir.")
    return f"The data folder {data_dir} is being changed by {who}; wait for it to finish, then retry."
