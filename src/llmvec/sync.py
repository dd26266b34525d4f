"""Keep a store in step with a folder: encode only what changed since the last run.

The manifest is the store itself: every chunk carries its file's path, size, modification time
(``mtime_ns``), content hash, chunking and chunk count in its metadata, written in the same
upsert as its vector. A separate manifest file could disagree with the store after a crash;
payloads cannot. A run:

1. walks the folder and reads what the store holds per file (:func:`stored_files`);
2. keeps a file whose size and modification time match a complete record, without reading it;
3. hashes the others: content already stored under this path or another one (a touch, a move,
   a copy) is stored again under the new path from the stored vectors, with no encoding;
4. reads, chunks and encodes the rest, replacing their chunks;
5. then deletes what is stale: chunks past a file's new count, and (unless ``prune=False``)
   the chunks of files gone from the folder.

Each step is idempotent and stale chunks go only after their replacements are written, so a run
killed at any point leaves a store the next run completes: a file's record is complete only when
all of its chunks agree on the hash and their count, and an incomplete one is encoded again.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvec.documents import Skipped, find_files
from llmvec.documents.chunking import chunk_sections, hf_token_spans, whitespace_spans
from llmvec.documents.readers import read_document
from llmvec.validation import check_positive

if TYPE_CHECKING:
    from llmvec.index.base import BaseIndex
    from llmvec.index.records import Id
    from llmvec.text_encoder import TextEncoder

#: Stores chunks encoded elsewhere (on Ray): their texts, ids and metadata.
Writer = Callable[[list[str], Sequence["Id"], list[dict[str, Any]]], None]
#: Tokens of margin under the encoder's text budget: a chunk tokenized inside a template can
#: merge a token or two differently at its edges.
_BUDGET_MARGIN = 2
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class Chunking:
    """How files are cut: at most ``max_tokens`` tokens of the store's encoder per chunk (capped
    at what the encoder reads, so no chunk is ever truncated), ``overlap`` tokens between
    consecutive chunks of a section."""

    max_tokens: int = 256
    overlap: int = 32

    def __post_init__(self) -> None:
        check_positive("max_tokens", self.max_tokens)
        if not 0 <= self.overlap < self.max_tokens:
            raise ValueError(
                f"overlap must be >= 0 and below max_tokens={self.max_tokens}, got {self.overlap}"
            )

    @property
    def key(self) -> str:
        """What a stored chunk records of its chunking: other settings chunk the file again."""
        return f"tokens={self.max_tokens};overlap={self.overlap}"


@dataclass(frozen=True)
class StoredFile:
    """A file as the store holds it: its record, from its chunks' metadata."""

    source: str
    ids: list[Id]
    size: int | None
    #: Modification time in integer nanoseconds (floats do not survive every engine exactly).
    mtime_ns: int | None
    sha256: str | None
    chunking: str | None
    #: Whether every chunk agrees on the record and all ``chunks`` of them are there.
    complete: bool

    def same_stat(self, size: int, mtime_ns: int) -> bool:
        return self.complete and self.size == size and self.mtime_ns == mtime_ns


@dataclass
class SyncReport:
    """What a run did, per file and per chunk."""

    files: int = 0
    unchanged: int = 0
    added: int = 0
    changed: int = 0
    reused: int = 0
    #: Files read that hold no text (they store nothing).
    empty: int = 0
    removed: int = 0
    chunks_encoded: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0
    chunks_stored: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``skipped`` as path / reason pairs)."""
        fields = {name: value for name, value in vars(self).items() if name != "skipped"}
        skipped = [{"path": s.path, "reason": s.reason} for s in self.skipped]
        return {**fields, "skipped": skipped}


def stored_files(index: BaseIndex) -> dict[str, StoredFile]:
    """The store's manifest: per source path, its chunk ids and record."""
    chunks: dict[str, list[tuple[Id, dict[str, Any]]]] = defaultdict(list)
    for doc_id, metadata in index.metadata_items():
        source = metadata.get("source")
        if isinstance(source, str):
            chunks[source].append((doc_id, metadata))
    return {source: _record(source, items) for source, items in chunks.items()}


def _record(source: str, items: list[tuple[Id, dict[str, Any]]]) -> StoredFile:
    first = items[0][1]
    keys = ("size", "mtime_ns", "sha256", "chunking", "chunks")
    agree = all(all(meta.get(k) == first.get(k) for k in keys) for _, meta in items)
    numbers = sorted(meta.get("chunk", -1) for _, meta in items)
    complete = agree and first.get("sha256") is not None
    complete = complete and numbers == list(range(int(first.get("chunks") or 0)))
    return StoredFile(
        source,
        [doc_id for doc_id, _ in items],
        first.get("size"),
        first.get("mtime_ns"),
        first.get("sha256"),
        first.get("chunking"),
        complete,
    )


def chunk_id(source: str, number: int) -> str:
    """A chunk's id: stable across runs, distinct across folders."""
    return f"{source}#{number}"


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class _File:
    """A file found on disk, with what a record compares."""

    source: str
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class _Piece:
    """A chunk to store: its id, text and metadata."""

    id: str
    text: str
    metadata: dict[str, Any]


class FolderSync:
    """Bring ``index`` in step with the files under ``root`` (see the module docstring).

    ``encoder`` (default: the index's own, built from its spec) is called, and so a model
    loaded, only when a file must be encoded: an unchanged folder loads none. A ``writer``
    stores the chunks to encode instead (vectors made elsewhere, as on Ray); chunks are then
    counted in words. ``checkpoint`` (a FAISS store's save) persists the work done so far every
    ``checkpoint_seconds`` of a long run; stores that write as they go need none.
    """

    def __init__(
        self,
        index: BaseIndex,
        chunking: Chunking,
        encoder: Callable[[], TextEncoder] | None = None,
        *,
        writer: Writer | None = None,
        prune: bool = True,
        follow_symlinks: bool = False,
        encoding: str = "utf-8",
        batch_size: int = 128,
        checkpoint: Callable[[], None] | None = None,
        checkpoint_seconds: float = 300.0,
    ) -> None:
        check_positive("batch_size", batch_size)
        self.index = index
        self.chunking = chunking
        self.prune = prune
        self.follow_symlinks = follow_symlinks
        self.encoding = encoding
        self.batch_size = batch_size
        self._encoder_factory = encoder or (lambda: index.encoder)
        self._encoder: TextEncoder | None = None
        self._writer = writer
        self._checkpoint = checkpoint
        self.checkpoint_seconds = checkpoint_seconds
        self._last_checkpoint = time.monotonic()
        self._spans: Callable[[str], list[tuple[int, int]]] | None = None
        self._max_tokens = chunking.max_tokens

    @property
    def encoder(self) -> TextEncoder:
        """The documents' encoder, built on first use."""
        if self._encoder is None:
            self._encoder = self._encoder_factory()
        return self._encoder

    def run(
        self, root: str | os.PathLike[str], progress: Callable[[int, int, int], None] | None = None
    ) -> SyncReport:
        """Sync the folder (or one file) at ``root``. ``progress(chunks, files_done, files)`` is
        called as chunks are stored."""
        report = SyncReport()
        found, skipped = find_files(os.fspath(root), follow_symlinks=self.follow_symlinks)
        report.skipped.extend(skipped)
        report.files = len(found)
        manifest = stored_files(self.index)
        by_content = {
            (record.sha256, record.chunking): record
            for record in manifest.values()
            if record.complete
        }
        keep: set[str] = set()  # sources whose chunks stay (all but the stale ones)
        stale: list[Id] = []
        pending: list[_Piece] = []
        done = 0
        for source in found:
            done += 1
            record = manifest.get(source)
            state = self._state(source, record, report)
            if state is None:  # unreadable: its chunks stay
                keep.add(source)
                continue
            if isinstance(state, StoredFile):
                report.unchanged += 1
                keep.add(source)
                continue
            keep.add(source)
            origin = by_content.get((state.sha256, self.chunking.key))
            pieces = None if origin is None else self._reused(state, origin)
            if pieces is not None:
                report.reused += 1
                report.chunks_reused += len(pieces)
            else:
                pieces = self._read(state, report)
                if pieces is None:  # unreadable: its chunks stay
                    continue
                if not pieces:
                    report.empty += 1
                else:
                    report.changed += record is not None
                    report.added += record is None
                pending.extend(pieces)
            if record is not None:
                written = {p.id for p in pieces}
                stale.extend(i for i in record.ids if i not in written)
            if len(pending) >= self.batch_size:
                self._encode(pending, report)
                pending = []
                self._maybe_checkpoint()
            if progress is not None:
                progress(report.chunks_encoded + report.chunks_reused, done, len(found))
        self._encode(pending, report)
        if progress is not None:
            progress(report.chunks_encoded + report.chunks_reused, done, len(found))
        gone = self._gone(manifest, keep, root, report)
        if self.prune:
            report.removed = len(gone)
            stale.extend(i for record in gone for i in record.ids)
        self.index.delete(stale)
        report.chunks_removed = len(stale)
        report.chunks_stored = len(self.index)
        return report

    def _maybe_checkpoint(self) -> None:
        """Persist what is written so far (a FAISS save), at most every ``checkpoint_seconds``:
        a killed run then loses at most that much encoding."""
        if self._checkpoint is None:
            return
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
            self._checkpoint()
            self._last_checkpoint = time.monotonic()

    def _state(
        self, source: str, record: StoredFile | None, report: SyncReport
    ) -> _File | StoredFile | None:
        """The record itself when the file is unchanged, else the file's state; ``None`` (and
        a skipped entry) when it cannot be read."""
        try:
            stat = os.stat(source)
            if (
                record is not None
                and record.chunking == self.chunking.key
                and record.same_stat(stat.st_size, stat.st_mtime_ns)
            ):
                return record
            return _File(source, stat.st_size, stat.st_mtime_ns, file_sha256(source))
        except OSError as error:
            report.skipped.append(Skipped(source, f"cannot read: {error.strerror or error}"))
            return None

    def _reused(self, state: _File, origin: StoredFile) -> list[_Piece] | None:
        """The chunks of stored content identical to ``state``'s, stored again under its path
        from the stored vectors; ``None`` when the store keeps no float vectors to reuse."""
        stored = self.index.stored(origin.ids)
        if stored.vectors is None:
            return None
        rows = sorted(range(len(origin.ids)), key=lambda row: stored.metadata[row]["chunk"])
        shared = _file_metadata(state, self.chunking, len(rows))
        pieces = [
            _Piece(
                chunk_id(state.source, number),
                stored.texts[row] or "",
                {**stored.metadata[row], **shared, "chunk": number},
            )
            for number, row in enumerate(rows)
        ]
        self.index.add_embeddings(
            stored.vectors[rows],
            ids=[p.id for p in pieces],
            texts=[p.text for p in pieces],
            metadata=[p.metadata for p in pieces],
        )
        return pieces

    def _read(self, state: _File, report: SyncReport) -> list[_Piece] | None:
        """The chunks of a file to encode; ``None`` (and a skipped entry) when it is unreadable."""
        document = read_document(state.source, self.encoding)
        if isinstance(document, Skipped):
            report.skipped.append(document)
            return None
        if not document.sections:
            return []
        spans, max_tokens = self._token_spans()
        pieces = chunk_sections(document.sections, spans, max_tokens, self._overlap(max_tokens))
        shared = _file_metadata(state, self.chunking, len(pieces))
        return [
            _Piece(
                chunk_id(state.source, number),
                piece.text,
                {**shared, "chunk": number, "headings": list(piece.headings)},
            )
            for number, piece in enumerate(pieces)
        ]

    def _overlap(self, max_tokens: int) -> int:
        return min(self.chunking.overlap, max_tokens // 2)

    def _token_spans(self) -> tuple[Callable[[str], list[tuple[int, int]]], int]:
        """The encoder's token spans and the tokens a chunk may hold (built on first use)."""
        if self._spans is None:
            counter = (whitespace_spans, None) if self._writer else token_counter(self.encoder)
            self._spans, budget = counter
            if budget is not None:
                self._max_tokens = min(self.chunking.max_tokens, budget)
        return self._spans, self._max_tokens

    def _encode(self, pieces: list[_Piece], report: SyncReport) -> None:
        if not pieces:
            return
        texts, ids, metadata = (
            [p.text for p in pieces],
            [p.id for p in pieces],
            [p.metadata for p in pieces],
        )
        if self._writer is not None:
            self._writer(texts, ids, metadata)
        else:
            vectors = self.encoder.encode_documents(texts)
            self.index.add_embeddings(vectors, ids=ids, texts=texts, metadata=metadata)
        report.chunks_encoded += len(pieces)

    @staticmethod
    def _gone(
        manifest: dict[str, StoredFile],
        keep: set[str],
        root: str | os.PathLike[str],
        report: SyncReport,
    ) -> list[StoredFile]:
        """The records of files under the synced ``root`` that are not there any more (none
        for a single file, none under a skipped folder)."""
        top = os.path.abspath(os.path.expanduser(root))
        if os.path.isfile(top):
            return []  # syncing one file removes nothing else
        prefix = Path(top).as_posix().rstrip("/") + "/"
        skipped = tuple(s.path for s in report.skipped)
        return [
            record
            for source, record in manifest.items()
            if source not in keep
            and source.startswith(prefix)
            and not any(source == s or source.startswith(s + "/") for s in skipped)
        ]


def _file_metadata(state: _File, chunking: Chunking, chunks: int) -> dict[str, Any]:
    """What every chunk of a file records of it (the manifest entry)."""
    return {
        "source": state.source,
        "ext": Path(state.source).suffix.lower().lstrip("."),
        "size": state.size,
        "mtime_ns": state.mtime_ns,
        "sha256": state.sha256,
        "chunking": chunking.key,
        "chunks": chunks,
    }


def token_counter(
    encoder: TextEncoder,
) -> tuple[Callable[[str], list[tuple[int, int]]], int | None]:
    """The token spans chunking counts with, and the text tokens the encoder reads from a
    document (``None`` when unknown): the encoder's own tokenizer when it has one, else words
    (a remote encoder)."""
    tokenizer = getattr(encoder, "tokenizer", None)
    budget = getattr(encoder, "document_token_budget", None)
    if tokenizer is None or budget is None:
        return whitespace_spans, None
    return hf_token_spans(tokenizer), max(1, int(budget) - _BUDGET_MARGIN)
