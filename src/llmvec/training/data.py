"""Training data: texts, (query, positive, negative) triplets and scored sentence pairs read from
files, checked row by row, as ``datasets.Dataset`` objects; and a dev split cut by query."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path

import datasets


class TrainingDataError(ValueError):
    """A training file that cannot be used; the message names the file and (1-based) line."""


_JSON_LINES = (".jsonl", ".json")
_DELIMITED = {".csv": "excel", ".tsv": "excel-tab"}
_TEXT_SUFFIXES = (*_JSON_LINES, ".txt", ".txt.gz", *_DELIMITED)
_TRIPLET_SUFFIXES = (".jsonl", *_DELIMITED)
# CSV layouts of triplets: the header's names for the query, the positive and the negative.
_CSV_TRIPLETS = (("sent0", "sent1", "hard_neg"), ("query", "positive", "negative"))
_TRIPLET_COLUMNS = ("query", "positive", "negative", "instruction")
_SCORED_COLUMNS = ("sentence1", "sentence2", "score")

_Row = tuple[int, Mapping[str, object]]  # a row and the line it starts on


def load_texts(path: str | os.PathLike[str]) -> datasets.Dataset:
    """One column "text". Accepts: .jsonl/.json lines with a "text" field; .txt and .txt.gz
    (one sentence a line, blank lines skipped); .csv/.tsv with a "text" column."""
    file, suffix = _check_path(path, _TEXT_SUFFIXES)
    texts: list[str] = []
    if suffix in (".txt", ".txt.gz"):
        for _, line in _lines(file, suffix):
            text = line.removesuffix("\n").removesuffix("\r")
            if text.strip():
                texts.append(text)
    else:
        if suffix in _DELIMITED:
            header, rows = _csv_rows(file, suffix)
            if "text" not in header:
                raise _error(file, f'the header has no "text" column (it has: {", ".join(header)})')
        else:
            rows = _json_rows(file, suffix)
        texts.extend(_take(file, line, row, "text") for line, row in rows)
    if not texts:
        raise _error(file, "has no rows")
    return datasets.Dataset.from_dict(
        {"text": texts}, features=datasets.Features({"text": datasets.Value("string")})
    )


def load_triplets(
    path: str | os.PathLike[str], *, require_negative: bool = False
) -> datasets.Dataset:
    """Columns "query", "positive", "negative" (negative "" when a row has none, unless
    require_negative, in which case a row without one is an error) and "instruction" (the task
    put before this row's query, "" for the run's own). Accepts:
    .jsonl with {"query","positive","negative"} (negative optional, "" or null meaning none);
    .jsonl with {"query","pos":[...],"neg":[...]} (WikiQA layout: one row per positive, the
    negatives cycling over the neg list); .csv/.tsv with the header sent0,sent1[,hard_neg]
    (SimCSE) or query,positive[,negative] (an empty negative cell meaning none). Any layout may
    add an optional "instruction" field or column. The layout of a .jsonl file is that of its
    first row."""
    file, suffix = _check_path(path, _TRIPLET_SUFFIXES)
    columns: dict[str, list[str]] = {name: [] for name in _TRIPLET_COLUMNS}
    if suffix in _DELIMITED:
        header, rows = _csv_rows(file, suffix)
        query, positive, negative = _csv_triplet_fields(file, header, require_negative)
        for line, row in rows:
            columns["query"].append(_take(file, line, row, query))
            columns["positive"].append(_take(file, line, row, positive))
            columns["negative"].append(
                "" if negative is None else _take(file, line, row, negative, require_negative)
            )
            columns["instruction"].append(_take(file, line, row, "instruction", False))
    else:
        wikiqa: bool | None = None  # the layout, set by the first row
        for line, row in _json_rows(file, suffix):
            if wikiqa is None:
                wikiqa = "pos" in row and "positive" not in row
            query = _take(file, line, row, "query")
            instruction = _take(file, line, row, "instruction", False)
            if wikiqa:
                negatives = _take_list(file, line, row, "neg", require_negative)
                for index, positive in enumerate(_take_list(file, line, row, "pos", True)):
                    columns["query"].append(query)
                    columns["positive"].append(positive)
                    columns["negative"].append(
                        negatives[index % len(negatives)] if negatives else ""
                    )
                    columns["instruction"].append(instruction)
            else:
                columns["query"].append(query)
                columns["positive"].append(_take(file, line, row, "positive"))
                columns["negative"].append(_take(file, line, row, "negative", require_negative))
                columns["instruction"].append(instruction)
    if not columns["query"]:
        raise _error(file, "has no rows")
    string = datasets.Value("string")
    return datasets.Dataset.from_dict(
        columns, features=datasets.Features({name: string for name in _TRIPLET_COLUMNS})
    )


def load_scored_pairs(path: str | os.PathLike[str]) -> datasets.Dataset:
    """Columns "sentence1", "sentence2" and "score" (a float: only its order counts, so STS-B's
    0-5 and a 0-1 scale train alike). Accepts .jsonl with {"sentence1","sentence2","score"} and
    .csv/.tsv with a header naming those three columns (sentence-transformers' STS layout)."""
    file, suffix = _check_path(path, _TRIPLET_SUFFIXES)
    if suffix in _DELIMITED:
        header, rows = _csv_rows(file, suffix)
        missing = [name for name in _SCORED_COLUMNS if name not in header]
        if missing:
            message = f"the header has no {', '.join(missing)} (it has: {', '.join(header)})"
            raise _error(file, message, 1)
    else:
        rows = _json_rows(file, suffix)
    columns: dict[str, list[object]] = {name: [] for name in _SCORED_COLUMNS}
    for line, row in rows:
        columns["sentence1"].append(_take(file, line, row, "sentence1"))
        columns["sentence2"].append(_take(file, line, row, "sentence2"))
        columns["score"].append(_score(file, line, row))
    if not columns["score"]:
        raise _error(file, "has no rows")
    if len(set(columns["score"])) < 2:
        raise _error(file, "every pair has the same score: there is no order to learn")
    string = datasets.Value("string")
    features = {"sentence1": string, "sentence2": string, "score": datasets.Value("float64")}
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def dev_split(
    dataset: datasets.Dataset, fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, dev) cut by query so that no query appears in both; for a dataset without a "query"
    column, by row. ``fraction`` (0 < fraction < 1) is the share of queries (or rows) in dev, at
    least one and never all of them. Rows keep their order; deterministic for a seed."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    by_query = "query" in dataset.column_names
    keys: list[object] = list(dataset["query"]) if by_query else list(range(len(dataset)))
    groups = list(dict.fromkeys(keys))
    if len(groups) < 2:
        unit = "distinct queries" if by_query else "rows"
        raise ValueError(f"a dev split needs at least 2 {unit}, the dataset has {len(groups)}")
    count = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    dev_keys = set(random.Random(seed).sample(groups, count))
    train = [index for index, key in enumerate(keys) if key not in dev_keys]
    dev = [index for index, key in enumerate(keys) if key in dev_keys]
    return dataset.select(train), dataset.select(dev)


def _error(path: Path, message: str, line: int | None = None) -> TrainingDataError:
    where = str(path) if line is None else f"{path}, line {line}"
    return TrainingDataError(f"{where}: {message}")


def _check_path(path: str | os.PathLike[str], supported: tuple[str, ...]) -> tuple[Path, str]:
    """The file and its supported suffix, or an error for another suffix or a missing file."""
    file = Path(path)
    suffix = next((end for end in supported if file.name.lower().endswith(end)), None)
    if suffix is None:
        raise _error(file, f"unsupported file type (supported: {', '.join(supported)})")
    if not file.is_file():
        raise _error(file, "no such file" if not file.exists() else "not a file")
    return file, suffix


def _lines(path: Path, suffix: str) -> Iterator[tuple[int, str]]:
    """The file's lines (newline kept) decoded from UTF-8, with their 1-based numbers."""
    try:
        with _open(path, suffix) as file:
            for number, raw in enumerate(file, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    message = f"not UTF-8 ({exc.reason} at byte {exc.start} of the line)"
                    raise _error(path, message, number) from None
                yield number, line.removeprefix("\ufeff") if number == 1 else line
    except (OSError, EOFError) as exc:  # a bad or truncated gzip stream, a read error
        raise _error(path, f"cannot be read ({exc})") from exc


def _open(path: Path, suffix: str) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if suffix.endswith(".gz") else path.open("rb")


def _json_rows(path: Path, suffix: str) -> Iterator[_Row]:
    """One JSON object a line; blank lines are skipped."""
    for line, text in _lines(path, suffix):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"invalid JSON ({exc.msg}, column {exc.colno}); expected one object a line"
            raise _error(path, message, line) from None
        if not isinstance(row, dict):
            raise _error(path, f"expected a JSON object, got {_kind(row)}", line)
        yield line, row


def _csv_rows(path: Path, suffix: str) -> tuple[list[str], Iterator[_Row]]:
    """The header's column names and the rows under it, by name."""
    records = _csv_records(path, suffix)
    first = next(records, None)
    if first is None:
        raise _error(path, "is empty (no header and no rows)")
    header = [name.strip() for name in first[1]]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise _error(path, f"the header repeats {', '.join(repeated)}", 1)
    return header, _csv_dicts(path, header, records)


def _csv_records(path: Path, suffix: str) -> Iterator[tuple[int, list[str]]]:
    """Non-empty records and the line each starts on (a quoted field may span lines)."""
    reader = csv.reader((text for _, text in _lines(path, suffix)), _DELIMITED[suffix], strict=True)
    start = 1
    while True:
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            raise _error(path, f"malformed CSV ({exc})", start) from None
        if fields is None:
            return
        if fields:
            yield start, fields
        start = reader.line_num + 1


def _csv_dicts(
    path: Path, header: list[str], records: Iterator[tuple[int, list[str]]]
) -> Iterator[_Row]:
    for line, fields in records:
        if len(fields) != len(header):
            message = f"{len(fields)} fields, the header has {len(header)} ({', '.join(header)})"
            raise _error(path, message, line)
        yield line, dict(zip(header, fields, strict=True))


def _csv_triplet_fields(
    path: Path, header: list[str], require_negative: bool
) -> tuple[str, str, str | None]:
    """The header's names for the query, the positive and the negative (None when it has none)."""
    for query, positive, negative in _CSV_TRIPLETS:
        if query in header and positive in header:
            if negative in header:
                return query, positive, negative
            if require_negative:
                message = f'the header has no "{negative}" column and require_negative is set'
                raise _error(path, f"{message} (it has: {', '.join(header)})", 1)
            return query, positive, None
    needed = " or ".join(",".join(names[:2]) + f"[,{names[2]}]" for names in _CSV_TRIPLETS)
    raise _error(path, f"the header needs {needed} (it has: {', '.join(header)})", 1)


def _take(
    path: Path, line: int, row: Mapping[str, object], field: str, required: bool = True
) -> str:
    """The text of ``field``: "" when an optional field is absent, null or blank."""
    if field not in row:
        if not required:
            return ""
        present = ", ".join(row) or "nothing"
        raise _error(path, f'missing column "{field}" (the row has: {present})', line)
    return _text(path, line, row[field], field, required)


def _take_list(
    path: Path, line: int, row: Mapping[str, object], field: str, required: bool
) -> list[str]:
    """The texts of a list ``field`` ([] when an optional one is absent or null); each one is
    required."""
    value = row.get(field)
    if value is None and not required:
        return []
    if field not in row:
        present = ", ".join(row) or "nothing"
        raise _error(path, f'missing column "{field}" (the row has: {present})', line)
    if not isinstance(value, list):
        raise _error(path, f'"{field}" must be a list of strings, got {_kind(value)}', line)
    if not value and required:
        raise _error(path, f'"{field}" is an empty list', line)
    return [_text(path, line, item, f"{field}[{index}]") for index, item in enumerate(value)]


def _score(path: Path, line: int, row: Mapping[str, object]) -> float:
    """A row's "score": a finite number (a JSON number, or a CSV cell that parses as one)."""
    if "score" not in row:
        present = ", ".join(row) or "nothing"
        raise _error(path, f'missing column "score" (the row has: {present})', line)
    value = row["score"]
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        score = float(value)
    except ValueError:
        shown = repr(value) if isinstance(value, str) else _kind(value)
        raise _error(path, f'"score" must be a number, got {shown}', line) from None
    if not math.isfinite(score):
        raise _error(path, f'"score" must be finite, got {value!r}', line)
    return score


def _text(path: Path, line: int, value: object, field: str, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _error(path, f'"{field}" must be a string, got {_kind(value)}', line)
    if not value.strip():
        if required:
            raise _error(path, f'"{field}" is empty or only whitespace', line)
        return ""
    return value


def _kind(value: object) -> str:
    """What a JSON value is, for a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"
