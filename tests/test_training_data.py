"""Training data: texts and triplets from JSON Lines, text and CSV files, the errors that name the
file and line of the first bad row, and the dev split cut by query."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import pytest

from llmvec.training.data import (
    TrainingDataError,
    dev_split,
    load_scored_pairs,
    load_texts,
    load_triplets,
)

#: The project's shared training data (``../shared/data/train`` from the project root).
TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def _shared(name: str) -> Path:
    path = TRAIN / name
    if not path.is_file():
        pytest.skip(f"shared training file {path} is missing")
    return path


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _jsonl(path: Path, *rows: object) -> Path:
    return _write(path, "".join(json.dumps(row) + "\n" for row in rows))


def _error(load: object, path: Path, line: int | None = None) -> str:
    """The message of the TrainingDataError ``load(path)`` raises, checked to name the file and
    the line."""
    assert callable(load)
    with pytest.raises(TrainingDataError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message
    if line is not None:
        assert f"line {line}:" in message
    return message


# ---- load_texts -------------------------------------------------------------------------------


def test_plain_text_strips_the_newline_only_and_skips_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.txt", "  first, indented \n\n   \nsecond\r\nthird")
    texts = load_texts(path)
    assert isinstance(texts, datasets.Dataset)
    assert texts.column_names == ["text"]
    assert texts["text"] == ["  first, indented ", "second", "third"]


def test_gzipped_text_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "s.txt.gz"
    path.write_bytes(gzip.compress("\ufeffone\ntwo\n".encode()))
    assert load_texts(path)["text"] == ["one", "two"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_lines_with_a_text_field(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    _write(path, '{"text": "a b", "id": 1}\n\n{"text": "c"}\n')
    assert load_texts(path)["text"] == ["a b", "c"]


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t")])
def test_delimited_files_with_a_text_column(tmp_path: Path, suffix: str, sep: str) -> None:
    path = _write(tmp_path / f"t{suffix}", f'id{sep}text\n1{sep}"x, ""y"""\n2{sep}z\n')
    assert load_texts(path)["text"] == ['x, "y"', "z"]


def test_shared_sentence_files_load_with_their_readme_counts() -> None:
    assert len(load_texts(_shared("sentences_ccby_pd.txt.gz"))) == 135_589
    wikipedia = load_texts(_shared("sentences_wikipedia_gensim.txt.gz"))
    assert len(wikipedia) == 19_564
    assert all(text.strip() and "\n" not in text for text in wikipedia["text"][:1000])


@pytest.mark.parametrize(
    ("content", "line", "expected"),
    [
        (
            '{"text": "ok"}\n{"body": "x", "id": 2}\n',
            2,
            'missing column "text" (the row has: body, id)',
        ),
        ('{"text": "ok"}\n{"text": ""}\n', 2, '"text" is empty or only whitespace'),
        ('{"text": "ok"}\n\n{"text": " \\t "}\n', 3, '"text" is empty or only whitespace'),
        ('{"text": 3}\n', 1, '"text" must be a string, got a number (3)'),
        ('{"text": ["a", "b"]}\n', 1, '"text" must be a string, got a list'),
        ('{"text": null}\n', 1, '"text" must be a string, got null'),
        ('{"text": "ok"}\n{"text": "ok"}\n{"text": "unclosed}\n', 3, "invalid JSON"),
        ('["a", "b"]\n', 1, "expected a JSON object, got a list"),
    ],
)
def test_bad_json_rows_name_the_file_and_line(
    tmp_path: Path, content: str, line: int, expected: str
) -> None:
    path = _write(tmp_path / "t.jsonl", content)
    assert expected in _error(load_texts, path, line)


def test_bad_csv_rows_count_the_header_as_line_one(tmp_path: Path) -> None:
    # The second record's quoted field spans lines 3-4, so the blank text is on line 5.
    path = _write(tmp_path / "t.csv", 'id,text\n1,a\n2,"b\nstill b"\n3,  \n')
    assert '"text" is empty or only whitespace' in _error(load_texts, path, 5)


@pytest.mark.parametrize(
    ("content", "line", "expected"),
    [
        ("id,text\n1,a,b\n", 2, "3 fields, the header has 2 (id, text)"),
        ("id,text\n1,a\n2\n", 3, "1 fields, the header has 2"),
        ('id,text\n1,a\n2,"never closed\n', 3, "malformed CSV"),
        ('id,text\n1,"a"b\n', 2, "malformed CSV"),
        ("id,body\n1,a\n", None, 'the header has no "text" column (it has: id, body)'),
        ("text,text\n1,a\n", 1, "the header repeats text"),
    ],
)
def test_bad_csv_files(tmp_path: Path, content: str, line: int | None, expected: str) -> None:
    path = _write(tmp_path / "t.csv", content)
    assert expected in _error(load_texts, path, line)


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.txt", b"fine\nbad \xff byte\n")
    assert "not UTF-8" in _error(load_texts, path, 2)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.txt", "", "has no rows"),
        ("blank.txt", "\n  \n\n", "has no rows"),
        ("empty.jsonl", "\n", "has no rows"),
        ("empty.csv", "", "is empty (no header and no rows)"),
        ("header.csv", "text\n", "has no rows"),
    ],
)
def test_files_without_rows(tmp_path: Path, name: str, content: str, expected: str) -> None:
    assert expected in _error(load_texts, _write(tmp_path / name, content))


def test_a_missing_file_a_folder_and_a_bad_gzip(tmp_path: Path) -> None:
    assert "no such file" in _error(load_texts, tmp_path / "absent.txt")
    (tmp_path / "folder.txt").mkdir()
    assert "not a file" in _error(load_texts, tmp_path / "folder.txt")
    bad = _write(tmp_path / "bad.txt.gz", b"not gzip at all\n")
    assert "cannot be read" in _error(load_texts, bad)


def test_unsupported_extensions_list_the_supported_ones(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.parquet", "x")
    message = _error(load_texts, path)
    assert "unsupported file type" in message
    for suffix in (".jsonl", ".json", ".txt", ".txt.gz", ".csv", ".tsv"):
        assert suffix in message
    message = _error(load_triplets, _write(tmp_path / "t.txt", "x\n"))
    assert "supported: .jsonl, .csv, .tsv" in message


# ---- load_triplets ----------------------------------------------------------------------------


def test_json_triplets_with_and_without_a_negative(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "t.jsonl",
        {"query": "q1", "positive": "p1", "negative": "n1", "score": 1},
        {"query": "q2", "positive": "p2"},
        {"query": "q3", "positive": "p3", "negative": None},
        {"query": "q4", "positive": "p4", "negative": ""},
    )
    triplets = load_triplets(path)
    assert triplets.column_names == ["query", "positive", "negative", "instruction"]
    assert triplets.to_dict() == {
        "query": ["q1", "q2", "q3", "q4"],
        "positive": ["p1", "p2", "p3", "p4"],
        "negative": ["n1", "", "", ""],
        "instruction": ["", "", "", ""],
    }
    message = _error(lambda p: load_triplets(p, require_negative=True), path, 2)
    assert 'missing column "negative" (the row has: query, positive)' in message


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"query": "q", "negative": "n"},
            'missing column "positive" (the row has: query, negative)',
        ),
        ({"positive": "p"}, 'missing column "query"'),
        ({"query": "q", "positive": 7}, '"positive" must be a string, got a number (7)'),
        ({"query": ["q"], "positive": "p"}, '"query" must be a string, got a list'),
        ({"query": "q", "positive": "p", "negative": 1.5}, '"negative" must be a string'),
        ({"query": "q", "positive": "p", "negative": True}, "got a boolean (true)"),
        ({"query": "  ", "positive": "p"}, '"query" is empty or only whitespace'),
    ],
)
def test_bad_json_triplets(tmp_path: Path, row: dict[str, object], expected: str) -> None:
    path = _jsonl(tmp_path / "t.jsonl", {"query": "q0", "positive": "p0"}, row)
    assert expected in _error(load_triplets, path, 2)


def test_wikiqa_layout_expands_positives_and_cycles_negatives(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "w.jsonl",
        {"query": "a", "pos": ["a1", "a2", "a3"], "neg": ["x", "y"]},
        {"query": "b", "pos": ["b1"], "neg": []},
        {"query": "c", "pos": ["c1", "c2"]},
    )
    assert load_triplets(path).to_dict() == {
        "query": ["a", "a", "a", "b", "c", "c"],
        "positive": ["a1", "a2", "a3", "b1", "c1", "c2"],
        "negative": ["x", "y", "x", "", "", ""],
        "instruction": [""] * 6,
    }
    message = _error(lambda p: load_triplets(p, require_negative=True), path, 2)
    assert '"neg" is an empty list' in message


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"query": "q", "pos": []}, '"pos" is an empty list'),
        ({"query": "q", "pos": "p"}, '"pos" must be a list of strings, got a string'),
        ({"query": "q", "pos": ["p", 3]}, '"pos[1]" must be a string, got a number (3)'),
        ({"query": "q", "pos": ["p"], "neg": ["n", ""]}, '"neg[1]" is empty or only whitespace'),
        ({"query": "q", "pos": ["p"], "neg": {"n": 1}}, '"neg" must be a list of strings'),
        ({"query": "q", "neg": ["n"]}, 'missing column "pos" (the row has: query, neg)'),
    ],
)
def test_bad_wikiqa_rows(tmp_path: Path, row: dict[str, object], expected: str) -> None:
    path = _jsonl(tmp_path / "w.jsonl", {"query": "q0", "pos": ["p0"], "neg": ["n0"]}, row)
    assert expected in _error(load_triplets, path, 2)


def test_rows_may_carry_their_own_instruction(tmp_path: Path) -> None:
    task = "Given a claim, retrieve abstracts"
    plain = _jsonl(
        tmp_path / "t.jsonl",
        {"query": "q1", "positive": "p1", "instruction": task},
        {"query": "q2", "positive": "p2"},
        {"query": "q3", "positive": "p3", "instruction": None},
    )
    assert load_triplets(plain)["instruction"] == [task, "", ""]
    wikiqa = _jsonl(tmp_path / "w.jsonl", {"query": "a", "pos": ["a1", "a2"], "instruction": task})
    assert load_triplets(wikiqa)["instruction"] == [task, task]
    delimited = _write(tmp_path / "t.csv", f'query,positive,instruction\nq,p,"{task}"\nr,s,\n')
    assert load_triplets(delimited)["instruction"] == [task, ""]
    bad = _jsonl(tmp_path / "bad.jsonl", {"query": "q", "positive": "p", "instruction": 3})
    assert '"instruction" must be a string, got a number (3)' in _error(load_triplets, bad, 1)


def test_simcse_csv_with_and_without_hard_negatives(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.csv", 'sent0,sent1,hard_neg\n"a, b",c,d\ne,f,\n')
    assert load_triplets(path).to_dict() == {
        "query": ["a, b", "e"],
        "positive": ["c", "f"],
        "negative": ["d", ""],
        "instruction": ["", ""],
    }
    message = _error(lambda p: load_triplets(p, require_negative=True), path, 3)
    assert '"hard_neg" is empty or only whitespace' in message
    pairs = _write(tmp_path / "pairs.csv", "sent0,sent1\na,b\n")
    assert load_triplets(pairs)["negative"] == [""]
    message = _error(lambda p: load_triplets(p, require_negative=True), pairs, 1)
    assert 'the header has no "hard_neg" column and require_negative is set' in message


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t")])
def test_query_positive_negative_headers(tmp_path: Path, suffix: str, sep: str) -> None:
    rows = ["negative", "positive", "query"], ["n", "p", "q"]
    path = _write(tmp_path / f"t{suffix}", "".join(sep.join(row) + "\n" for row in rows))
    expected = {"query": ["q"], "positive": ["p"], "negative": ["n"], "instruction": [""]}
    assert load_triplets(path).to_dict() == expected
    bad = _write(tmp_path / f"bad{suffix}", f"query{sep}positive\nq{sep}p\n{sep}p2\n")
    assert '"query" is empty or only whitespace' in _error(load_triplets, bad, 3)


def test_a_csv_header_without_the_needed_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "question,answer\nq,a\n")
    message = _error(load_triplets, path, 1)
    assert "sent0,sent1[,hard_neg] or query,positive[,negative]" in message
    assert "(it has: question, answer)" in message


def test_empty_triplet_files(tmp_path: Path) -> None:
    assert "has no rows" in _error(load_triplets, _write(tmp_path / "e.jsonl", ""))
    assert "has no rows" in _error(load_triplets, _write(tmp_path / "e.csv", "sent0,sent1\n"))
    assert "no such file" in _error(load_triplets, tmp_path / "absent.jsonl")


def test_shared_snli_triplets() -> None:
    triplets = load_triplets(_shared("snli_devtest_triplets.csv"), require_negative=True)
    assert len(triplets) == 5_883
    assert triplets[0] == {
        "query": "Two women are embracing while holding to go packages.",
        "positive": "Two woman are holding packages.",
        "negative": "The men are fighting outside a deli.",
        "instruction": "",
    }


def test_shared_wikiqa_expands_to_one_row_per_answer() -> None:
    path = _shared("wikiqa_train.jsonl")
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(raw) == 873
    triplets = load_triplets(path)
    assert len(triplets) == 1_040 == sum(len(row["pos"]) for row in raw)
    assert len(set(triplets["query"])) == 873
    expected = [
        (row["query"], pos, row["neg"][i % len(row["neg"])] if row["neg"] else "")
        for row in raw
        for i, pos in enumerate(row["pos"])
    ]
    got = zip(triplets["query"], triplets["positive"], triplets["negative"], strict=True)
    assert list(got) == expected
    # Some questions have no same-page non-answer: require_negative names the first.
    first = next(n for n, row in enumerate(raw, start=1) if not row["neg"])
    message = _error(lambda p: load_triplets(p, require_negative=True), path, first)
    assert '"neg" is an empty list' in message


def test_shared_scifact_pairs_need_converting() -> None:
    message = _error(load_triplets, _shared("scifact_train_pairs.jsonl"), 1)
    assert 'missing column "positive"' in message
    assert "(the row has: query_id, query, doc_id, title, text)" in message


# ---- dev_split --------------------------------------------------------------------------------


def _triplets(queries: list[str]) -> datasets.Dataset:
    n = len(queries)
    return datasets.Dataset.from_dict(
        {"query": queries, "positive": [f"p{i}" for i in range(n)], "negative": [""] * n}
    )


def test_dev_split_keeps_each_query_on_one_side() -> None:
    queries = [f"q{i % 20}" for i in range(100)]  # 20 queries, 5 rows each
    train, dev = dev_split(_triplets(queries), 0.25, seed=1)
    assert not set(train["query"]) & set(dev["query"])
    assert len(set(dev["query"])) == 5
    assert len(dev) == 25
    assert sorted([*train["positive"], *dev["positive"]]) == sorted(f"p{i}" for i in range(100))
    # Rows keep their order on each side.
    assert train["positive"] == sorted(train["positive"], key=lambda p: int(p[1:]))


def test_dev_split_is_deterministic_for_a_seed() -> None:
    dataset = _triplets([f"q{i}" for i in range(50)])
    first, again = dev_split(dataset, 0.2, seed=7), dev_split(dataset, 0.2, seed=7)
    assert first[1]["query"] == again[1]["query"]
    assert first[0]["query"] == again[0]["query"]
    assert dev_split(dataset, 0.2, seed=8)[1]["query"] != first[1]["query"]


def test_dev_split_by_row_without_a_query_column() -> None:
    texts = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(10)]})
    train, dev = dev_split(texts, 0.3, seed=0)
    assert (len(train), len(dev)) == (7, 3)
    assert sorted([*train["text"], *dev["text"]]) == sorted(texts["text"])
    assert dev_split(texts, 0.3, seed=0)[1]["text"] == dev["text"]


def test_dev_split_takes_at_least_one_and_never_all() -> None:
    dataset = _triplets(["a", "b", "c"])
    assert [len(side) for side in dev_split(dataset, 0.01, seed=0)] == [2, 1]
    assert [len(side) for side in dev_split(dataset, 0.99, seed=0)] == [1, 2]


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True])
def test_dev_split_rejects_a_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        dev_split(_triplets(["a", "b"]), fraction, seed=0)


def test_dev_split_needs_two_queries() -> None:
    with pytest.raises(ValueError, match="at least 2 distinct queries, the dataset has 1"):
        dev_split(_triplets(["a", "a", "a"]), 0.5, seed=0)


def test_dev_split_of_shared_wikiqa_by_question() -> None:
    triplets = load_triplets(_shared("wikiqa_train.jsonl"))
    train, dev = dev_split(triplets, 0.1, seed=0)
    assert len(train) + len(dev) == 1_040
    assert not set(train["query"]) & set(dev["query"])
    assert len(set(dev["query"])) == round(0.1 * 873)


# ---- load_scored_pairs ------------------------------------------------------------------------


def test_scored_pairs_from_json_lines_and_delimited_files(tmp_path: Path) -> None:
    rows = [
        {"sentence1": "a cat", "sentence2": "a kitten", "score": 4.5},
        {"sentence1": "a dog", "sentence2": "a car", "score": 0},
    ]
    expected = {"sentence1": ["a cat", "a dog"], "sentence2": ["a kitten", "a car"],
                "score": [4.5, 0.0]}  # fmt: skip
    assert load_scored_pairs(_jsonl(tmp_path / "s.jsonl", *rows)).to_dict() == expected
    csv_text = 'score,sentence1,sentence2\n4.5,a cat,a kitten\n0,a dog,"a car"\n'
    assert load_scored_pairs(_write(tmp_path / "s.csv", csv_text)).to_dict() == expected
    tsv_text = "sentence1\tsentence2\tscore\na cat\ta kitten\t4.5\na dog\ta car\t0\n"
    assert load_scored_pairs(_write(tmp_path / "s.tsv", tsv_text)).to_dict() == expected


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"sentence1": "a", "sentence2": "b"}, 'missing column "score"'),
        ({"sentence1": "a", "score": 1}, 'missing column "sentence2"'),
        (
            {"sentence1": "a", "sentence2": "b", "score": "high"},
            "\"score\" must be a number, got 'high'",
        ),
        ({"sentence1": "a", "sentence2": "b", "score": True}, "got a boolean (true)"),
        ({"sentence1": "a", "sentence2": "b", "score": None}, "got null"),
        ({"sentence1": "a", "sentence2": "b", "score": "nan"}, '"score" must be finite'),
        ({"sentence1": " ", "sentence2": "b", "score": 1}, '"sentence1" is empty'),
    ],
)
def test_bad_scored_pairs_name_the_file_and_line(
    tmp_path: Path, row: dict[str, object], expected: str
) -> None:
    path = _jsonl(tmp_path / "s.jsonl", {"sentence1": "x", "sentence2": "y", "score": 2}, row)
    assert expected in _error(load_scored_pairs, path, 2)


def test_scored_pair_files_without_the_columns_rows_or_an_order(tmp_path: Path) -> None:
    header = _write(tmp_path / "h.csv", "query,positive\nq,p\n")
    assert "the header has no sentence1, sentence2, score" in _error(load_scored_pairs, header, 1)
    assert "has no rows" in _error(load_scored_pairs, _write(tmp_path / "e.jsonl", "\n"))
    same = _jsonl(tmp_path / "same.jsonl", *[{"sentence1": "a", "sentence2": "b", "score": 3}] * 2)
    assert "every pair has the same score" in _error(load_scored_pairs, same)
