"""Operating-system names for the appliance's own threads, so `top -H`, `ps -L` and
/proc/PID/task/*/comm tell the engine, the metrics writer and the alert dispatcher apart (and a
benchmark can account CPU time to each). Linux only; elsewhere a no-op."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

_PR_SET_NAME = 15
_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        _libc = None


def name_native_thread(name: str | None = None) -> None:
    """Give the calling thread an OS-level name (at most 15 bytes): `name`, or its Python name.

    Threads it starts afterwards (llama.cpp's OpenMP workers, for the engine) inherit the name."""
    if _libc is None:
        return
    label = (name or threading.current_thread().name).encode("utf-8", "replace")[:15]
    _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(label), 0, 0, 0)


def start_named_thread(target, name: str) -> threading.Thread:
    """Start `target` on a daemon thread called `name`, and return once the thread carries that
    name at the OS level too (so /proc and `top -H` show it from the moment `start` returns)."""
    named = threading.Event()

    def body():
        name_native_thread(name)
        named.set()
        target()

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    named.wait()
    return thread
