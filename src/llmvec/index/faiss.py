"""FaissIndex: an in-process FAISS index of float32, int8 (scalar-quantized) or binary vectors.

Binary vectors live in an ``IndexBinaryFlat`` / ``IndexBinaryHNSW`` over packed sign bits; the
``k * oversample`` best Hamming candidates are then re-ranked with stored float32 (or float16)
vectors. ``int8`` uses FAISS's 8-bit scalar quantizer with the per-dimension ranges of the
index's calibration. Ids, texts and metadata live in a JSON sidecar, never in a pickle.

On disk an index is a directory: ``index.faiss``, ``vectors.npy`` (rescoring vectors, when
kept), ``llmvec-faiss.json`` (spec, settings, documents) and, for a store with BM25 vectors
(``sparse=True``, the default), ``bm25.labels.npy`` and the ``bm25.*`` files of a ``bm25s``
index over the stored texts (numpy arrays and JSON, no pickle). :meth:`FaissIndex.save` writes a
new directory and swaps it in with one atomic exchange (:mod:`llmvec.index.storage`), so a
failed or killed save leaves the old index intact, and a reader sees one save or the other.
Each save has an id: saving an index over a store that another writer saved since this index
was loaded from it raises :class:`~llmvec.index.storage.StoreConflictError` instead of losing
that writer's documents.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from llmvec.compress import (
    Calibration,
    calibrate,
    calibration_arrays,
    check_precision,
    pack_bits,
)
from llmvec.index.base import BaseIndex
from llmvec.index.bm25 import BM25Settings
from llmvec.index.records import Batch, Conditions, Hit, Id, Stored
from llmvec.index.specs import check_spec, index_spec
from llmvec.index.storage import (
    StoreConflictError,
    atomic_directory,
    parse_json,
    read_snapshot,
    write_json,
)
from llmvec.index.validation import check_id, check_oversample, matches, oversampled
from llmvec.optional import require
from llmvec.spec import EmbeddingSpec
from llmvec.validation import check_positive

if TYPE_CHECKING:
    from llmvec.text_encoder import TextEncoder

logger = logging.getLogger(__name__)

# faiss's bundled type stubs miss the search-parameter classes and the attributes of
# downcast indexes: go through an untyped handle for those.
_faiss: Any = faiss

PRECISIONS = ("float32", "int8", "binary")
KINDS = ("flat", "hnsw", "ivf")
BINARY_KINDS = ("flat", "hnsw")
RESCORE_DTYPES = ("float32", "float16")

MARKER = "llmvec-faiss.json"
FORMAT = "llmvec.faiss"
FORMAT_VERSION = 1
_INDEX_FILE = "index.faiss"
_VECTORS_FILE = "vectors.npy"
#: The BM25 files: the label of each ``bm25s`` document, then ``bm25s``'s own files.
_BM25_LABELS = "bm25.labels.npy"
_BM25_FILES = {
    "data_name": "bm25.data.npy",
    "indices_name": "bm25.indices.npy",
    "indptr_name": "bm25.indptr.npy",
    "vocab_name": "bm25.vocab.json",
    "params_name": "bm25.params.json",
}
_INSTALL_BM25 = (
    "FAISS stores keep BM25 vectors (sparse=True, the default) with bm25s: pip install "
    "'llmvec[hybrid]' (or make the store with sparse=False: dense search only)"
)


class FaissIndex(BaseIndex):
    """A FAISS vector index that encodes with an :class:`~llmvec.Encoder` and remembers its spec.

    Args:
        encoder: encodes added texts and text queries. May be ``None`` when ``spec`` is given
            (vectors only; a text query then builds the encoder from the spec).
        precision: ``float32`` (exact inner product), ``int8`` (1 byte per dimension) or
            ``binary`` (1 bit per dimension, Hamming search).
        kind: ``flat`` (exhaustive), ``hnsw`` (graph) or ``ivf`` (inverted lists, trained on
            the first batch added; float32 and int8 only).
        rescore: for ``int8`` and ``binary``, keep float vectors and re-rank the
            ``k * oversample`` best candidates with them.
        oversample: candidate multiplier for rescoring (>= 1).
        rescore_dtype: ``float16`` (half the memory) or ``float32`` for the kept vectors.
        calibration: per-dimension (low, high) ranges for ``int8``; ``None`` calibrates on the
            first batch added (:func:`llmvec.compress.calibrate`).
        spec: the :class:`~llmvec.EmbeddingSpec` of the vectors, when no encoder is given.
        hnsw_m / ef_search: HNSW graph degree and search breadth.
        nlist / nprobe: IVF lists (default ``sqrt`` of the first batch size) and lists probed.
        sparse: keep a BM25 index of the stored texts (``bm25s``) for ``mode="sparse"`` and
            ``"hybrid"`` search: ``True`` (default settings), a
            :class:`~llmvec.index.bm25.BM25Settings`, or ``False``. It is rebuilt from the
            texts when they changed, at the next BM25 search or save.

    Scores are inner products (cosine similarity for normalised vectors); for ``binary``
    without rescoring they are ``1 - hamming / bits``.
    """

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        precision: str = "float32",
        kind: str = "flat",
        *,
        rescore: bool = True,
        oversample: float = 4.0,
        rescore_dtype: str = "float16",
        calibration: Calibration | None = None,
        spec: EmbeddingSpec | None = None,
        hnsw_m: int = 32,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int = 16,
        sparse: bool | BM25Settings = True,
    ) -> None:
        check_precision(precision, PRECISIONS)
        kinds = BINARY_KINDS if precision == "binary" else KINDS
        if kind not in kinds:
            raise ValueError(
                f"unknown kind {kind!r} for precision {precision!r}; allowed: {list(kinds)}"
            )
        if rescore_dtype not in RESCORE_DTYPES:
            raise ValueError(
                f"unknown rescore_dtype {rescore_dtype!r}; allowed: {list(RESCORE_DTYPES)}"
            )
        for name, value in (("hnsw_m", hnsw_m), ("ef_search", ef_search), ("nprobe", nprobe)):
            check_positive(name, value)
        if nlist is not None:
            check_positive("nlist", nlist)
        spec = index_spec(encoder, spec, what="FaissIndex")
        if calibration is not None:
            if precision != "int8":
                raise ValueError(f"calibration applies to precision 'int8', not {precision!r}")
            calibration_arrays(calibration, spec.dim)
            calibration = (tuple(calibration[0]), tuple(calibration[1]))
        super().__init__(encoder, spec.replace(precision=precision, calibration=calibration))
        self.precision = precision
        self.kind = kind
        self.rescore = bool(rescore) and precision != "float32"
        self.oversample = check_oversample(oversample)
        self.rescore_dtype = rescore_dtype
        self.hnsw_m, self.ef_search, self.nlist, self.nprobe = hnsw_m, ef_search, nlist, nprobe
        self._index: Any = None  # built on the first add (IVF training, int8 calibration)
        self._labels: dict[Id, int] = {}
        self._documents: dict[int, tuple[Id, str | None, dict[str, Any]]] = {}
        self._tombstones: set[int] = set()  # HNSW graphs cannot remove: deleted labels
        self._next_label = 0
        self._vectors = np.empty((0, self.dim), dtype=rescore_dtype)
        #: The store this index was last loaded from or saved to, and a hash of that save's
        #: sidecar (each save's sidecar is unique: it holds a random save id).
        self._origin: tuple[Path, str] | None = None
        self.bm25 = _sparse_settings(sparse)
        self._bm25: Any = None  # a bm25s.BM25 over the texted documents, None when none
        self._bm25_labels = np.empty(0, dtype=np.int64)  # the label of each bm25s document
        self._bm25_stale = False  # texts changed since the BM25 index was built

    def __len__(self) -> int:
        return len(self._labels)

    def __repr__(self) -> str:
        return (
            f"FaissIndex(model={self.spec.model!r}, precision={self.precision!r}, "
            f"kind={self.kind!r}, dim={self.dim}, size={len(self)})"
        )

    @property
    def _bits(self) -> int:
        """Bits of a binary code: the dimension rounded up to whole bytes."""
        return 8 * math.ceil(self.dim / 8)

    @property
    def ids(self) -> list[Id]:
        """Ids of the stored documents, in insertion order."""
        return list(self._labels)

    # ------------------------------------------------------------------ building
    def _build(self, vectors: np.ndarray) -> Any:
        """A new FAISS index for this precision and kind, trained on the first batch."""
        if self.precision == "binary":
            description = "BFlat" if self.kind == "flat" else f"BHNSW{self.hnsw_m}"
            return faiss.IndexBinaryIDMap2(faiss.index_binary_factory(self._bits, description))
        if self.kind == "ivf" and self.nlist is None:
            self.nlist = max(1, round(math.sqrt(len(vectors))))
        if self.kind == "ivf" and len(vectors) < self.nlist:  # type: ignore[operator]
            raise ValueError(
                f"an IVF index with nlist={self.nlist} needs at least {self.nlist} vectors in "
                f"its first add, got {len(vectors)}"
            )
        # IVF lists hold the ids themselves; the other kinds get an id map (IDMap2 assumes
        # the inner index renumbers on removal, which IVF does not).
        layout = {
            "flat": "IDMap2,",
            "hnsw": f"IDMap2,HNSW{self.hnsw_m},",
            "ivf": f"IVF{self.nlist},",
        }
        storage = "SQ8" if self.precision == "int8" else "Flat"
        index: Any = faiss.index_factory(
            self.dim, layout[self.kind] + storage, faiss.METRIC_INNER_PRODUCT
        )
        base = _faiss.downcast_index(index if self.kind == "ivf" else index.index)
        if self.kind == "ivf":
            base.by_residual = False  # quantize the vectors themselves, with the spec's ranges
        if not index.is_trained:
            index.train(vectors)
        if self.precision == "int8":
            calibration = self.spec.calibration or calibrate(vectors)
            self.spec = self.spec.replace(calibration=calibration)
            low, width = calibration_arrays(calibration, self.dim)
            quantizer = base.sq if hasattr(base, "sq") else _faiss.downcast_index(base.storage).sq
            faiss.copy_array_to_vector(np.concatenate([low, width]), quantizer.trained)
        return index

    def _add(self, vectors: np.ndarray, documents: Batch) -> None:
        if self._index is None:
            self._index = self._build(vectors)
        self._delete([i for i in documents.ids if i in self._labels])
        labels = np.arange(self._next_label, self._next_label + len(vectors), dtype=np.int64)
        codes = pack_bits(vectors) if self.precision == "binary" else vectors
        self._index.add_with_ids(codes, labels)
        if self.rescore:
            self._vectors = np.concatenate([self._vectors, vectors.astype(self.rescore_dtype)])
        for label, doc_id, text, metadata in zip(
            labels.tolist(), documents.ids, documents.texts, documents.metadata, strict=True
        ):
            self._labels[doc_id] = label
            self._documents[label] = (doc_id, text, metadata)
        self._next_label += len(vectors)
        if self.bm25 is not None and any(text is not None for text in documents.texts):
            self._bm25_stale = True

    def _stored(self, ids: list[Id]) -> Stored:
        labels = [self._label(i) for i in ids]
        documents = [self._documents[label] for label in labels]
        texts = [text for _, text, _ in documents]
        metadata = [dict(meta) for _, _, meta in documents]
        return Stored(self._float_vectors(labels), texts, metadata)

    def _float_vectors(self, labels: list[int]) -> np.ndarray | None:
        if self.rescore and self.rescore_dtype == "float32":
            return self._vectors[labels].astype(np.float32)
        if self.precision != "float32" or self.kind == "ivf":
            return None  # only quantized codes, or IVF lists without a direct map
        rows = [self._index.reconstruct(label) for label in labels]
        return np.asarray(rows, dtype=np.float32).reshape(len(labels), self.dim)

    def _label(self, doc_id: Id) -> int:
        if doc_id not in self._labels:
            raise KeyError(f"id {doc_id!r} is not in the index")
        return self._labels[doc_id]

    def metadata_items(self) -> Iterator[tuple[Id, dict[str, Any]]]:
        for doc_id, _, metadata in self._documents.values():
            yield doc_id, dict(metadata)

    def _delete(self, ids: list[Id]) -> None:
        labels = [self._labels.pop(i) for i in ids if i in self._labels]
        for label in labels:
            if self._documents.pop(label)[1] is not None and self.bm25 is not None:
                self._bm25_stale = True
        if not labels:
            return
        if self.kind == "hnsw":
            self._tombstones.update(labels)
        else:
            self._index.remove_ids(np.asarray(labels, dtype=np.int64))

    # ------------------------------------------------------------------ searching
    def _search(self, queries: np.ndarray, k: int, filter: Conditions | None) -> list[list[Hit]]:
        allowed = self._allowed_labels(filter)
        live = len(self) if allowed is None else len(allowed)
        if live == 0:
            return [[] for _ in queries]
        fetch = oversampled(k, self.oversample, live) if self.rescore else min(k, live)
        params = self._search_parameters(fetch, allowed)
        if self.precision == "binary":
            distances, labels = self._index.search(pack_bits(queries), fetch, params=params)
            scores = 1.0 - distances / self._bits
        else:
            scores, labels = self._index.search(queries, fetch, params=params)
        results = []
        for query, row_scores, row_labels in zip(queries, scores, labels, strict=True):
            found = row_labels >= 0
            row_scores, row_labels = row_scores[found], row_labels[found]
            if self.rescore:
                row_scores = self._vectors[row_labels].astype(np.float32) @ query
                order = np.argsort(-row_scores, kind="stable")[:k]
                row_scores, row_labels = row_scores[order], row_labels[order]
            hits = zip(row_labels.tolist(), row_scores.tolist(), strict=True)
            results.append([self._hit(label, score) for label, score in hits])
        return results

    def _allowed_labels(self, filter: Conditions | None) -> list[int] | None:
        if filter is None:
            return None
        return [
            label
            for label, (_, _, metadata) in self._documents.items()
            if matches(metadata, filter)
        ]

    def _search_parameters(self, fetch: int, allowed: list[int] | None) -> Any:
        keep: list[Any] = []  # FAISS holds raw pointers: keep the selectors alive with the params
        if allowed is not None:
            keep.append(faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))
        elif self._tombstones:
            keep.append(faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64)))
            keep.append(faiss.IDSelectorNot(keep[0]))
        if self.kind == "hnsw":
            params = _faiss.SearchParametersHNSW(efSearch=max(self.ef_search, fetch))
        elif self.kind == "ivf":
            params = _faiss.SearchParametersIVF(nprobe=min(self.nprobe, self.nlist or 1))
        elif keep:
            params = faiss.SearchParameters()
        else:
            return None
        if keep:
            params.sel = keep[-1]
            params.referenced_objects = keep
        return params

    def _sparse_search(
        self, texts: list[str], k: int, filter: Conditions | None
    ) -> list[list[Hit]]:
        assert self.bm25 is not None
        self._update_bm25()
        allowed = self._allowed_labels(filter)
        mask = None
        if allowed is not None and self._bm25 is not None:
            mask = np.isin(self._bm25_labels, np.asarray(allowed, dtype=np.int64))
            if not mask.any():
                return [[] for _ in texts]
        analyzer = self.bm25.analyzer()
        # bm25s scores Lucene's BM25, without the (k1 + 1) factor Qdrant's term weights have:
        # with it, both stores give the classic BM25 score.
        scale = self.bm25.k1 + 1
        results: list[list[Hit]] = []
        for text in texts:
            terms = [t for t in dict.fromkeys(analyzer.terms(text)) if self._knows(t)]
            if not terms:
                results.append([])
                continue
            documents, scores = self._bm25.retrieve(
                [terms],
                k=min(k, len(self._bm25_labels)),
                weight_mask=None if mask is None else mask.astype(np.float32),
                show_progress=False,
            )
            results.append(
                [
                    self._hit(int(self._bm25_labels[row]), float(score) * scale)
                    for row, score in zip(documents[0].tolist(), scores[0].tolist(), strict=True)
                    if score > 0  # no shared term, or filtered out by the mask
                ]
            )
        return results

    def _knows(self, term: str) -> bool:
        return self._bm25 is not None and term in self._bm25.vocab_dict

    def _update_bm25(self) -> None:
        """Rebuild the BM25 index from the stored texts if they changed since it was built."""
        if not self._bm25_stale or self.bm25 is None:
            return
        bm25s = _bm25s()
        analyzer = self.bm25.analyzer()
        labels = [label for label, (_, text, _) in self._documents.items() if text is not None]
        corpus = [analyzer.terms(self._documents[label][1] or "") for label in labels]
        model = None
        if any(corpus):
            model = bm25s.BM25(k1=self.bm25.k1, b=self.bm25.b, method="lucene", backend="numpy")
            model.index(corpus, show_progress=False)
        self._bm25 = model
        self._bm25_labels = np.asarray(labels if model is not None else [], dtype=np.int64)
        self._bm25_stale = False
        logger.debug("built the BM25 index of %d texts", len(labels))

    def _hit(self, label: int, score: float) -> Hit:
        doc_id, text, metadata = self._documents[label]
        return Hit(doc_id, score, text, dict(metadata))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the directory ``path`` atomically (see the module docstring).

        Raises :class:`~llmvec.index.storage.StoreConflictError` when this index was loaded
        from (or saved to) ``path`` and another writer has saved there since.
        """
        target = Path(path).expanduser().absolute()
        state: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "save_id": uuid.uuid4().hex,
            "spec": self.spec.to_dict(),
            "settings": self._settings(),
            "next_label": self._next_label,
            "tombstones": sorted(self._tombstones),
            "documents": [
                [label, doc_id, text, metadata]
                for label, (doc_id, text, metadata) in self._documents.items()
            ],
        }
        state["digest"] = _documents_digest(state)
        self._update_bm25()
        with atomic_directory(target, MARKER) as staging:
            self._check_not_overtaken(target)
            if self._index is not None:
                writer = (
                    faiss.write_index_binary if self.precision == "binary" else faiss.write_index
                )
                writer(self._index, str(staging / _INDEX_FILE))
            if self.rescore:
                np.save(staging / _VECTORS_FILE, self._vectors, allow_pickle=False)
            if self.bm25 is not None:
                np.save(staging / _BM25_LABELS, self._bm25_labels, allow_pickle=False)
            if self._bm25 is not None:
                self._bm25.save(staging, allow_pickle=False, **_BM25_FILES)
            write_json(staging / MARKER, state)
            written = _sidecar_hash((staging / MARKER).read_bytes())
        self._origin = (target, written)
        logger.info("saved %d documents to %s", len(self), target)

    def _check_not_overtaken(self, target: Path) -> None:
        """Refuse to save over a store that another writer saved since this index read it."""
        if self._origin is None or self._origin[0] != target:
            return
        marker = target / MARKER
        current = _sidecar_hash(marker.read_bytes()) if marker.is_file() else None
        if current != self._origin[1]:
            raise StoreConflictError(
                f"FAISS index {str(target)!r} was saved by another writer since this index was "
                "loaded from it; saving would lose that writer's documents. Load it again and "
                "repeat the changes"
            )

    def _settings(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "kind": self.kind,
            "rescore": self.rescore,
            "oversample": self.oversample,
            "rescore_dtype": self.rescore_dtype,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "sparse": None if self.bm25 is None else self.bm25.to_dict(),
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], encoder: TextEncoder | None = None) -> FaissIndex:
        """Open an index written by :meth:`save`.

        With ``encoder``, its spec must match the stored one (a ``ValueError`` names the
        differing fields); without, text queries build an encoder from the stored spec.
        """
        root = Path(path).expanduser().absolute()
        what = f"FAISS index {str(root)!r}"
        if not root.is_dir():
            raise FileNotFoundError(f"{what} does not exist (no such directory)")
        files = read_snapshot(
            root, (MARKER, _INDEX_FILE, _VECTORS_FILE, _BM25_LABELS, *_BM25_FILES.values())
        )
        if MARKER not in files:
            raise FileNotFoundError(f"{what}: {MARKER} does not exist")
        state = parse_json(files[MARKER], what, MARKER)
        if "digest" in state and state["digest"] != _documents_digest(state):
            raise ValueError(
                f"{what} has a corrupt {MARKER}: its documents were changed after the save "
                "(their digest does not match), so labels may no longer match the vectors"
            )
        try:
            if state.get("format") != FORMAT or state.get("format_version") != FORMAT_VERSION:
                raise ValueError(
                    f"unsupported format {state.get('format')!r} version "
                    f"{state.get('format_version')!r}; this llmvec reads {FORMAT!r} version "
                    f"{FORMAT_VERSION}"
                )
            spec = EmbeddingSpec.from_dict(state["spec"])
            settings = dict(state["settings"])
            stored_sparse = settings.pop("sparse", None)  # absent: made before BM25 vectors
            sparse = False if stored_sparse is None else BM25Settings.from_dict(stored_sparse)
            documents = [_document_row(row) for row in state["documents"]]
            next_label = int(state["next_label"])
            tombstones = {int(label) for label in state["tombstones"]}
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as error:
            raise ValueError(f"{what} has a corrupt {MARKER}: {error}") from None
        if encoder is not None:
            check_spec(spec, encoder.spec, what=what)
        try:
            index = cls(encoder, spec=spec, calibration=spec.calibration, sparse=sparse, **settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{what} has corrupt settings in {MARKER}: {error}") from None
        index._index = _read_faiss(files.get(_INDEX_FILE), index.precision, what)
        if index.rescore:
            index._vectors = _read_vectors(files.get(_VECTORS_FILE), what)
        index._next_label, index._tombstones = next_label, tombstones
        for label, doc_id, text, metadata in documents:
            if doc_id in index._labels or label in index._documents:
                raise ValueError(
                    f"{what} has a corrupt {MARKER}: id {doc_id!r} or label {label} appears twice"
                )
            index._labels[doc_id] = label
            index._documents[label] = (doc_id, text, metadata)
        index._check_consistency(what)
        index._read_bm25(files, what)
        index._origin = (root, _sidecar_hash(files[MARKER]))
        return index

    def _read_bm25(self, files: dict[str, bytes], what: str) -> None:
        """The saved BM25 index, which must cover exactly the stored texts."""
        if self.bm25 is None:
            return
        if _BM25_LABELS not in files:
            raise FileNotFoundError(f"{what} is missing {_BM25_LABELS}")
        labels = _read_array(files[_BM25_LABELS], _BM25_LABELS, what)
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(f"{what} has a corrupt {_BM25_LABELS}: not a list of labels")
        model = _read_bm25s(files, what, self.bm25) if len(labels) else None
        texted = {label for label, (_, text, _) in self._documents.items() if text is not None}
        covered = set(labels.tolist())
        documents = 0 if model is None else int(model.scores["num_docs"])
        if len(covered) != len(labels) or documents != len(labels) or not covered <= texted:
            raise ValueError(
                f"{what} is corrupt: its BM25 files and {MARKER} disagree (they hold "
                f"{documents} documents for {len(labels)} labels, of {len(texted)} texts)"
            )
        self._bm25, self._bm25_labels = model, labels.astype(np.int64)
        # Texts whose terms were all dropped have no BM25 document: rebuild only if one that
        # has terms is missing (a store saved by this code never needs it).
        self._bm25_stale = covered != texted and self._has_terms(texted - covered)

    def _has_terms(self, labels: set[int]) -> bool:
        assert self.bm25 is not None
        analyzer = self.bm25.analyzer()
        return any(analyzer.terms(self._documents[label][1] or "") for label in labels)

    def _stored_labels(self) -> set[int]:
        """The labels the FAISS file holds (deleted HNSW entries included)."""
        if self._index is None:
            return set()
        if self.kind == "ivf":
            lists = _faiss.extract_index_ivf(self._index).invlists
            return {
                int(label)
                for number in range(lists.nlist)
                for label in _faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number))
            }
        return {int(label) for label in faiss.vector_to_array(self._index.id_map)}

    def _check_consistency(self, what: str) -> None:
        """The FAISS file, the rescoring vectors and the sidecar's documents must agree."""
        dimension = self._bits if self.precision == "binary" else self.dim
        if self._index is not None and self._index.d != dimension:
            raise ValueError(
                f"{what} is corrupt: {_INDEX_FILE} has dimension {self._index.d}, the spec in "
                f"{MARKER} says {dimension}"
            )
        if self._documents and self._index is None:
            raise FileNotFoundError(f"{what} is missing {_INDEX_FILE}")
        live = set(self._documents)
        if not live.isdisjoint(self._tombstones):
            raise ValueError(f"{what} has a corrupt {MARKER}: a deleted label has a document")
        stored = self._stored_labels()
        expected = live | self._tombstones if self.kind == "hnsw" else live
        if stored != expected:
            missing, unknown = len(expected - stored), len(stored - expected)
            raise ValueError(
                f"{what} is corrupt: {_INDEX_FILE} and {MARKER} disagree ({missing} documents "
                f"of {MARKER} have no vector in {_INDEX_FILE}, {unknown} vectors have no document)"
            )
        if any(label >= self._next_label for label in stored):
            raise ValueError(
                f"{what} has a corrupt {MARKER}: next_label {self._next_label} is already used"
            )
        if self.rescore and self._vectors.shape != (self._next_label, self.dim):
            raise ValueError(
                f"{what} is corrupt: {_VECTORS_FILE} holds {self._vectors.shape} rescoring "
                f"vectors, {MARKER} expects ({self._next_label}, {self.dim})"
            )


def merge(shards: Sequence[FaissIndex | str | os.PathLike[str]], **options: Any) -> FaissIndex:
    """One index holding the documents of float32 ``shards`` (indexes or saved directories),
    such as those Ray workers write (:func:`llmvec.ray.write_faiss_shards`).

    The shards must share one spec. Their exact vectors are added in a single call, shard after
    shard, so the result (int8 calibration and IVF training included) is what one
    ``add_embeddings`` of all the documents builds. ``options`` are :class:`FaissIndex`'s
    (``precision``, ``kind``...). An id found in several shards keeps its last copy.
    """
    loaded = [s if isinstance(s, FaissIndex) else FaissIndex.load(s) for s in shards]
    if not loaded:
        raise ValueError("merge needs at least one shard")
    spec = loaded[0].spec
    documents: dict[Id, tuple[np.ndarray, str | None, dict[str, Any]]] = {}
    for position, shard in enumerate(loaded):
        if shard.precision != "float32":
            raise ValueError(
                f"shard {position} has precision {shard.precision!r}; merging needs float32 "
                "shards (their exact vectors)"
            )
        differing = spec.differences(shard.spec)
        if differing:
            raise ValueError(
                f"shard {position}'s EmbeddingSpec differs from shard 0's in {differing}"
            )
        labels = sorted(shard._documents)
        if not labels:
            continue
        vectors = shard._index.reconstruct_batch(np.asarray(labels, dtype=np.int64))
        for label, vector in zip(labels, vectors, strict=True):
            doc_id, text, metadata = shard._documents[label]
            documents.pop(doc_id, None)  # the last copy wins, in its own position
            documents[doc_id] = (vector, text, metadata)
    merged = FaissIndex(spec=spec, **options)
    if documents:
        rows = list(documents.values())
        merged.add_embeddings(
            np.stack([vector for vector, _, _ in rows]),
            ids=list(documents),
            texts=[text for _, text, _ in rows],
            metadata=[metadata for _, _, metadata in rows],
        )
    logger.info("merged %d shards into %d documents", len(loaded), len(merged))
    return merged


def _sidecar_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _documents_digest(state: dict[str, Any]) -> str:
    """A hash of what ties vectors to documents in a sidecar: labels, ids, texts, metadata."""
    tied = {name: state.get(name) for name in ("documents", "next_label", "tombstones")}
    canonical = json.dumps(tied, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _document_row(row: Any) -> tuple[int, Id, str | None, dict[str, Any]]:
    """One ``[label, id, text, metadata]`` row of the sidecar, checked."""
    label, doc_id, text, metadata = row
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        raise ValueError(f"label {label!r} is not a non-negative int")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"the text of {doc_id!r} is {type(text).__name__}, not str")
    if not isinstance(metadata, dict):
        raise ValueError(f"the metadata of {doc_id!r} is {type(metadata).__name__}, not a dict")
    return label, check_id(doc_id), text, metadata


def _read_faiss(data: bytes | None, precision: str, what: str) -> Any:
    if data is None:
        return None
    reader = faiss.deserialize_index_binary if precision == "binary" else faiss.deserialize_index
    try:
        return reader(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as error:
        raise ValueError(f"{what} has a corrupt {_INDEX_FILE}: {error}") from None


def _read_vectors(data: bytes | None, what: str) -> np.ndarray:
    if data is None:
        raise FileNotFoundError(f"{what} is missing {_VECTORS_FILE}")
    try:
        vectors = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{what} has a corrupt {_VECTORS_FILE}: {error}") from None
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        raise ValueError(f"{what} has a corrupt {_VECTORS_FILE}: not a matrix")
    return vectors


def _sparse_settings(sparse: bool | BM25Settings) -> BM25Settings | None:
    """The BM25 settings of a ``sparse`` option; checks that bm25s (and the stemmer) import."""
    if isinstance(sparse, bool):
        settings = BM25Settings() if sparse else None
    elif isinstance(sparse, BM25Settings):
        settings = sparse
    else:
        raise TypeError(f"sparse must be a bool or a BM25Settings, got {sparse!r}")
    if settings is not None:
        require("bm25s", _INSTALL_BM25)
        settings.analyzer()
    return settings


def _read_array(data: bytes, name: str, what: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{what} has a corrupt {name}: {error}") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} has a corrupt {name}: not an array")
    return array


def _read_bm25s(files: dict[str, bytes], what: str, settings: BM25Settings) -> Any:
    """A ``bm25s.BM25`` from its saved files (bm25s reads them with ``allow_pickle=False``)."""
    bm25s = _bm25s()
    missing = [name for name in _BM25_FILES.values() if name not in files]
    if missing:
        raise FileNotFoundError(f"{what} is missing {', '.join(missing)}")
    params = parse_json(files[_BM25_FILES["params_name"]], what, _BM25_FILES["params_name"])
    expected = {"k1": settings.k1, "b": settings.b, "method": "lucene"}
    found = {key: params.get(key) for key in expected}
    if found != expected:
        raise ValueError(
            f"{what} has corrupt BM25 parameters in {_BM25_FILES['params_name']}: {found} != "
            f"{expected} (the settings in {MARKER})"
        )
    # bm25s reads a folder: give it this snapshot's files, not the live folder's.
    with tempfile.TemporaryDirectory(prefix="llmvec-bm25-") as folder:
        for name in _BM25_FILES.values():
            (Path(folder) / name).write_bytes(files[name])
        try:
            return bm25s.BM25.load(folder, allow_pickle=False, mmap=False, **_BM25_FILES)
        except (ValueError, OSError, EOFError, KeyError, TypeError) as error:
            raise ValueError(f"{what} has corrupt BM25 files: {error}") from None


def _bm25s() -> Any:
    """The ``bm25s`` module, its logger quieted (it sets itself to DEBUG on import, which would
    print its steps between a command's own lines)."""
    module = require("bm25s", _INSTALL_BM25)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return module
