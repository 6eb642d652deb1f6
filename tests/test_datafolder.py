"""The data folder's lock: one holder at a time, a server waits for a command, kill -9 frees it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from appliance.datafolder import DataFolderLock, FolderBusy, local_token, read_holder

HOLD = ("import sys, time; from pathlib import Path; from appliance.datafolder import DataFolderLock\n"
        "lock = DataFolderLock(Path(sys.argv[1])); lock.acquire(sys.argv[2], command='appliance ingest')\n"
        "print('held', flush=True); time.sleep(600)\n")


def hold_in_process(data_dir, kind: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(data_dir), kind], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path):
    with DataFolderLock(tmp_path) as first:
        first.acquire("command", command="appliance ingest")
        with pytest.raises(FolderBusy, match=r"`appliance ingest` \(pid \d+\); wait for it"):
            DataFolderLock(tmp_path).acquire("command", command="appliance users create")
        holder = read_holder(tmp_path)
        assert holder.kind == "command" and holder.pid == os.getpid()
    assert read_holder(tmp_path) is None
    DataFolderLock(tmp_path).acquire("command")  # free again


def test_a_server_is_refused_by_a_server_but_waits_for_a_command(tmp_path):
    with DataFolderLock(tmp_path) as server:
        server.acquire("server")
        server.publish_url("http://127.0.0.1:8080")
        with pytest.raises(FolderBusy, match="served by an appliance server .*127.0.0.1:8080"):
            DataFolderLock(tmp_path).acquire("server", wait_for_commands=True)

    command = hold_in_process(tmp_path, "command")
    waiting = DataFolderLock(tmp_path)
    acquired = threading.Event()
    thread = threading.Thread(target=lambda: (waiting.acquire("server", wait_for_commands=True),
                                              acquired.set()))
    thread.start()
    try:
        assert not acquired.wait(1.0)  # still waiting for the command
        command.send_signal(signal.SIGKILL)  # even a killed command frees the folder
        assert acquired.wait(10)
        assert read_holder(tmp_path).kind == "server"
    finally:
        command.kill()
        thread.join()
        waiting.release()


def test_a_holder_file_left_by_a_killed_holder_is_ignored(tmp_path):
    proc = hold_in_process(tmp_path, "server")
    assert read_holder(tmp_path).pid == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / "holder.json").exists()
    assert read_holder(tmp_path) is None
    with DataFolderLock(tmp_path) as lock:
        lock.acquire("command")


def test_the_local_admin_token_is_readable_only_by_its_owner(tmp_path):
    with DataFolderLock(tmp_path) as lock:
        lock.acquire("server")
        token = lock.issue_token()
        path = tmp_path / "run" / "admin-token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700
        assert local_token(tmp_path) == token and token.startswith("local-")
    assert not path.exists() and local_token(tmp_path) is None


def test_readers_probing_do_not_make_a_holder_fail(tmp_path):
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            read_holder(tmp_path)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(50):
            lock = DataFolderLock(tmp_path)
            lock.acquire("command")
            lock.release()
            time.sleep(0.001)
    finally:
        stop.set()
        prober.join()
