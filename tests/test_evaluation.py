"""llmvec.evaluation: STS-B and BEIR readers, Spearman and nDCG/recall against plain references."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from llmvec import Encoder
from llmvec.cli import main
from llmvec.evaluation import (
    DataFormatError,
    evaluate_retrieval,
    evaluate_sts,
    load_beir,
    load_qrels,
    load_sts,
    retrieval_metrics,
    retrieve,
)
from llmvec.spec import EmbeddingSpec

# (score, sentence1, sentence2): graded from paraphrase to unrelated.
STS_ROWS = [
    (5.0, "A man is playing a guitar.", "A man is playing the guitar."),
    (4.2, "A woman is slicing an onion.", "A woman is cutting an onion."),
    (3.0, "A dog runs across the park.", "A dog is running on grass."),
    (1.4, "The stock market fell on Monday.", "Stocks rose sharply on Friday after the report."),
    (0.0, "A child is reading a book.", "The volcano erupted last night."),
    (0.2, "Two cats sleep on a sofa.", "The parliament passed a new tax law."),
]

DOCS = {
    "d1": ("Paris", "Paris is the capital and largest city of France."),
    "d2": ("Photosynthesis", "Plants convert sunlight, water and carbon dioxide into sugar."),
    "d3": ("", "The Great Barrier Reef is the world's largest coral reef system."),
    "d4": ("Guitar", "The guitar is a string instrument usually played with the fingers."),
}
QUERIES = {
    "q1": "What is the capital of France?",
    "q2": "How do plants make sugar from sunlight?",
    "q3": "Where is the largest coral reef?",
    "q9": "A query without judgements is ignored.",
}
QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 2, "d1": 0}}


def write_sts(path: Path) -> Path:
    lines = []
    for number, (score, first, second) in enumerate(STS_ROWS):
        fields = ["main-captions", "MSRvid", "2012test", f"{number:04d}", str(score), first, second]
        if number % 2:  # some rows carry extra columns (sources), as in the real release
            fields += ["Source: http://example.org/a", "Source: http://example.org/b"]
        lines.append("\t".join(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_beir(folder: Path, qrels: dict[str, dict[str, int]] = QRELS) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as handle:
        for doc_id, (title, text) in DOCS.items():
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    (folder / "queries.jsonl").write_text(
        "".join(
            json.dumps({"_id": q, "text": t, "metadata": {}}) + "\n" for q, t in QUERIES.items()
        )
    )
    rows = [f"{q}\t{d}\t{g}" for q, judged in qrels.items() for d, g in judged.items()]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows))
    return folder


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------- readers
def test_load_sts_uses_fields_0_to_6_and_ignores_extra_columns(tmp_path: Path) -> None:
    pairs = load_sts(write_sts(tmp_path / "sts.csv"))
    assert [(p.score, p.sentence1, p.sentence2) for p in pairs] == STS_ROWS


def test_load_sts_keeps_quotes_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "sts.csv"
    path.write_text('g\tf\t2016\t0001\t2.5\tHe said "hi there.\tShe said "hello"\n')
    (pair,) = load_sts(path)
    assert pair.sentence1 == 'He said "hi there.' and pair.sentence2 == 'She said "hello"'


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("g\tf\t2012\t0001\t3.0\tonly one sentence", "expected at least 7"),
        ("g\tf\t2012\t0001\thigh\ta\tb", "score) must be a number"),
        ("g\tf\t2012\t0001\t7.5\ta\tb", "outside [0, 5]"),
    ],
)
def test_load_sts_names_file_and_line_of_a_bad_row(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("g\tf\t2012\t0000\t1.0\ta\tb\n" + row + "\n")
    with pytest.raises(DataFormatError, match=r"bad.csv:2: ") as error:
        load_sts(path)
    assert message in str(error.value)


def test_load_sts_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        load_sts(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DataFormatError, match="no STS rows"):
        load_sts(tmp_path / "empty.csv")


def test_load_beir_joins_title_and_text_and_keeps_judged_queries(tmp_path: Path) -> None:
    data = load_beir(write_beir(tmp_path / "toy"))
    assert data.corpus["d1"] == "Paris Paris is the capital and largest city of France."
    assert data.corpus["d3"] == DOCS["d3"][1]  # empty title: text alone
    assert set(data.queries) == {"q1", "q2", "q3"}
    assert data.qrels == QRELS


def test_load_qrels_errors(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(DataFormatError, match="empty qrels"):
        load_qrels(path)
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DataFormatError, match=r"test.tsv:2: expected 3"):
        load_qrels(path)
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\tyes\n")
    with pytest.raises(DataFormatError, match=r"test.tsv:3: .*must be an integer, got 'yes'"):
        load_qrels(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.tsv"):
        load_qrels(tmp_path / "missing.tsv")


def test_load_beir_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        load_beir(tmp_path / "no-such-folder")
    folder = write_beir(tmp_path / "toy", {"q1": {"d1": 1}, "q404": {"d2": 1}})
    with pytest.raises(DataFormatError, match=r"queries.jsonl: 1 query id.*'q404'"):
        load_beir(folder)
    (folder / "queries.jsonl").write_text('{"_id": "q1"}\n')
    with pytest.raises(DataFormatError, match=r"queries.jsonl:1: missing key\(s\) \['text'\]"):
        load_beir(folder)
    (folder / "queries.jsonl").write_text("not json\n")
    with pytest.raises(DataFormatError, match=r"queries.jsonl:1: invalid JSON"):
        load_beir(folder)


# ---------------------------------------------------------------------------------- metrics
@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
def test_retrieve_through_faiss_index_matches_full_sort(precision: str) -> None:
    rng = np.random.default_rng(0)
    documents = unit(rng.normal(size=(60, 16)).astype(np.float32))
    queries = unit(rng.normal(size=(5, 16)).astype(np.float32))
    doc_ids = [f"d{i}" for i in range(60)]
    run = retrieve(
        documents,
        doc_ids,
        queries,
        ["a", "b", "c", "d", "e"],
        7,
        EmbeddingSpec("toy", dim=16),
        precision,
    )
    reference = queries @ documents.T
    for qid, row in zip("abcde", reference, strict=True):
        expected = [doc_ids[j] for j in np.argsort(-row)[:7]]
        ranked = sorted(run[qid], key=lambda d: -run[qid][d])
        if precision == "float32":
            assert ranked == expected
            np.testing.assert_allclose(
                [run[qid][d] for d in ranked], np.sort(row)[::-1][:7], atol=1e-5
            )
        else:  # compressed candidates, rescored with float16 copies: the top hits survive
            assert ranked[:3] == expected[:3]


def test_retrieval_metrics_on_a_toy_with_known_answer() -> None:
    qrels = {"a": {"x": 1}, "b": {"y": 1}, "c": {"z": 1, "w": 1}}
    run = {
        "a": {"x": 0.9, "y": 0.5},  # relevant at rank 1: nDCG 1
        "b": {"x": 0.9, "y": 0.5},  # relevant at rank 2: nDCG 1 / log2(3)
        # "c" retrieved nothing: nDCG 0, recall 0
    }
    metrics = retrieval_metrics(run, qrels, k=10)
    assert metrics["ndcg@10"] == pytest.approx(100 * (1 + 1 / math.log2(3) + 0) / 3)
    assert metrics["recall@10"] == pytest.approx(100 * (1 + 1 + 0) / 3)
    # Cut at 1: query b's relevant document falls out.
    assert retrieval_metrics(run, qrels, k=1)["ndcg@1"] == pytest.approx(100 / 3)


def reference_ndcg(ranked: list[list[str]], qrels: dict[str, dict[str, int]], k: int) -> float:
    """Plain nDCG@k (linear gain, log2 discount) over judged queries, as in trec_eval."""
    total = 0.0
    for qid, docs in zip(qrels, ranked, strict=True):
        gains = [qrels[qid].get(doc, 0) for doc in docs[:k]]
        dcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))
        ideal = sorted(qrels[qid].values(), reverse=True)[:k]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        total += dcg / idcg
    return 100 * total / len(qrels)


# ---------------------------------------------------------------------------------- real model
@pytest.mark.slow
def test_evaluate_sts_equals_scipy_on_direct_cosines(tmp_path: Path, minilm: Encoder) -> None:
    result = evaluate_sts(minilm, write_sts(tmp_path / "sts.csv"))
    first = minilm.encode([row[1] for row in STS_ROWS])
    second = minilm.encode([row[2] for row in STS_ROWS])
    cosines = np.sum(unit(first) * unit(second), axis=1)
    expected = 100 * spearmanr(cosines, [row[0] for row in STS_ROWS]).statistic
    assert result["spearman"] == pytest.approx(expected, abs=1e-6)
    assert result["pairs"] == len(STS_ROWS)
    assert result["spearman"] > 80  # graded pairs: a real model orders them


@pytest.mark.slow
@pytest.mark.parametrize(
    ("truncate_dim", "instruction"), [(None, None), (32, "Given a question, find the passage")]
)
def test_evaluate_retrieval_equals_plain_ndcg(
    tmp_path: Path, minilm: Encoder, truncate_dim: int | None, instruction: str | None
) -> None:
    folder = write_beir(tmp_path / "toy")
    result = evaluate_retrieval(
        minilm, folder, k=2, truncate_dim=truncate_dim, query_instruction=instruction
    )
    data = load_beir(folder)
    doc_ids = list(data.corpus)
    documents = minilm.encode([data.corpus[d] for d in doc_ids])[:, :truncate_dim]
    queries = minilm.encode_queries([data.queries[q] for q in QRELS], instruction=instruction)
    queries = queries[:, :truncate_dim]
    order = np.argsort(-(unit(queries) @ unit(documents).T), axis=1)
    ranked = [[doc_ids[j] for j in row] for row in order]
    assert result["ndcg@2"] == pytest.approx(reference_ndcg(ranked, QRELS, 2), abs=1e-6)
    assert result["queries"] == 3 and result["documents"] == 4
    assert result["spec"]["dim"] == (truncate_dim or minilm.dim)
    assert result["spec"]["query_instruction"] == instruction
    assert result["ndcg@2"] > 90  # each query paraphrases its document


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_evaluate_retrieval_compressed_index_matches_float_on_toy(
    tmp_path: Path, minilm: Encoder, precision: str
) -> None:
    # Four documents, k=2: the index fetches every document as a candidate (oversample 4) and
    # rescores with float vectors, so the ranking and the metrics equal float32's.
    folder = write_beir(tmp_path / "toy")
    exact = evaluate_retrieval(minilm, folder, k=2)
    compressed = evaluate_retrieval(minilm, folder, k=2, precision=precision)
    assert compressed["ndcg@2"] == pytest.approx(exact["ndcg@2"])
    assert compressed["spec"]["precision"] == precision


@pytest.mark.slow
def test_evaluate_retrieval_rejects_bad_options(tmp_path: Path, minilm: Encoder) -> None:
    folder = write_beir(tmp_path / "toy")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluate_retrieval(minilm, folder, k=0)
    with pytest.raises(ValueError, match="truncate_dim must be between 1 and 384"):
        evaluate_retrieval(minilm, folder, truncate_dim=1000)
    with pytest.raises(ValueError, match=r"unknown precision 'uint4'; allowed: \['float32'"):
        evaluate_retrieval(minilm, folder, precision="uint4")


# ---------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_eval_sts_prints_and_writes_the_library_result(
    tmp_path: Path, minilm: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_sts(tmp_path / "sts.csv")
    output = tmp_path / "sts.json"
    code = main(
        ["eval", "sts", "--data", str(path), "--model", "all-minilm-l6-v2", "--json", str(output)]
    )
    assert code == 0
    written = json.loads(output.read_text())
    expected = evaluate_sts(minilm, path)["spearman"]
    assert written["spearman"] == pytest.approx(expected, abs=1e-4)
    # What computed it is printed and kept: the recipe's precision is the vectors', not this.
    assert written["compute"] == {"backend": "transformers", "device": "cpu", "dtype": "float32"}
    printed = capsys.readouterr().out
    assert re.search(rf"^spearman +{expected:.2f}$", printed, re.MULTILINE)
    assert re.search(r"^compute +transformers, cpu, float32$", printed, re.MULTILINE)


@pytest.mark.slow
def test_cli_eval_retrieval_with_precision_and_matryoshka_dim(
    tmp_path: Path, minilm: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_beir(tmp_path / "toy")
    output = tmp_path / "retrieval.json"
    code = main(
        [
            "eval",
            "retrieval",
            "--data",
            str(folder),
            "--model",
            "all-minilm-l6-v2",
            "--precision",
            "binary",
            "--truncate-dim",
            "64",
            "-k",
            "2",
            "--json",
            str(output),
        ]
    )
    assert code == 0
    written = json.loads(output.read_text())
    assert written["spec"]["dim"] == 64 and written["spec"]["precision"] == "binary"
    expected = evaluate_retrieval(minilm, folder, k=2, truncate_dim=64)["ndcg@2"]
    assert written["ndcg@2"] == pytest.approx(expected, abs=1e-4)
    out = capsys.readouterr().out
    assert "3 queries, 4 documents" in out
    assert re.search(rf"^ndcg@2 +{expected:.2f}$", out, re.MULTILINE)


def test_cli_eval_reports_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "sts", "--data", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
