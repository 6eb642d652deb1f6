"""Per-interval system samples: process and system memory, CPU, engine queue and slots, GPU.

GPU figures come from NVML (nvidia-ml-py) or, failing that, `nvidia-smi`; without a GPU they are
recorded as absent (NULL), never as zero.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable

import psutil

log = logging.getLogger(__name__)


class GpuProbe:
    """Reads utilization and memory of the first GPU; `available` is False when there is none."""

    def __init__(self):
        self.source = None
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() > 0:
                self._nvml = pynvml
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
                self.source = "nvml"
        except Exception:  # no driver, no device, or no library: try the command line tool
            self._handle = None
        if self.source is None and shutil.which("nvidia-smi") and self._smi() is not None:
            self.source = "nvidia-smi"
        log.info("GPU metrics: %s", self.source or "no GPU found; recorded as absent")

    @property
    def available(self) -> bool:
        return self.source is not None

    def read(self) -> dict:
        absent = {"gpu_utilization_percent": None, "gpu_memory_used_bytes": None,
                  "gpu_memory_total_bytes": None}
        try:
            if self.source == "nvml":
                util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
                mem = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
                return {"gpu_utilization_percent": float(util.gpu),
                        "gpu_memory_used_bytes": int(mem.used), "gpu_memory_total_bytes": int(mem.total)}
            if self.source == "nvidia-smi":
                return self._smi() or absent
        except Exception as exc:
            log.warning("reading GPU metrics failed: %s", exc)
        return absent

    def _smi(self) -> dict | None:
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used,memory.total",
                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=True,
            ).stdout.splitlines()[0]
            util, used, total = (float(x) for x in out.split(","))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None
        mib = 1024 * 1024
        return {"gpu_utilization_percent": util, "gpu_memory_used_bytes": int(used * mib),
                "gpu_memory_total_bytes": int(total * mib)}


class Sampler:
    """Takes one sample on each `sample()`; `engine_status` gives the engine's queue and slots."""

    def __init__(self, engine_status: Callable[[], dict | None] = lambda: None,
                 gpu: GpuProbe | None = None):
        self.engine_status = engine_status
        self.gpu = gpu if gpu is not None else GpuProbe()
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first reading only starts the interval
        psutil.cpu_percent(None)
        self.last: dict | None = None

    def sample(self) -> dict:
        memory = psutil.virtual_memory()
        try:
            engine = self.engine_status() or {}
        except Exception:  # the model may be loading or swapping: queue figures are absent then
            engine = {}
        row = {
            "ts": time.time(),
            "rss_bytes": self.process.memory_info().rss,
            "memory_used_percent": memory.percent,
            "memory_used_bytes": memory.total - memory.available,
            "cpu_percent": psutil.cpu_percent(None),
            "process_cpu_percent": self.process.cpu_percent(None),
            "queue_depth": engine.get("queue_depth"),
            "slots_busy": engine.get("slots_busy"),
            "slots_total": engine.get("slots_total"),
            **self.gpu.read(),
        }
        self.last = row
        return row
