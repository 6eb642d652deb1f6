"""The embedder seam and its built-in implementation: an int8 ONNX export run by onnxruntime.

Some embedders are trained with an instruction before each text ("query: ", "passage: "): the
artifact names them, and callers say which side a text is on (`embed_queries`, `embed_passages`).
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError

BOOTSTRAP_HINT = "appliance-build embedder --out {path}"
ARTIFACT_FILES = ("model.onnx", "tokenizer.json", "embedder.json")
POOLINGS = ("mean", "cls", "last", "max")


class EmbedderMissing(ApplianceError):
    status = 503
    code = "embedder_missing"


class Embedder(ABC):
    """Turns texts into float32 vectors of `dim` dimensions (unit length unless the artifact
    says otherwise); `embed` takes texts as they are, the other two add the side's prefix."""

    name: str
    dim: int
    max_batch = 32
    path: Path | None = None  # the artifact folder it was loaded from, when there is one
    query_prefix = ""
    passage_prefix = ""

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the exact model: vectors of two embedders with the same fingerprint mix."""
        if self.path is None:
            return f"{self.name}/{self.dim}"
        return artifact_fingerprint(self.path)

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Any number of texts, in batches of similar length (less padding, faster)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.max_batch):
            picked = order[start:start + self.max_batch]
            out[picked] = self.embed_batch([texts[i] for i in picked])
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions, as searches embed them."""
        return self.embed([self.query_prefix + t for t in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Passages, as the vector index holds them."""
        return self.embed([self.passage_prefix + t for t in texts])

    def close(self) -> None:
        """Release sessions and threads."""


class OnnxEmbedder(Embedder):
    """Reads the artifact folder: model.onnx, tokenizer.json and embedder.json."""

    def __init__(self, path: Path, *, threads: int = 0):
        import onnxruntime
        from tokenizers import Tokenizer

        missing = [f for f in ARTIFACT_FILES if not (path / f).is_file()]
        if missing:
            raise EmbedderMissing(
                f"The embedder artifact in {path} is missing {', '.join(missing)}; create it with "
                f"`{BOOTSTRAP_HINT.format(path=path)}` (or install the build pipeline's embedder)."
            )
        self.path = Path(path)
        spec = json.loads((path / "embedder.json").read_text())
        self.name = spec["name"]
        self.dim = int(spec["dim"])
        self.pooling = spec.get("pooling", "mean")
        if self.pooling not in POOLINGS:
            raise EmbedderMissing(f"The embedder in {path} pools with {self.pooling!r}, which this "
                                  f"version cannot run (it knows {', '.join(POOLINGS)}); export it "
                                  "again with `appliance-build embedder --from`.")
        self.normalize = bool(spec.get("normalize", True))
        self.query_prefix = spec.get("query_prefix", "")
        self.passage_prefix = spec.get("passage_prefix", "")
        # Dynamic int8 scales a model call's activations over all its texts (padding included),
        # so a text's vector would move with the texts beside it, and an answer with whatever
        # else the server was asked at the time. One text a call keeps every vector the same;
        # on the CPU measured (BENCHMARKS.md) it is as fast for chunks and faster for short
        # spans. An artifact may say otherwise ("batch"), e.g. an fp32 model that gains from
        # batches.
        default_batch = 1 if spec.get("quantization", "int8") == "int8" else Embedder.max_batch
        self.max_batch = max(1, int(spec.get("batch", default_batch)))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(spec.get("max_length", 256)))
        self.tokenizer.no_padding()  # batches are padded here, to their own longest text
        pad_id = spec.get("pad_token_id")
        self.pad_id = int(pad_id) if pad_id is not None else self.tokenizer.token_to_id("[PAD]") or 0
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.output = "last_hidden_state" if "last_hidden_state" in outputs else next(iter(outputs))
        width = outputs[self.output].shape[-1]
        if isinstance(width, int) and width != self.dim:
            raise EmbedderMissing(f"The embedder in {path} says {self.dim} dimensions in "
                                  f"embedder.json, but its model returns {width}; export it again.")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Batches of similar token counts: Korean text takes several tokens per character, so
        ordering by characters would pad English texts to Korean lengths."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([t or " " for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.max_batch):
            picked = order[start:start + self.max_batch]
            out[picked] = self._run([encodings[i].ids for i in picked])
        return out

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._run([e.ids for e in self.tokenizer.encode_batch([t or " " for t in texts])])

    def _run(self, token_ids: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in token_ids)
        ids = np.full((len(token_ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for row, tokens in enumerate(token_ids):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run([self.output], {k: v for k, v in feed.items() if k in self.inputs})[0]
        return pool(hidden, mask, self.pooling, self.normalize)


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """Token states (batch, tokens, dim) to one vector per text, as sentence-transformers pools
    them; `mask` marks the real tokens (padding is on the right)."""
    if pooling == "cls":
        vectors = hidden[:, 0]
    elif pooling == "last":
        vectors = hidden[np.arange(len(hidden)), mask.sum(axis=1) - 1]
    elif pooling == "max":
        vectors = np.where(mask[..., None] > 0, hidden, -1e9).max(axis=1)
    else:
        weights = mask[..., None].astype(np.float32)
        vectors = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    vectors = vectors.astype(np.float32)
    if normalize:
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors


EMBEDDERS = {"onnx": OnnxEmbedder}


def artifact_fingerprint(path: Path) -> str:
    """sha256 over an artifact's files (name and content): equal for copies of one embedder."""
    digest = hashlib.sha256()
    for name in ARTIFACT_FILES:
        file = Path(path) / name
        if not file.is_file():
            continue
        file_digest = hashlib.sha256()
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                file_digest.update(chunk)
        digest.update(f"{name}\0{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest()


def load_embedder(kind: str, path: Path, *, threads: int = 0) -> Embedder:
    try:
        factory = EMBEDDERS[kind]
    except KeyError:
        raise ApplianceError(
            f"Unknown embedder {kind!r}; knowledge.embedder must be one of: {', '.join(EMBEDDERS)}."
        ) from None
    return factory(path, threads=threads)
