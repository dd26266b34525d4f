"""Hard-negative mining from an index: positives excluded, ranks and margin kept, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmvec import EmbeddingSpec, Encoder, FaissIndex
from llmvec.cli import main
from llmvec.training.data import load_triplets
from llmvec.training.mining import (
    MiningOptions,
    MiningReport,
    Pair,
    mine_hard_negatives,
    write_triplets,
)

CORPUS = [
    "Honeybees dance to tell the hive where flowers are.",
    "A queen bee can lay two thousand eggs a day.",
    "Bumblebees are larger and hairier than honeybees.",
    "Wild bees pollinate many crops on farms.",
    "Beekeepers smoke the hive to calm the bees.",
    "Volcanoes erupt when magma rises through the crust.",
    "Lava cools into basalt rock near the surface.",
    "Mount Etna is an active volcano in Sicily.",
    "Volcanic ash can ground aircraft for days.",
    "Geysers are heated by magma deep underground.",
    "Sourdough bread rises with wild yeast and bacteria.",
    "Knead the dough for ten minutes before proofing.",
    "A hot oven gives bread a crisp crust.",
    "Rye flour makes a dense and dark loaf.",
    "Let the baked bread cool before slicing it.",
    "Jupiter is the largest planet in the solar system.",
    "Saturn's rings are made of ice and rock.",
    "Mars has the tallest volcano among the planets.",
    "Venus is the hottest planet because of its thick air.",
    "Neptune has the strongest winds of any planet.",
    "Chess openings control the centre of the board.",
    "A knight moves in the shape of the letter L.",
    "Castling protects the king and frees a rook.",
    "Checkmate ends the game when the king cannot escape.",
    "A pawn that reaches the last rank is promoted.",
    "Python lists grow as items are appended.",
    "A dictionary maps keys to values by hashing.",
    "Recursion is a function calling itself.",
    "Unit tests check small pieces of code.",
    "Git records the history of a project's files.",
]
IDS = [f"d{i}" for i in range(len(CORPUS))]
PAIRS: list[Pair] = [
    ("How do bees communicate where food is?", CORPUS[0]),
    ("How do bees communicate where food is?", CORPUS[3]),  # a second positive, same query
    ("Why do volcanoes erupt?", CORPUS[5]),
    ("How is sourdough leavened?", f"  {CORPUS[10]}\n"),  # the stored text, other whitespace
    ("Which planet is the biggest?", "The biggest planet is Jupiter.", "d15"),  # by id only
    ("How does a knight move in chess?", CORPUS[21]),
    ("What does a hash map do?", "It stores values under keys."),  # not in the index
]


@pytest.fixture(scope="module")
def index(minilm: Encoder) -> FaissIndex:
    built = FaissIndex(minilm)
    built.add(CORPUS, ids=IDS)
    return built


def _reference(encoder: Encoder, query: str, positive: str) -> tuple[list[int], np.ndarray, float]:
    """Plain numpy: the corpus ranked for ``query`` (best first), every document's cosine, and
    the positive's cosine."""

    def unit(vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float64)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    q = unit(encoder.encode_queries([query]))[0]
    scores = unit(encoder.encode_documents(CORPUS)) @ q
    positive_score = float(unit(encoder.encode_documents([positive]))[0] @ q)
    return list(np.argsort(-scores, kind="stable")), scores, positive_score


def _positives(query: str, by_id: bool = True) -> set[str]:
    """Texts of every document that some pair of ``query`` names (by text, or by id)."""
    found = set()
    for pair in PAIRS:
        if pair[0] == query:
            found.add(" ".join(pair[1].split()))
            if by_id and len(pair) == 3:
                found.add(CORPUS[IDS.index(str(pair[2]))])
    return found


def test_positives_are_never_negatives(index: FaissIndex) -> None:
    options = MiningOptions(top_k=len(CORPUS), negatives=len(CORPUS))
    rows, report = mine_hard_negatives(index, PAIRS, options, batch_size=2)
    assert rows and all(set(row) == {"query", "positive", "negative"} for row in rows)
    for row in rows:
        assert row["negative"] not in _positives(row["query"])
        assert row["negative"] in CORPUS
    by_pair: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        by_pair.setdefault((row["query"], row["positive"]), []).append(row["negative"])
    for negatives in by_pair.values():
        assert len(negatives) == len(set(negatives))
    assert report == MiningReport(len(rows), queries=6, queries_without_negative=0)


@pytest.mark.parametrize(
    "options",
    [
        MiningOptions(top_k=20, min_rank=3, max_rank=12, margin=0.05, negatives=3),
        MiningOptions(top_k=30, min_rank=1, margin=0.0, negatives=2),
        MiningOptions(top_k=10, min_rank=5, negatives=1),
    ],
)
def test_negatives_keep_rank_range_and_margin(
    index: FaissIndex, minilm: Encoder, options: MiningOptions
) -> None:
    rows, report = mine_hard_negatives(index, PAIRS, options)
    assert report.rows_written == len(rows) > 0
    got: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        got.setdefault((row["query"], row["positive"]), []).append(row["negative"])
    for pair in PAIRS:
        query, positive = pair[0], pair[1]
        ranking, scores, positive_score = _reference(minilm, query, positive)
        negatives = got.get((query, positive), [])
        assert len(negatives) <= options.negatives
        rank_of = {CORPUS[doc]: rank for rank, doc in enumerate(ranking, start=1)}
        for negative in negatives:
            assert options.min_rank <= rank_of[negative] <= options.last_rank
            score = scores[CORPUS.index(negative)]
            assert score <= positive_score - options.margin + 1e-5
        # They are the best-ranked documents that qualify, in rank order.
        expected = [
            CORPUS[doc]
            for doc in ranking[options.min_rank - 1 : options.last_rank]
            if CORPUS[doc] not in _positives(query)
            and scores[doc] <= positive_score - options.margin
        ][: options.negatives]
        assert negatives == expected


def test_negatives_two_gives_up_to_two_rows_per_pair(index: FaissIndex) -> None:
    one, _ = mine_hard_negatives(index, PAIRS, MiningOptions(min_rank=2, negatives=1))
    two, report = mine_hard_negatives(index, PAIRS, MiningOptions(min_rank=2, negatives=2))
    counts: dict[tuple[str, str], int] = {}
    for row in two:
        key = (row["query"], row["positive"])
        counts[key] = counts.get(key, 0) + 1
    assert max(counts.values()) == 2 and all(1 <= c <= 2 for c in counts.values())
    assert report.rows_written == len(two) == sum(counts.values())
    # The single negative is the first of the two, and rows keep the pairs' order.
    firsts = [
        row for i, row in enumerate(two) if i == 0 or two[i - 1]["positive"] != row["positive"]
    ]
    assert firsts == one


def test_a_querys_instruction_travels_with_its_rows_but_not_into_the_search(
    index: FaissIndex,
) -> None:
    options = MiningOptions(min_rank=2)
    plain, _ = mine_hard_negatives(index, PAIRS, options)
    instruction = "Given a question, retrieve the passage that answers it"
    instructed, _ = mine_hard_negatives(
        index, PAIRS, options, instructions={PAIRS[2][0]: instruction, "absent query": "x"}
    )
    # The same negatives (the index's encoder searched as it would without instructions) ...
    assert [{k: v for k, v in row.items() if k != "instruction"} for row in instructed] == plain
    # ... and each row of the instructed query carries its instruction; the others none.
    for row in instructed:
        assert row.get("instruction") == (instruction if row["query"] == PAIRS[2][0] else None)
    assert any("instruction" in row for row in instructed)


def test_a_query_without_candidates_is_counted_and_skipped(index: FaissIndex) -> None:
    rows, report = mine_hard_negatives(index, PAIRS, MiningOptions(margin=2.0))
    assert rows == [] and report == MiningReport(0, queries=6, queries_without_negative=6)
    # Only rank 1 in range: the positive itself, or a document scored above it.
    rows, report = mine_hard_negatives(
        index, [PAIRS[2]], MiningOptions(top_k=1, min_rank=1, max_rank=1)
    )
    assert rows == [] and report == MiningReport(0, queries=1, queries_without_negative=1)
    assert mine_hard_negatives(index, [], MiningOptions()) == ([], MiningReport(0, 0, 0))


def test_options_are_checked_by_name() -> None:
    cases = [
        ({"top_k": 0}, "top_k must be a positive integer, got 0"),
        ({"min_rank": 0}, "min_rank must be a positive integer"),
        ({"max_rank": 31}, r"max_rank \(31\) must be at most top_k \(30\)"),
        ({"min_rank": 5, "max_rank": 4}, r"min_rank \(5\) must be at most max_rank \(4\)"),
        ({"top_k": 3, "min_rank": 4}, r"min_rank \(4\) must be at most top_k \(3\)"),
        ({"margin": -0.1}, "margin must be a finite number >= 0"),
        ({"margin": float("nan")}, "margin must be a finite number >= 0"),
        ({"negatives": 0}, "negatives must be a positive integer"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            MiningOptions(**kwargs)  # type: ignore[arg-type]
    assert MiningOptions().last_rank == 30 and MiningOptions(max_rank=12).last_rank == 12


def test_bad_pairs_and_unnormalized_stores_are_refused(index: FaissIndex) -> None:
    with pytest.raises(TypeError, match=r"pairs\[1\] must be \(query, positive\)"):
        bad: list[Pair] = [("q", "p"), ("only one",)]  # type: ignore[list-item]
        mine_hard_negatives(index, bad, MiningOptions())
    with pytest.raises(TypeError, match=r"pairs\[0\] positive must be a str"):
        mine_hard_negatives(index, [("q", 3)], MiningOptions())  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        mine_hard_negatives(index, PAIRS, MiningOptions(), batch_size=0)
    spec = EmbeddingSpec(model="none", normalize=False, dim=4)
    raw = FaissIndex(spec=spec)
    with pytest.raises(ValueError, match="normalized vectors"):
        mine_hard_negatives(raw, PAIRS, MiningOptions())


def test_write_triplets_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    rows = [{"query": "q", "positive": "p", "negative": "n é"}]
    write_triplets(rows, target)
    assert [json.loads(line) for line in target.read_text("utf-8").splitlines()] == rows
    before = target.read_bytes()
    with pytest.raises(TypeError):
        write_triplets([*rows, {"query": object()}], target)  # type: ignore[dict-item]
    assert target.read_bytes() == before  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary left
    write_triplets([], target)
    assert target.read_bytes() == b""


def test_mine_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for doc_id, text in zip(IDS, CORPUS, strict=True):
        (folder / f"{doc_id}.txt").write_text(text + "\n", encoding="utf-8")
    store = f"faiss:{tmp_path / 'store'}"
    model = ["--model", "all-minilm-l6-v2", "--pooling", "mean"]
    assert main(["index", str(folder), "--store", store, *model]) == 0
    pairs = tmp_path / "pairs.jsonl"
    lines = [{"query": p[0], "positive": p[1]} for p in PAIRS]
    lines[1]["instruction"] = "Given a question, retrieve the passage"
    lines.append({"query": PAIRS[0][0], "positive": PAIRS[0][1], "negative": "a repeated pair"})
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    capsys.readouterr()
    output = tmp_path / "triplets.jsonl"
    argv = ["mine", str(pairs), "--store", store, "--output", str(output)]
    assert main([*argv, "--negatives", "2", "--min-rank", "2", "--max-rank", "10"]) == 0
    out, err = capsys.readouterr()
    triplets = load_triplets(output, require_negative=True)
    assert out.strip() == f"wrote {len(triplets)} triplets for 6 queries to {output}"
    assert err == ""
    assert len(triplets) <= 2 * len(PAIRS) and len(triplets) > len(PAIRS)
    for row in triplets:
        # The file carries no ids: the positives are excluded by text.
        negative = row["negative"]
        assert negative in CORPUS and negative not in _positives(row["query"], by_id=False)
        # A row's own instruction travels with its query.
        assert row["instruction"] == (
            lines[1]["instruction"] if row["query"] == PAIRS[1][0] else ""
        )
    # A margin no document meets: nothing written, every query reported.
    assert main([*argv, "--margin", "2"]) == 0
    out, err = capsys.readouterr()
    assert "wrote 0 triplets for 6 queries" in out
    assert "skipped 6 queries without a negative in ranks 1..30 at margin 2.0" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--top-k", "0"], "top_k must be a positive integer, got 0"),
        (["--max-rank", "40"], "max_rank (40) must be at most top_k (30)"),
        (["--min-rank", "5", "--max-rank", "3"], "min_rank (5) must be at most max_rank (3)"),
        (["--margin", "-0.5"], "margin must be a finite number >= 0, got -0.5"),
        (["--negatives", "0"], "negatives must be a positive integer, got 0"),
    ],
)
def test_mine_command_checks_options_before_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    # Neither the pairs file nor the store exists: the option is what the error names.
    missing = f"faiss:{tmp_path / 'none'}"
    argv = ["mine", str(tmp_path / "none.jsonl"), "--store", missing, "-o", str(tmp_path / "o")]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"llmvec: error: {message}"
    assert not (tmp_path / "o").exists()
