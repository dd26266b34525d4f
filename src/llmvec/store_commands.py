"""What ``llmvec ls``, ``rm``, ``info`` and ``search --where`` read of a store: its documents
(one per source file, from the chunks' metadata), matched by path or glob, and its description.

Every function returns plain JSON-ready values; the command line prints them as text or, with
``--json``, as they are.
"""

from __future__ import annotations

import fnmatch
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvec.sync import stored_files

if TYPE_CHECKING:
    from llmvec.index.base import BaseIndex
    from llmvec.index.records import Hit, Id
    from llmvec.index.stores import Store

#: Schema version of every ``--json`` output; bumped when a field changes meaning or goes.
JSON_SCHEMA = 1
_BITS_PER_VALUE = {"float32": 32, "float16": 16, "int8": 8, "uint8": 8, "binary": 1}


def display_path(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def iso_time(mtime_ns: int | None) -> str | None:
    """A modification time (integer nanoseconds) as ISO 8601 in UTC."""
    if mtime_ns is None:
        return None
    moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc)
    return moment.isoformat(timespec="seconds")


def parse_date(text: str, option: str) -> int:
    """``--after`` / ``--before`` dates (ISO 8601; a date alone is local midnight) as POSIX
    nanoseconds, the unit of the stored ``mtime_ns``."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{option} {text!r} is not an ISO date or time (e.g. 2026-01-31 or 2026-01-31T08:00)"
        ) from None
    return round(moment.timestamp() * 1e9)


def documents(index: BaseIndex) -> list[dict[str, Any]]:
    """One entry per stored source file: path, chunks, size, modified time, type, hash."""
    entries = []
    for source, record in sorted(stored_files(index).items()):
        entries.append(
            {
                "path": source,
                "chunks": len(record.ids),
                "size": record.size,
                "modified": iso_time(record.mtime_ns),
                "ext": Path(source).suffix.lower().lstrip("."),
                "sha256": record.sha256,
                "complete": record.complete,
            }
        )
    return entries


def matching_sources(index: BaseIndex, patterns: list[str]) -> dict[str, list[Id]]:
    """The stored sources (with their chunk ids) that a path, a folder or a glob names;
    relative patterns are taken from the working directory."""
    records = stored_files(index)
    absolute = [_absolute(p) for p in patterns]
    return {
        source: record.ids
        for source, record in records.items()
        if any(_matches(source, pattern) for pattern in absolute)
    }


def _absolute(pattern: str) -> str:
    expanded = os.path.expanduser(pattern)
    joined = expanded if os.path.isabs(expanded) else os.path.join(os.getcwd(), expanded)
    return Path(os.path.normpath(joined)).as_posix()


def _matches(source: str, pattern: str) -> bool:
    """A source matches its own path, a folder above it, or a glob (``*`` crosses folders)."""
    if source == pattern or source.startswith(pattern.rstrip("/") + "/"):
        return True
    return fnmatch.fnmatchcase(source, pattern)


def where_filter(
    index: BaseIndex, where: list[str], after: str | None, before: str | None
) -> dict[str, Any] | None:
    """The metadata filter of ``--where KEY=VALUE`` (repeatable; values of one key are any-of;
    ``source`` takes paths, folders and globs), ``--after`` and ``--before``."""
    conditions: dict[str, Any] = {}
    for item in where:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"--where takes KEY=VALUE, got {item!r}")
        conditions.setdefault(key, []).append(value)
    if "source" in conditions:
        # Paths and globs become the exact sources they name (an empty list matches nothing).
        conditions["source"] = sorted(matching_sources(index, conditions["source"]))
    for key, values in conditions.items():
        if key != "source":
            conditions[key] = [_typed(value) for value in values]
    bounds = {}
    if after is not None:
        bounds["gte"] = parse_date(after, "--after")
    if before is not None:
        bounds["lt"] = parse_date(before, "--before")
    if bounds:
        conditions["mtime_ns"] = bounds
    return conditions or None


def _typed(value: str) -> str | int | float | bool:
    """A ``--where`` value as the type metadata stores: an int, a float, true/false or text."""
    if value in ("true", "false"):
        return value == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def hit_entry(rank: int, hit: Hit) -> dict[str, Any]:
    """One search hit as ``--json`` prints it."""
    metadata = dict(hit.metadata)
    return {
        "rank": rank,
        "id": hit.id,
        "score": hit.score,
        "source": metadata.get("source"),
        "chunk": metadata.get("chunk"),
        "headings": metadata.get("headings", []),
        "text": hit.text,
        "metadata": metadata,
    }


def describe(index: BaseIndex, store: Store) -> dict[str, Any]:
    """``llmvec info``: the store, its spec, counts, dimensions and compression."""
    spec = index.spec
    records = stored_files(index)
    searched_bits = _BITS_PER_VALUE.get(spec.precision, 32) * spec.dim
    rescore = getattr(index, "rescore", False)
    rescore_dtype = getattr(index, "rescore_dtype", None) if rescore else None
    compression: dict[str, Any] = {"precision": spec.precision, "rescore": bool(rescore)}
    if rescore_dtype is not None:
        compression["rescore_dtype"] = rescore_dtype
    if spec.calibration is not None:
        compression["calibrated"] = True
    chunking = sorted({r.chunking for r in records.values() if r.chunking is not None})
    return {
        "schema": JSON_SCHEMA,
        "store": str(store),
        "kind": store.scheme,
        "documents": len(records),
        "chunks": len(index),
        "dim": spec.dim,
        "bytes_per_vector": math.ceil(searched_bits / 8),
        "rescore_bytes_per_vector": (
            spec.dim * _BITS_PER_VALUE[rescore_dtype] // 8 if rescore_dtype else None
        ),
        "compression": compression,
        "sparse": bool(getattr(index, "sparse", False)),
        "chunking": chunking,
        "spec": spec.to_dict(),
    }
