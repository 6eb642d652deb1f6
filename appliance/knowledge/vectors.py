"""The vector store seam: embedded FAISS by default, Milvus for bases that outgrow one machine."""

from __future__ import annotations

import errno
import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, DiskFull
from appliance.knowledge.access import AccessFilter


class VectorStore(ABC):
    """Unit vectors keyed by chunk id; inner product is cosine similarity."""

    def __init__(self, dim: int):
        self.dim = dim

    @abstractmethod
    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, ids: Sequence[int]) -> None: ...

    @abstractmethod
    def search(self, vector: np.ndarray, k: int, visible: AccessFilter | None = None
               ) -> list[tuple[int, float]]:
        """Best `k` (id, similarity) pairs among the chunks `visible` allows (None: all)."""

    @abstractmethod
    def ids(self) -> set[int]: ...

    def __len__(self) -> int:
        return len(self.ids())

    def persist(self) -> None:
        """Make everything added so far durable."""

    def close(self) -> None:
        self.persist()

    def drop(self) -> None:
        """Delete the index and its storage (an index replaced by another embedder's)."""


class FaissStore(VectorStore):
    """Exact search (flat inner product) while small; IVF once the base passes `ivf_threshold`."""

    def __init__(self, dim: int, path: Path | None = None, *, ivf_threshold: int = 50_000,
                 nprobe: int = 16):
        import faiss

        super().__init__(dim)
        # One query at a time is served fastest on one thread; OpenMP's spinning team of
        # threads only adds latency on a busy 2-core machine.
        faiss.omp_set_num_threads(1)
        self.faiss = faiss
        self.path = path
        self.ivf_threshold = ivf_threshold
        self.nprobe = nprobe
        self._lock = threading.RLock()
        self._dirty = False
        self.index = None
        if path is not None and path.exists():
            self.index = faiss.read_index(str(path))
            if self.index.d != dim:  # a different embedder wrote it: start over, repair re-embeds
                self.index = None
            elif hasattr(self.index, "nprobe"):
                faiss.extract_index_ivf(self.index).nprobe = nprobe
        if self.index is None:
            self.index = self._flat()

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, self.faiss.IndexIVF) else "flat"

    def _flat(self):
        return self.faiss.IndexIDMap2(self.faiss.IndexFlatIP(self.dim))

    def _ivf(self, vectors: np.ndarray):
        faiss = self.faiss
        nlist = int(4 * math.sqrt(len(vectors)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist,
                                   faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).choice(len(vectors), min(len(vectors), nlist * 64),
                                                         replace=False)]
        index.train(sample)
        index.nprobe = self.nprobe
        # A hashtable direct map keeps remove and reconstruct by chunk id possible.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return index

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock:
            ids_array = np.asarray(ids, dtype=np.int64)
            self.index.remove_ids(ids_array)  # re-adding an id replaces it
            self.index.add_with_ids(vectors, ids_array)
            self._dirty = True
            if self.kind == "flat" and self.index.ntotal >= self.ivf_threshold:
                self._rebuild_ivf()

    def _rebuild_ivf(self) -> None:
        all_ids = self.faiss.vector_to_array(self.index.id_map).astype(np.int64)
        vectors = self.index.index.reconstruct_n(0, self.index.ntotal)
        index = self._ivf(vectors)
        index.add_with_ids(vectors, all_ids)
        self.index = index

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            with self._lock:
                self.index.remove_ids(np.asarray(ids, dtype=np.int64))
                self._dirty = True

    def search(self, vector: np.ndarray, k: int, visible: AccessFilter | None = None
               ) -> list[tuple[int, float]]:
        faiss = self.faiss
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        with self._lock:
            if self.index.ntotal == 0:
                return []
            k = min(k, self.index.ntotal)
            if visible is None:
                scores, found = self.index.search(query, k)
            else:
                # The selector filters inside the scan, before the top k. IVF scans only `nprobe`
                # lists, so a caller who sees a small share gets proportionally more lists.
                bitmap = np.packbits(visible.mask, bitorder="little")
                selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
                if self.kind == "ivf":
                    nprobe = min(self.index.nlist,
                                 math.ceil(self.nprobe / max(visible.share, 1e-6)))
                    params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
                else:
                    params = faiss.SearchParameters(sel=selector)
                scores, found = self.index.search(query, k, params=params)
        return [(int(i), float(s)) for i, s in zip(found[0], scores[0]) if i >= 0]

    def ids(self) -> set[int]:
        with self._lock:
            if self.kind == "flat":
                return set(self.faiss.vector_to_array(self.index.id_map).tolist())
            invlists = self.index.invlists
            out: set[int] = set()
            for list_no in range(self.index.nlist):
                size = invlists.list_size(list_no)
                if size:
                    out.update(self.faiss.rev_swig_ptr(invlists.get_ids(list_no), size).tolist())
            return out

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def persist(self) -> None:
        """Write the index atomically: a temp file, fsync, then rename over the old one."""
        if self.path is None:
            return
        with self._lock:
            if not self._dirty and self.path.exists():
                return
            data = self.faiss.serialize_index(self.index)
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data.tobytes())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            with self._lock:
                self._dirty = True  # written again at the next persist
            if exc.errno == errno.ENOSPC:
                raise DiskFull(f"The disk holding {self.path} is full, so the vector index was not "
                               "saved (the last complete one stays in place, and the next start "
                               "re-embeds what it lacks); free space, then retry.") from exc
            raise
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def drop(self) -> None:
        with self._lock:
            self._dirty = False
            if self.path is not None:
                self.path.unlink(missing_ok=True)


class MilvusStore(VectorStore):
    """A Milvus collection (a server, or milvus-lite with a local file uri)."""

    def __init__(self, dim: int, uri: str, *, collection: str = "chunks", token: str = ""):
        from pymilvus import MilvusClient

        super().__init__(dim)
        self.client = MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
        self.collection = collection
        if not self.client.has_collection(collection):
            self.client.create_collection(
                collection, dimension=dim, primary_field_name="id", id_type="int",
                vector_field_name="vector", metric_type="IP", auto_id=False,
                consistency_level="Strong",
            )
        self.client.load_collection(collection)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if len(ids):
            rows = [{"id": int(i), "vector": v.astype(np.float32).tolist()} for i, v in zip(ids, vectors)]
            self.client.upsert(self.collection, rows)

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            self.client.delete(self.collection, ids=[int(i) for i in ids])

    def search(self, vector: np.ndarray, k: int, visible: AccessFilter | None = None
               ) -> list[tuple[int, float]]:
        hidden = visible.hidden() if visible is not None else []
        expression = f"id not in {hidden}" if hidden else ""
        result = self.client.search(
            self.collection, data=[vector.astype(np.float32).tolist()], limit=k,
            filter=expression, search_params={"metric_type": "IP"}, output_fields=["id"],
        )
        return [(int(hit["id"]), float(hit["distance"])) for hit in result[0]]

    def ids(self) -> set[int]:
        out: set[int] = set()
        iterator = self.client.query_iterator(self.collection, batch_size=1000, filter="id >= 0",
                                              output_fields=["id"])
        while True:
            rows = iterator.next()
            if not rows:
                iterator.close()
                return out
            out.update(int(r["id"]) for r in rows)

    def persist(self) -> None:
        self.client.flush(self.collection)

    def close(self) -> None:
        self.persist()
        self.client.close()

    def drop(self) -> None:
        self.client.drop_collection(self.collection)


def _faiss(dim: int, data_dir: Path, settings, name: str) -> VectorStore:
    return FaissStore(dim, data_dir / faiss_file_name(name), ivf_threshold=settings.ivf_threshold,
                      nprobe=settings.ivf_nprobe)


def _milvus(dim: int, data_dir: Path, settings, name: str) -> VectorStore:
    uri = settings.milvus_uri
    if uri and "://" not in uri:  # a milvus-lite file: a relative one lies in the data folder
        uri = str(settings.resolve(uri))
    return MilvusStore(dim, uri or str(data_dir / "milvus.db"),
                       collection=f"chunks_{name}" if name else "chunks")


VECTOR_STORES = {"faiss": _faiss, "milvus": _milvus}


def faiss_file_name(name: str) -> str:
    return f"vectors-{name}.faiss" if name else "vectors.faiss"


def drop_vector_store(kind: str, data_dir: Path, settings, *, name: str) -> None:
    """Delete a named index without loading it."""
    if kind == "faiss":
        (data_dir / faiss_file_name(name)).unlink(missing_ok=True)
        return
    open_vector_store(kind, 1, data_dir, settings, name=name).drop()


def open_vector_store(kind: str, dim: int, data_dir: Path, settings, *, name: str = "") -> VectorStore:
    """The store named by `knowledge.vector_store` (settings: the knowledge section).

    `name` tells apart the indexes of different embedders ("" is the first one)."""
    try:
        factory = VECTOR_STORES[kind]
    except KeyError:
        raise ApplianceError(
            f"Unknown vector store {kind!r}; knowledge.vector_store must be one of: "
            f"{', '.join(VECTOR_STORES)}."
        ) from None
    return factory(dim, data_dir, settings, name)
