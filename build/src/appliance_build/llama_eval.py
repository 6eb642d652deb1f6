"""Running a GGUF with llama.cpp's C API: per-token logits, answer-token loss, greedy answers.

The low-level API is used instead of `llama_cpp.Llama` because the latter's per-call overhead
(full-vocabulary Python bookkeeping on every token) dominates evaluation on small models.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import llama_cpp as llama
import numpy as np

from appliance.engine.model import Model

# Tokens a decode of a whole example takes at once when only a few positions need logits.
PREFILL_BATCH = 512


class Runner:
    """One model, one sequence: decode token ids and read their logits."""

    def __init__(self, path: Path, n_ctx: int = 1024, n_batch: int = 128):
        self.model = Model(path)
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        params = llama.llama_context_default_params()
        params.n_ctx = n_ctx
        # A small batch: llama.cpp's per-decode cost grows with n_batch x vocabulary (the output
        # buffer), which made one-token decodes of a 49k-vocabulary model take 0.4 s at n_batch 1024.
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = os.cpu_count() or 1
        params.no_perf = True
        self.ctx = llama.llama_init_from_model(self.model.ptr, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a {n_ctx}-token context for {path}.")
        self.mem = llama.llama_get_memory(self.ctx)
        self.batch = llama.llama_batch_init(n_batch, 0, 1)
        self.n_vocab = int(llama.llama_vocab_n_tokens(self.model.vocab))

    def decode(self, ids: list[int], start: int, all_logits: bool) -> np.ndarray:
        if start + len(ids) > self.n_ctx:
            raise ValueError(f"{start + len(ids)} tokens exceed the {self.n_ctx}-token context")
        chunks = [self._decode(ids[i:i + self.n_batch], start + i, all_logits)
                  for i in range(0, len(ids), self.n_batch)]
        return np.concatenate(chunks) if all_logits else chunks[-1]

    def _decode(self, ids: list[int], start: int, all_logits: bool) -> np.ndarray:
        self._submit(ids, start, lambda i: all_logits or i == len(ids) - 1)
        rows = len(ids) if all_logits else 1
        return np.ctypeslib.as_array(llama.llama_get_logits(self.ctx), shape=(rows, self.n_vocab)).copy()

    def _submit(self, ids: list[int], start: int, output) -> None:
        batch = self.batch
        batch.n_tokens = len(ids)
        for i, token in enumerate(ids):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = bool(output(i))
        if llama.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def logits_at(self, ids: list[int], positions: list[int]) -> np.ndarray:
        """The logits at `positions` of `ids` (one row each, in the order given), decoded from an
        empty memory. Only those positions are projected onto the vocabulary: for a grounded
        prompt, mostly evidence with a short answer, that is most of the work of `logits`."""
        if len(ids) > self.n_ctx:
            raise ValueError(f"{len(ids)} tokens exceed the {self.n_ctx}-token context")
        llama.llama_memory_clear(self.mem, True)
        wanted = set(positions)
        rows: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), self.n_batch):
            chunk = ids[start:start + self.n_batch]
            self._submit(chunk, start, lambda i, first=start: first + i in wanted)
            for i in range(len(chunk)):
                if start + i in wanted:
                    row = llama.llama_get_logits_ith(self.ctx, i)
                    rows[start + i] = np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()
        return np.stack([rows[p] for p in positions]) if positions else np.zeros((0, self.n_vocab), np.float32)

    def logits(self, ids: list[int]) -> np.ndarray:
        llama.llama_memory_clear(self.mem, True)
        return self.decode(ids, 0, True)

    def greedy(self, prompt: list[int], max_tokens: int, stop_id: int) -> list[int]:
        llama.llama_memory_clear(self.mem, True)
        logits = self.decode(prompt, 0, False)
        out: list[int] = []
        while len(out) < max_tokens and len(prompt) + len(out) < self.n_ctx:
            token = int(logits[-1].argmax())
            if token == stop_id or self.model.is_eog(token):
                break
            out.append(token)
            logits = self.decode([token], len(prompt) + len(out) - 1, False)
        return out

    def close(self) -> None:
        llama.llama_batch_free(self.batch)
        llama.llama_free(self.ctx)
        self.model.close()


@contextlib.contextmanager
def open_gguf(path: Path, n_ctx: int = 1024, n_batch: int = 128):
    runner = Runner(path, n_ctx, n_batch)
    try:
        yield runner
    finally:
        runner.close()


def logits(runner: Runner, ids: list[int]) -> np.ndarray:
    return runner.logits(ids)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def mean_loss(path: Path, examples: list[dict[str, list[int]]]) -> float:
    """Same answer-token cross-entropy as the torch side, computed by llama.cpp."""
    total, count = 0.0, 0
    longest = max((len(e["input_ids"]) for e in examples), default=0)
    with open_gguf(path, n_ctx=max(1024, longest), n_batch=PREFILL_BATCH) as runner:
        for example in examples:
            ids, labels = example["input_ids"], example["labels"]
            # Position i predicts token i + 1: the logits that score an answer token.
            positions = [i for i in range(len(ids) - 1) if labels[i + 1] != -100]
            if not positions:
                continue
            logp = _log_softmax(runner.logits_at(ids, positions))
            targets = np.array([labels[i + 1] for i in positions])
            total -= float(logp[np.arange(len(positions)), targets].sum())
            count += len(positions)
    return total / max(count, 1)


def answers(path: Path, prompts: list[list[int]], max_tokens: int, stop_id: int) -> list[str]:
    """Greedy completions of tokenized prompts, stopped at the chat's end-of-turn token."""
    with open_gguf(path) as runner:
        return [runner.model.detokenize(runner.greedy(p, max_tokens, stop_id)) for p in prompts]
