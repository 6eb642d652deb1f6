"""Continuous batching over one llama.cpp context: one thread owns the batch and every slot.

Requests join and leave between decode steps; prompts are prefilled in chunks alongside ongoing
decodes; a finished or cancelled request gives back its slot and reservation immediately, and the
KV cells it leaves behind stay only as an evictable prefix cache for later requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp as llama

from appliance.engine.model import Model
from appliance.engine.sampling import TextAssembler, build_sampler
from appliance.errors import ContextLengthExceeded, EngineError, EngineFailed, NotReady, QueueFull
from appliance.llm.base import Finished, SamplingParams, TextDelta
from appliance.settings import EngineSettings
from appliance.threadnames import start_named_thread

log = logging.getLogger(__name__)


@dataclass(eq=False)
class EngineRequest:
    """One admitted generation; events arrive on `events` in the submitting event loop."""

    prompt: list[int]
    params: SamplingParams
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    outbox: list = field(default_factory=list)  # the engine's, shared by its requests
    cancelled: bool = False
    submitted_at: float = field(default_factory=time.perf_counter)
    # Engine-thread state below.
    slot: Slot | None = None
    n_prompt_done: int = 0
    reused_tokens: int = 0
    pending: int | None = None  # sampled token not yet fed back through the model
    n_generated: int = 0
    sampler: object = None
    text: TextAssembler | None = None
    batch_index: int = -1
    finish_reason: str = ""
    first_token_at: float | None = None

    @property
    def reservation(self) -> int:
        return len(self.prompt) + self.max_tokens

    def cancel(self) -> None:
        self.cancelled = True

    def emit(self, event) -> None:
        self.outbox.append((self, event))


@dataclass(eq=False)
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # tokens whose KV cells this sequence holds
    request: EngineRequest | None = None
    released_at: float = 0.0


def _deliver(batch: list[tuple[EngineRequest, object]]) -> None:
    for request, event in batch:
        request.events.put_nowait(event)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class DecodeFailed(Exception):
    """llama_decode failed in a way the engine cannot recover from in place."""


class Engine:
    """Owns a llama.cpp context with `slots` sequences and the thread that steps it.

    The thread frees the context itself when it ends, so nothing frees it under a decode step.
    `on_exit(engine, error)` hears the thread end: `error` is None after `stop`, else what
    killed it (every request it held has been failed with EngineFailed by then).
    """

    def __init__(self, model: Model, settings: EngineSettings, *,
                 on_exit: Callable[[Engine, BaseException | None], None] | None = None):
        self.model = model
        self.on_exit = on_exit
        self.failure: BaseException | None = None
        self.settings = settings
        self.max_request_tokens = min(settings.max_request_tokens, model.n_ctx_train)
        self.unified = settings.kv_unified
        self.n_ctx = (settings.context_size if self.unified else 0) or (
            settings.slots * self.max_request_tokens
        )
        self.max_request_tokens = min(self.max_request_tokens, self.n_ctx)
        params = llama.llama_context_default_params()
        params.n_ctx = self.n_ctx
        params.n_batch = settings.batch_tokens
        params.n_ubatch = settings.batch_tokens
        params.n_seq_max = settings.slots
        threads = settings.threads or os.cpu_count() or 1
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = self.unified
        params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_AUTO
        params.no_perf = True
        model.retain()  # the weights outlive this context: released when it is freed
        self.ctx = llama.llama_init_from_model(model.ptr, params)
        if not self.ctx:
            model.release()
            raise EngineError(f"llama.cpp could not create a context of {self.n_ctx} tokens.")
        self.mem = llama.llama_get_memory(self.ctx)
        self.batch = llama.llama_batch_init(settings.batch_tokens, 0, 1)
        self.slots = [Slot(seq_id=i) for i in range(settings.slots)]
        self.waiting: deque[EngineRequest] = deque()
        self.active: list[EngineRequest] = []
        self.reserved = 0
        # Events of one step go out together: one event-loop wake-up per step rather than per
        # token keeps the loop thread from preempting llama.cpp's compute threads on small CPUs.
        self._outbox: list[tuple[EngineRequest, object]] = []
        self._cond = threading.Condition()
        self._accepting = True
        self._stop = False
        self._thread: threading.Thread | None = None
        self.counters = {
            "requests": 0,
            "completed": 0,
            "cancelled": 0,
            "rejected_queue_full": 0,
            "prompt_tokens": 0,
            "prompt_tokens_reused": 0,
            "completion_tokens": 0,
            "decode_steps": 0,
            "evictions": 0,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = start_named_thread(self._run, "llm-engine")

    def stop(self, drain_seconds: float = 0.0, *, join_seconds: float = 30.0) -> None:
        """Stop admitting; let work finish for up to `drain_seconds`, then cancel the rest.

        Returns once the thread has ended, or after `join_seconds` with a warning if a decode
        step is still running: the thread then frees the context when that step returns.
        """
        with self._cond:
            self._accepting = False
            self._cond.notify_all()
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline and self.busy and self.alive:
            time.sleep(0.02)
        with self._cond:
            for request in list(self.waiting) + list(self.active):
                request.cancel()
            self._stop = True
            self._cond.notify_all()
        if self._thread is None:
            self._free_context()  # never started: nothing else will free it
            return
        self._thread.join(timeout=join_seconds)
        if self._thread.is_alive():
            log.warning("the engine thread is still in a decode step after %.0f s; it frees its "
                        "context when the step returns", join_seconds)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.active)

    def _free_context(self) -> None:
        with self._cond:
            if not self.ctx:
                return
            llama.llama_batch_free(self.batch)
            llama.llama_free(self.ctx)
            self.ctx = None
        self.model.release()

    # -- submission (any thread) -------------------------------------------------------------

    def submit(
        self, prompt: list[int], params: SamplingParams, loop: asyncio.AbstractEventLoop
    ) -> EngineRequest:
        """Queue a request or raise at once: too long (400), queue full (429), stopping (503)."""
        limit = self.max_request_tokens
        if len(prompt) >= limit:
            raise ContextLengthExceeded(
                f"This model's context is limited to {limit} tokens per request, but the prompt "
                f"has {len(prompt)} tokens. Shorten the messages or ask for a shorter context.",
                param="messages",
            )
        room = limit - len(prompt)
        wanted = params.max_tokens or self.settings.default_max_tokens
        request = EngineRequest(
            prompt=prompt, params=params, max_tokens=min(wanted, room), loop=loop, outbox=self._outbox
        )
        with self._cond:
            if self.failure is not None:
                raise self._failed_error()
            if not self._accepting:
                raise NotReady("The appliance is shutting down; retry against another instance.")
            free = sum(1 for s in self.slots if s.request is None)
            if len(self.waiting) >= free + self.settings.max_queue:
                self.counters["rejected_queue_full"] += 1
                raise QueueFull(
                    f"All {len(self.slots)} generation slots are busy and {len(self.waiting)} "
                    "requests are already waiting. Retry after a moment.",
                    retry_after=max(1, len(self.waiting) // max(1, len(self.slots))),
                )
            self.waiting.append(request)
            self.counters["requests"] += 1
            self._cond.notify_all()
        return request

    def status(self) -> dict:
        with self._cond:
            busy = sum(1 for s in self.slots if s.request is not None)
            cached = sum(len(s.tokens) for s in self.slots if s.request is None)
            return {
                "slots_total": len(self.slots),
                "slots_busy": busy,
                "queue_depth": len(self.waiting),
                "queue_limit": self.settings.max_queue,
                "kv_cells_total": self.n_ctx,
                "kv_cells_reserved": self.reserved,
                "kv_cells_cached": cached,
                "max_request_tokens": self.max_request_tokens,
                **self.counters,
            }

    # -- the engine thread -------------------------------------------------------------------

    def _run(self) -> None:
        failure: BaseException | None = None
        try:
            while True:
                with self._cond:
                    if self._stop:
                        break
                    if not self.active:
                        if not self.waiting:
                            self._cond.wait(timeout=0.5)
                            continue
                        self._gather()
                    self._admit()
                if self.active:
                    self._step()
                self._flush_outbox()
        except BaseException as exc:  # an engine bug must not leave callers waiting forever
            failure = exc
            log.error("engine thread crashed: %r", exc, exc_info=exc)
        finally:
            with self._cond:
                # Admission ends in the same critical section that fails the queue: no request
                # can slip in behind the failure and wait for a thread that is gone.
                self._accepting = False
                self.failure = failure
                for request in list(self.waiting) + list(self.active):
                    if failure is not None:
                        request.emit(self._failed_error())
                    self._retire(request, "cancelled")
                self.waiting.clear()
            self._flush_outbox()
            self._free_context()
            if self.on_exit is not None:
                try:
                    self.on_exit(self, failure)
                except Exception:
                    log.exception("engine exit handler failed")

    def _failed_error(self) -> EngineFailed:
        return EngineFailed(f"The generation engine failed ({self.failure!r}) and is restarting; "
                            "retry in a few seconds (GET /ready says when it serves again).")

    def _decode(self, batch) -> int:
        """One llama_decode call; the seam where tests inject decode faults."""
        return llama.llama_decode(self.ctx, batch)

    def _flush_outbox(self) -> None:
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for request, event in self._outbox:
            by_loop.setdefault(request.loop, []).append((request, event))
        self._outbox.clear()
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:  # that event loop is gone; nobody is listening any more
                for request, _ in batch:
                    request.cancelled = True

    def _gather(self) -> None:
        """Idle engine, first arrivals: wait up to the admission window to fill a batch."""
        window = self.settings.admission_window_ms / 1000
        gap = self.settings.admission_gap_ms / 1000
        start = time.perf_counter()
        seen = len(self.waiting)
        last_arrival = start
        while len(self.waiting) < len(self.slots) and not self._stop:
            now = time.perf_counter()
            left = min(start + window, last_arrival + gap) - now
            if left <= 0:
                break
            self._cond.wait(timeout=left)
            if len(self.waiting) > seen:
                seen = len(self.waiting)
                last_arrival = time.perf_counter()

    def _admit(self) -> None:
        while self.waiting:
            request = self.waiting[0]
            if request.cancelled:
                self.waiting.popleft()
                self._retire(request, "cancelled")
                continue
            free = [s for s in self.slots if s.request is None]
            if not free or self.reserved + request.reservation > self.n_ctx:
                return
            self.waiting.popleft()
            self._place(request, free)

    def _dense(self, free: list[Slot]) -> list[Slot]:
        """The free slots a new request may take with per-slot KV streams: the lowest ids.

        llama.cpp groups sequences into one ubatch only while their ids run consecutively
        (`split_equal(sequential=true)`), so busy slots {0, 1, 3} cost two graph evaluations per
        decode step where {0, 1, 2} cost one. Every request that will be running once the queue is
        admitted fits below `bound`; a slot above it would open a gap.
        """
        if self.unified:
            return free
        bound = len(self.active) + len(self.waiting) + 1
        dense = [s for s in free if s.seq_id < bound]
        return dense or [min(free, key=lambda s: s.seq_id)]

    def _place(self, request: EngineRequest, free: list[Slot]) -> None:
        prompt = request.prompt
        free = self._dense(free)
        best_src, best_len = None, 0
        if self.settings.prefix_cache:
            # Without a unified KV pool, cells cannot move between sequences: reuse idle ones in place.
            sources = self.slots if self.unified else free
            scored = [(common_prefix(s.tokens, prompt), s.request is None, s) for s in sources if s.tokens]
            if scored:
                best_len, _, best_src = max(scored, key=lambda t: (t[0], t[1]))
        best_len = min(best_len, len(prompt) - 1)  # the last prompt token must run to give logits
        if best_len < self.settings.min_prefix_tokens:
            best_src, best_len = None, 0
        if best_src is not None and best_src.request is None:
            slot = best_src  # reuse its own cells in place
            llama.llama_memory_seq_rm(self.mem, slot.seq_id, best_len, -1)
        else:
            slot = min(free, key=lambda s: (len(s.tokens) > 0, s.released_at))
            llama.llama_memory_seq_rm(self.mem, slot.seq_id, -1, -1)
            if best_src is not None:
                llama.llama_memory_seq_cp(self.mem, best_src.seq_id, slot.seq_id, 0, best_len)
        slot.tokens = prompt[:best_len]
        slot.request = request
        request.slot = slot
        request.n_prompt_done = best_len
        request.reused_tokens = best_len
        request.sampler = build_sampler(self.model.n_vocab, request.params, prompt, self.model.vocab)
        request.text = TextAssembler(request.params.stop)
        self.reserved += request.reservation
        self.active.append(request)
        self.counters["prompt_tokens"] += len(prompt)
        self.counters["prompt_tokens_reused"] += best_len

    def _step(self) -> None:
        for request in [r for r in self.active if r.cancelled]:
            with self._cond:
                self._retire(request, "cancelled")
        if not self.active:
            return
        batch, budget = self.batch, self.settings.batch_tokens
        decoding = [r for r in self.active if r.pending is not None]
        prefilling = [r for r in self.active if r.pending is None]
        # Every decode gets its token; prompt chunks fill the rest of the budget, oldest first.
        room = budget - len(decoding)
        chunks: list[tuple[EngineRequest, int]] = []
        for request in prefilling:
            if room <= 0:
                break
            take = min(room, len(request.prompt) - request.n_prompt_done)
            chunks.append((request, take))
            room -= take
        # Tokens go in in slot order: llama.cpp splits a batch whose sequence ids do not run
        # consecutively into several ubatches, one graph evaluation each.
        n = 0
        for request, take in sorted([(r, 0) for r in decoding] + chunks, key=lambda e: e[0].slot.seq_id):
            slot = request.slot
            if request.pending is not None:
                self._batch_add(n, request.pending, len(slot.tokens), slot.seq_id, True)
                request.batch_index = n
                n += 1
                continue
            start = request.n_prompt_done
            for i in range(take):
                last = start + i == len(request.prompt) - 1
                self._batch_add(n, request.prompt[start + i], start + i, slot.seq_id, last)
                if last:
                    request.batch_index = n
                n += 1
        batch.n_tokens = n
        rc = self._decode(batch)
        if rc == 1 and self._evict_cached():
            rc = self._decode(batch)
        if rc not in (0, 1, -1):  # 2: aborted, < -1: a compute error; the context is suspect
            raise DecodeFailed(f"llama_decode returned {rc}")
        if rc != 0:
            self._recover_from_decode_failure(rc)
            return
        self.counters["decode_steps"] += 1
        for request in decoding:
            request.slot.tokens.append(request.pending)
        for request, take in chunks:
            start = request.n_prompt_done
            request.slot.tokens.extend(request.prompt[start : start + take])
            request.n_prompt_done += take
        finished = []
        for request in decoding + [r for r, _ in chunks if r.n_prompt_done == len(r.prompt)]:
            if self._sample(request):
                finished.append(request)
        if finished:
            with self._cond:
                for request in finished:
                    self._retire(request, request.finish_reason)

    def _batch_add(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        batch = self.batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = logits

    def _sample(self, request: EngineRequest) -> bool:
        """Pick the next token; emit text; return True when the request is done."""
        token = llama.llama_sampler_sample(request.sampler, self.ctx, request.batch_index)
        now = time.perf_counter()
        if request.first_token_at is None:
            request.first_token_at = now
        # The engine holds a use of the weights while it lives: the per-token calls skip the guard.
        if self.model._is_eog(token):
            request.finish_reason = "stop"
            return True
        request.n_generated += 1
        self.counters["completion_tokens"] += 1
        delta = request.text.feed(self.model._token_bytes(token))
        if delta:
            request.emit(TextDelta(delta))
        if request.text.stopped:
            request.finish_reason = "stop"
            return True
        if request.n_generated >= request.max_tokens:
            request.finish_reason = "length"
            return True
        request.pending = token
        return False

    def _retire(self, request: EngineRequest, reason: str) -> None:
        """Give back the slot and reservation now; tell the caller how it ended. Holds _cond."""
        if request in self.active:
            self.active.remove(request)
            self.reserved -= request.reservation
        slot = request.slot
        if slot is not None:
            if not self.settings.prefix_cache:
                llama.llama_memory_seq_rm(self.mem, slot.seq_id, -1, -1)
                slot.tokens = []
            slot.request = None
            slot.released_at = time.perf_counter()
            request.slot = None
        if request.sampler is not None:
            llama.llama_sampler_free(request.sampler)
            request.sampler = None
        if reason != "cancelled" and request.text is not None:
            tail = request.text.flush() if not request.text.stopped else ""
            if tail:
                request.emit(TextDelta(tail))
        self.counters["cancelled" if reason == "cancelled" else "completed"] += 1
        end = time.perf_counter()
        timings = {
            "queue_ms": 1000 * ((request.first_token_at or end) - request.submitted_at),
            "total_ms": 1000 * (end - request.submitted_at),
            "prompt_tokens_reused": request.reused_tokens,
        }
        request.emit(Finished(reason, len(request.prompt), request.n_generated, timings))

    def _evict_cached(self) -> bool:
        """Drop the prefix cache of idle slots, least recently used first. True if any dropped."""
        idle = sorted((s for s in self.slots if s.request is None and s.tokens), key=lambda s: s.released_at)
        for slot in idle:
            llama.llama_memory_seq_rm(self.mem, slot.seq_id, -1, -1)
            slot.tokens = []
            self.counters["evictions"] += 1
        return bool(idle)

    def _recover_from_decode_failure(self, rc: int) -> None:
        """No room even after eviction (1), or a batch llama.cpp refused (-1): fail the newest
        request (or all of this batch's) and go on."""
        log.warning("llama_decode returned %s with %d active requests", rc, len(self.active))
        if rc == 1 and len(self.active) > 1:
            victims = [max(self.active, key=lambda r: r.submitted_at)]
        else:
            victims = list(self.active)
        error = EngineError("The model ran out of KV cache space; retry the request." if rc == 1
                            else "The model could not process this request; retry it.")
        with self._cond:
            for request in victims:
                request.emit(error)
                self._retire(request, "cancelled")
