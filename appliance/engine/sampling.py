"""Per-request sampler chains (llama.cpp's sampler API) and stop-string handling."""

from __future__ import annotations

import codecs
import ctypes

import llama_cpp as llama

from appliance.llm.base import SamplingParams

PENALTY_LAST_N = 64
# Where a DRY repeat stops counting: line breaks, and the punctuation that ends list labels.
DRY_BREAKERS = (b"\n", b":", b'"', b"*")


def build_sampler(n_vocab: int, params: SamplingParams, recent_prompt: list[int], vocab=None):
    """A fresh sampler chain for one request; the caller frees it with `llama_sampler_free`.

    `vocab` (the model's llama_vocab) is needed for DRY; the whole context counts for it, so
    prompt tokens are fed to the chain too.
    """
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    add = lambda sampler: llama.llama_sampler_chain_add(chain, sampler)  # noqa: E731
    dry = params.dry_multiplier > 0 and vocab is not None
    if dry:
        breakers = (ctypes.c_char_p * len(DRY_BREAKERS))(*DRY_BREAKERS)
        add(llama.llama_sampler_init_dry(vocab, params.dry_multiplier, params.dry_base,
                                         params.dry_allowed_length, -1, breakers, len(DRY_BREAKERS)))
    penalised = (
        params.repeat_penalty != 1.0 or params.presence_penalty != 0 or params.frequency_penalty != 0
    )
    if penalised:
        add(
            llama.llama_sampler_init_penalties(
                n_vocab,
                PENALTY_LAST_N,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
        )
    if params.temperature <= 0:
        add(llama.llama_sampler_init_greedy())
    else:
        if params.top_k > 0:
            add(llama.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            add(llama.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0:
            add(llama.llama_sampler_init_min_p(params.min_p, 1))
        add(llama.llama_sampler_init_temp(params.temperature))
        seed = llama.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        add(llama.llama_sampler_init_dist(seed))
    if dry:
        for token in recent_prompt:
            llama.llama_sampler_accept(chain, token)
    elif penalised:
        for token in recent_prompt[-PENALTY_LAST_N:]:
            llama.llama_sampler_accept(chain, token)
    return chain


class TextAssembler:
    """Turns token bytes into text deltas: completes split UTF-8 characters, holds back and
    cuts at stop strings."""

    def __init__(self, stops: tuple[str, ...]):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to show."""
        text = self._held + self._decoder.decode(piece)
        if not self._stops:
            self._held = ""
            return text
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            self.stopped = True
            return text[:cut]
        keep = self._longest_stop_prefix_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """Text still held back when generation ends for another reason."""
        # A character cut off by max_tokens is dropped rather than shown as U+FFFD.
        text = self._held + self._decoder.decode(b"", final=True).rstrip("\ufffd")
        self._held = ""
        return text

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
