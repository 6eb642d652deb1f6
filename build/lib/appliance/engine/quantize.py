"""Re-encode GGUF weights with llama.cpp's own quantizer (used for the bundled model and by builds)."""

from __future__ import annotations

import os
from pathlib import Path

import llama_cpp as llama

from appliance.engine.model import init_backend
from appliance.errors import ConfigError, ModelLoadError

FILE_TYPES = {
    "f16": llama.LLAMA_FTYPE_MOSTLY_F16,
    "q8_0": llama.LLAMA_FTYPE_MOSTLY_Q8_0,
    "q4_0": llama.LLAMA_FTYPE_MOSTLY_Q4_0,
    "q4_1": llama.LLAMA_FTYPE_MOSTLY_Q4_1,
    "q4_k_m": llama.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "q5_k_m": llama.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "q6_k": llama.LLAMA_FTYPE_MOSTLY_Q6_K,
}


def quantize(src: Path, dst: Path, file_type: str, *, threads: int = 0) -> Path:
    """Write `src` re-encoded as `file_type` to `dst` atomically (temp file, fsync, rename)."""
    if file_type not in FILE_TYPES:
        raise ConfigError(f"Unknown GGUF type {file_type!r}; choose one of {', '.join(FILE_TYPES)}.")
    init_backend()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    params = llama.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[file_type]
    params.allow_requantize = True
    params.nthread = threads or os.cpu_count() or 1
    try:
        rc = llama.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if rc != 0 or not tmp.exists():
            raise ModelLoadError(f"llama.cpp could not quantize {src} to {file_type} (code {rc}).")
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst
