"""Training static models (llmvec.static.training) on a tiny extracted model: the contrastive
and the distillation loss go down, Matryoshka prefixes improve, the binary term's gradients
match a plain computation, the folded folder serves the module's vectors, bad options fail
before anything is written, and ``llmvec train static`` runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from training_rows import SCORED, TOPICS, write_jsonl

from llmvec import Encoder
from llmvec.backends.static_files import locate
from llmvec.compress import pack_bits
from llmvec.static import extract
from llmvec.static.embedder import SimilarityDistillationLoss, StaticEmbedder
from llmvec.static.training import TRAINING_FILE, prepare_static, train_static
from llmvec.static.training_config import StaticTrainingConfig
from llmvec.training.data import TrainingDataError
from llmvec.training.losses import ContrastiveLoss, CoSENTLoss

PAIRS = [
    {
        "query": f"what about {TOPICS[i % 8]} {i}?",
        "positive": f"a passage on {TOPICS[i % 8]} number {i}",
    }
    for i in range(32)
]
TEXTS = [f"a short sentence number {i} about {TOPICS[i % 8]} and more" for i in range(32)]
PROBES = ["cats sit on mats", "the river floods in spring", "Query about stars", "x"]


@pytest.fixture(scope="module")
def static_model(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-d static model with SIF token weights, extracted from the tiny Llama."""
    return extract(
        str(tiny_llama), tmp_path_factory.mktemp("static") / "model", 16, sif_coefficient=1e-3
    )


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", PAIRS)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "scored.jsonl", SCORED)


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def _config(model: Path, output: Path, /, **options: object) -> StaticTrainingConfig:
    defaults: dict[str, object] = {
        "batch_size": 8,
        "max_steps": 30,
        "learning_rate": 0.05,
        "show_progress": False,
    }
    return StaticTrainingConfig.from_dict(
        {"model": str(model), "output": str(output), **defaults, **options}
    )


def _contrastive(encoder: Encoder, dims: tuple[int, ...] = ()) -> tuple[float, float]:
    """The InfoNCE loss of the training pairs and the share of queries whose own positive
    scores best among the distinct positives."""
    queries = torch.from_numpy(encoder.encode([row["query"] for row in PAIRS], normalize=False))
    positives = torch.from_numpy(
        encoder.encode([row["positive"] for row in PAIRS], normalize=False)
    )
    loss = float(ContrastiveLoss(matryoshka_dims=dims)(queries, positives, None))
    documents = sorted({row["positive"] for row in PAIRS})
    scores = (
        F.normalize(queries, dim=-1)
        @ F.normalize(torch.from_numpy(encoder.encode(documents, normalize=False)), dim=-1).T
    )
    best = [documents[i] for i in scores.argmax(dim=-1).tolist()]
    accuracy = np.mean([b == row["positive"] for b, row in zip(best, PAIRS, strict=True)])
    return loss, float(accuracy)


def test_contrastive_training_lowers_the_loss_and_reports_the_dev_split(
    static_model: Path, pairs: Path, tmp_path: Path
) -> None:
    folder = train_static(
        _config(static_model, tmp_path / "out", data=str(pairs), dev_fraction=0.25)
    )
    before, _ = _contrastive(Encoder(str(static_model), backend="static"))
    after, _ = _contrastive(Encoder(str(folder), backend="static"))
    assert after < 0.5 * before
    record = json.loads((folder / TRAINING_FILE).read_text(encoding="utf-8"))
    assert record["steps"] == 30
    assert record["rows"] == {"pairs": 24, "dev": 8, "scored_pairs": 0, "texts": 0}
    assert record["dev_after"]["loss"] < record["dev_before"]["loss"]
    assert {"ndcg@10", "recall@10"} <= set(record["dev_after"])
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as handle:
        metadata = handle.metadata()
        assert set(handle.keys()) == {"embeddings"}  # the weights are folded in
    assert metadata["source_model"] == str(static_model)
    assert metadata["source_revision"] == locate(str(static_model)).revision
    assert json.loads(metadata["options"])["dev_fraction"] == 0.25
    assert json.loads(metadata["dev_after"]) == record["dev_after"]


def _cosent(encoder: Encoder) -> tuple[float, float]:
    """The CoSENT loss of the scored pairs and the Spearman correlation of their cosines with
    the gold scores."""
    from scipy.stats import spearmanr

    first = torch.from_numpy(encoder.encode([row["sentence1"] for row in SCORED]))
    second = torch.from_numpy(encoder.encode([row["sentence2"] for row in SCORED]))
    gold = torch.tensor([row["score"] for row in SCORED])
    cosines = F.cosine_similarity(first, second, dim=-1)
    return float(CoSENTLoss()(first, second, gold)), float(spearmanr(cosines, gold).statistic)


def test_cosent_training_orders_scored_pairs_by_their_gold_scores(
    static_model: Path, scored: Path, tmp_path: Path
) -> None:
    folder = train_static(
        _config(static_model, tmp_path / "out", scored_pairs=str(scored), matryoshka_dims=(8, 16))
    )
    loss_before, spearman_before = _cosent(Encoder(str(static_model), backend="static"))
    loss_after, spearman_after = _cosent(Encoder(str(folder), backend="static"))
    assert loss_after < 0.5 * loss_before
    assert spearman_after > max(0.9, spearman_before + 0.1)
    record = json.loads((folder / TRAINING_FILE).read_text(encoding="utf-8"))
    assert record["rows"] == {"pairs": 0, "dev": 0, "scored_pairs": 32, "texts": 0}


def test_scored_pairs_and_contrastive_pairs_share_a_batch(
    static_model: Path, pairs: Path, scored: Path, tmp_path: Path
) -> None:
    run = prepare_static(
        _config(static_model, tmp_path / "out", data=str(pairs), scored_pairs=str(scored))
    )
    batch = run.collator([{"row": row} for row in (0, 1, 2)])
    # 3 queries, 3 positives, then both sides of 3 scored pairs, in that order.
    assert batch["pairs"] == 3 and batch["negatives"] == 0 and len(batch["counts"]) == 12
    assert batch["scores"].tolist() == [row["score"] for row in SCORED[:3]]
    texts = [PAIRS[0]["query"], PAIRS[1]["query"], PAIRS[2]["query"]]
    texts += [PAIRS[0]["positive"], PAIRS[1]["positive"], PAIRS[2]["positive"]]
    texts += [row["sentence1"] for row in SCORED[:3]] + [row["sentence2"] for row in SCORED[:3]]
    ids, counts = run.collator.texts.batch(run.collator.texts.numbers(texts))
    assert torch.equal(batch["ids"], ids) and torch.equal(batch["counts"], counts)
    loss = run.objective(**batch)["loss"]
    vectors = run.embedder(batch["ids"], batch["counts"])
    expected = ContrastiveLoss()(vectors[:3], vectors[3:6], None) + CoSENTLoss()(
        vectors[6:9], vectors[9:12], batch["scores"]
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_distillation_lowers_the_similarity_loss(
    static_model: Path, texts: Path, tmp_path: Path, minilm: Encoder
) -> None:
    teacher = torch.from_numpy(minilm.encode(TEXTS))
    run = prepare_static(
        _config(static_model, tmp_path / "out", texts=str(texts), teacher="all-minilm-l6-v2")
    )
    assert run.collator.teacher is not None
    numbers = torch.from_numpy(run.collator.texts.numbers(TEXTS))
    np.testing.assert_allclose(run.collator.teacher[numbers], teacher, atol=1e-5)
    loss = SimilarityDistillationLoss()
    before = float(loss(torch.from_numpy(run.vectors(TEXTS)), teacher))
    folder = run.train()
    after = float(
        loss(torch.from_numpy(Encoder(str(folder), backend="static").encode(TEXTS)), teacher)
    )
    assert after < 0.5 * before
    assert json.loads((folder / TRAINING_FILE).read_text())["teacher"] == "all-minilm-l6-v2"


def test_vector_distillation_approaches_the_pca_of_the_teacher(
    static_model: Path, texts: Path, tmp_path: Path, minilm: Encoder
) -> None:
    """``distill_loss="vectors"``: each text's teacher vector on the teacher's first 16
    principal components (over the training texts) is the target, prefix by prefix."""
    run = prepare_static(
        _config(
            static_model,
            tmp_path / "out",
            texts=str(texts),
            teacher="all-minilm-l6-v2",
            distill_loss="vectors",
            matryoshka_dims=(4, 16),
        )
    )
    teacher = minilm.encode(list(run.collator.texts.index)).astype(np.float64)
    centered = teacher - teacher.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    expected = centered @ components[:16].T
    assert run.collator.teacher is not None
    targets = run.collator.teacher.numpy()
    np.testing.assert_allclose(np.abs(targets), np.abs(expected), atol=1e-4)

    def loss(vectors: np.ndarray) -> float:
        """The plain reference: 1 - cos at each prefix, averaged over the texts."""
        total = 0.0
        for dim in (4, 16):
            a, b = vectors[:, :dim], targets[:, :dim]
            cosines = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            total += float(np.mean(1 - cosines))
        return total

    numbers = run.collator.texts.numbers(list(run.collator.texts.index))
    student = run.vectors(list(run.collator.texts.index))
    objective = run.objective.distillation
    assert objective is not None
    reference = loss(student)
    module = float(objective(torch.from_numpy(student), run.collator.teacher[numbers]))
    assert module == pytest.approx(reference, abs=1e-5)
    folder = run.train()
    trained = Encoder(str(folder), backend="static", normalize=False)
    assert loss(trained.encode(list(run.collator.texts.index))) < 0.7 * reference


def test_vector_distillation_needs_a_teacher_as_wide_as_the_student(
    tiny_llama: Path, texts: Path, tmp_path: Path
) -> None:
    config = StaticTrainingConfig.from_dict(
        {
            "model": "wordllama",
            "output": str(tmp_path / "out"),
            "texts": str(texts),
            "teacher": str(tiny_llama),
            "distill_loss": "vectors",
            "show_progress": False,
        }
    )
    with pytest.raises(ValueError, match="gives 64 dimensions, the student 256"):
        prepare_static(config)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown distill_loss 'mse'"):
        _config(tiny_llama, tmp_path / "out", texts=str(texts), teacher="x", distill_loss="mse")


def test_matryoshka_prefixes_beat_the_untrained_prefixes(
    static_model: Path, pairs: Path, tmp_path: Path
) -> None:
    folder = train_static(
        _config(static_model, tmp_path / "out", data=str(pairs), matryoshka_dims=(4, 16))
    )
    untrained = Encoder(str(static_model), backend="static", truncate_dim=4)
    trained = Encoder(str(folder), backend="static", truncate_dim=4)
    (loss_before, accuracy_before), (loss_after, accuracy_after) = (
        _contrastive(untrained),
        _contrastive(trained),
    )
    assert trained.dim == 4
    assert loss_after < 0.5 * loss_before and accuracy_after > accuracy_before


def _batch() -> tuple[StaticEmbedder, torch.Tensor, torch.Tensor]:
    """A random 8-d table of 20 tokens projected to 6 dimensions, and 6 texts (3 pairs)."""
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(20, 8, generator=generator)
    weights = torch.rand(20, generator=generator) + 0.5
    embedder = StaticEmbedder(table, weights, dim=6)
    with torch.no_grad():
        embedder.projection.add_(0.1 * torch.randn(6, 8, generator=generator))
    counts = torch.tensor([3, 2, 4, 1, 2, 3])
    ids = torch.randint(0, 20, (int(counts.sum()),), generator=generator)
    return embedder, ids, counts


def _reference_vectors(
    embedder: StaticEmbedder,
    weights: torch.Tensor,
    projection: torch.Tensor,
    ids: torch.Tensor,
    counts: torch.Tensor,
) -> torch.Tensor:
    """The weighted mean of each text's rows, text by text, projected."""
    runs = torch.split(ids, counts.tolist())
    means = torch.stack([(embedder.table[run] * weights[run, None]).mean(0) for run in runs])
    return means @ projection.T


def _sign(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.where(x > 0, 1.0, -1.0) - x).detach()


def _reference_info_nce(vectors: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(_sign(vectors), dim=-1)
    scores = unit[:3] @ unit[3:].T / 0.05
    return F.cross_entropy(scores, torch.arange(3))


def _reference_distillation(vectors: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    unit, target = F.normalize(_sign(vectors), dim=-1), F.normalize(teacher, dim=-1)
    return ((unit @ unit.T - target @ target.T) ** 2).mean()


@pytest.mark.parametrize("loss", ["contrastive", "distillation"])
def test_the_binary_term_trains_weights_and_projection_through_the_sign(loss: str) -> None:
    embedder, ids, counts = _batch()
    teacher = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))

    def binary_term(vectors: torch.Tensor) -> torch.Tensor:
        if loss == "contrastive":
            queries, positives = vectors[:3], vectors[3:]
            binary = ContrastiveLoss(binary=True)(queries, positives, None)
            return binary - ContrastiveLoss()(queries, positives, None)
        with_binary, plain = SimilarityDistillationLoss(binary=True), SimilarityDistillationLoss()
        return with_binary(vectors, teacher) - plain(vectors, teacher)

    binary_term(embedder(ids, counts)).backward()
    weights = embedder.token_weights.detach().clone().requires_grad_(True)
    projection = embedder.projection.detach().clone().requires_grad_(True)
    vectors = _reference_vectors(embedder, weights, projection, ids, counts)
    reference = (
        _reference_info_nce(vectors)
        if loss == "contrastive"
        else _reference_distillation(vectors, teacher)
    )
    reference.backward()
    assert weights.grad is not None and projection.grad is not None
    assert embedder.token_weights.grad is not None and embedder.projection.grad is not None
    assert weights.grad.abs().sum() > 0 and projection.grad.abs().sum() > 0
    torch.testing.assert_close(embedder.token_weights.grad, weights.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(embedder.projection.grad, projection.grad, atol=1e-5, rtol=1e-4)
    assert embedder.table.grad is None  # a frozen buffer without train_table


def test_a_text_without_tokens_gets_a_zero_vector() -> None:
    embedder, _, _ = _batch()
    vectors = embedder(torch.tensor([1, 2]), torch.tensor([0, 2, 0]))
    assert vectors.shape == (3, 6) and not vectors[0].any() and not vectors[2].any()


def test_the_folded_folder_serves_the_modules_vectors(
    static_model: Path, pairs: Path, tmp_path: Path
) -> None:
    run = prepare_static(
        _config(static_model, tmp_path / "out", data=str(pairs), dim=8, train_table=True)
    )
    initial = Encoder(str(static_model), backend="static", normalize=False)
    probes = [*PROBES, *TEXTS[:4]]
    # Untrained, the module is the model's first 8 dimensions (its SIF weights included).
    np.testing.assert_allclose(run.vectors(probes), initial.encode(probes)[:, :8], atol=1e-6)
    folder = run.train()
    expected = run.vectors(probes)
    assert not np.allclose(expected, initial.encode(probes)[:, :8], atol=1e-3)  # it trained
    served = Encoder(str(folder), backend="static", normalize=False)
    assert served.dim == 8
    np.testing.assert_allclose(served.encode(probes), expected, atol=1e-5)
    truncated = Encoder(str(folder), backend="static", truncate_dim=4).encode(probes)
    prefix = expected[:, :4] / np.linalg.norm(expected[:, :4], axis=1, keepdims=True)
    np.testing.assert_allclose(truncated, prefix, atol=1e-5)
    packed = served.encode(probes, precision="ubinary")
    np.testing.assert_array_equal(packed, pack_bits(expected))


def test_common_components_are_removed_after_training_as_a_plain_svd_does(
    static_model: Path, pairs: Path, tmp_path: Path
) -> None:
    options = {"data": str(pairs), "dim": 8, "dev_fraction": 0.25}
    plain = prepare_static(_config(static_model, tmp_path / "plain", **options))
    plain.train()
    run = prepare_static(_config(static_model, tmp_path / "out", common_components=2, **options))
    folder = run.train()
    # The reference: the same seeded run without removal, then SIF's removal written out: the
    # top 2 right singular vectors of the uncentred vectors of every training text.
    texts = list(plain.collator.texts.index)
    _, _, right = np.linalg.svd(plain.vectors(texts).astype(np.float64), full_matrices=False)
    top = right[:2]
    probes = [*PROBES, *TEXTS[:4]]
    before = plain.vectors(probes).astype(np.float64)
    expected = before - (before @ top.T) @ top
    served = Encoder(str(folder), backend="static", normalize=False).encode(probes)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert np.abs(run.vectors(texts) @ top.T).max() < 1e-4
    record = json.loads((folder / TRAINING_FILE).read_text(encoding="utf-8"))
    assert record["common_components"] == {"count": 2, "texts": len(texts)}
    # The dev score after training is that of the model written, the removal included.
    assert record["dev_after"] == run.dev_score()


def test_common_components_must_fit_the_training_texts(static_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "two.jsonl", PAIRS[:2])
    output = tmp_path / "out"
    with pytest.raises(ValueError, match="common_components 5 exceeds the 4 distinct training"):
        train_static(_config(static_model, output, data=str(data), common_components=5))
    assert not output.exists()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, ValueError, "give data .* or a teacher"),
        (
            {"data": "PAIRS", "common_components": 16},
            ValueError,
            "common_components 16 must be less than the output dimension 16",
        ),
        (
            {"data": "PAIRS", "common_components": -1},
            ValueError,
            "common_components must be an integer >= 0",
        ),
        ({"scored_pairs": "missing.csv"}, FileNotFoundError, "scored_pairs file 'missing.csv'"),
        ({"scored_pairs": "PAIRS", "cosent_weight": 0}, ValueError, "nothing to train"),
        ({"texts": "TEXTS"}, ValueError, "texts are distillation data: give a teacher"),
        ({"teacher": "all-minilm-l6-v2"}, ValueError, "a teacher needs texts"),
        ({"data": "PAIRS", "dim": 32}, ValueError, "dim 32 exceeds the dimension 16"),
        (
            {"data": "PAIRS", "dim": 8, "matryoshka_dims": (4, 12)},
            ValueError,
            r"matryoshka_dims \[12\] exceed the output dimension 8",
        ),
        ({"data": "PAIRS", "contrastive_weight": 0}, ValueError, "nothing to train"),
        ({"data": "PAIRS", "batch_size": 0}, ValueError, "batch_size must be a positive"),
        ({"data": "missing.jsonl"}, FileNotFoundError, "data file 'missing.jsonl' does not exist"),
        ({"data": "PAIRS", "model": "no-such-model"}, FileNotFoundError, "no-such-model"),
        (
            {"data": "PAIRS", "learning_rate": 0.0},
            ValueError,
            "learning_rate must be a positive number",
        ),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(
    static_model: Path,
    pairs: Path,
    texts: Path,
    tmp_path: Path,
    options: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    files = {"PAIRS": str(pairs), "TEXTS": str(texts)}
    options = {
        key: files.get(value, value) if isinstance(value, str) else value
        for key, value in options.items()
    }
    output = tmp_path / "out"
    with pytest.raises(error, match=message):
        train_static(_config(static_model, output, **options))
    assert not output.exists()


def test_an_existing_folder_of_another_kind_is_not_overwritten(
    static_model: Path, pairs: Path, tmp_path: Path
) -> None:
    output = tmp_path / "notes"
    output.mkdir()
    (output / "a.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not a static model folder"):
        train_static(output=str(output), model=str(static_model), data=str(pairs))
    assert [p.name for p in output.iterdir()] == ["a.txt"]
    assert (output / "a.txt").read_text(encoding="utf-8") == "keep me"


def test_bad_data_is_named_before_anything_is_written(static_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"query": "q", "positive": "p"}\n{"query": "q2"}\n', encoding="utf-8")
    output = tmp_path / "out"
    with pytest.raises(TrainingDataError, match=r"bad.jsonl, line 2: missing column \"positive\""):
        train_static(_config(static_model, output, data=str(data)))
    assert not output.exists()


def test_an_earlier_static_model_is_replaced(
    static_model: Path, pairs: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    first = train_static(_config(static_model, output, data=str(pairs), max_steps=2, dim=8))
    second = train_static(_config(static_model, output, data=str(pairs), max_steps=2, dim=4))
    assert first == second and Encoder(str(output), backend="static").dim == 4


def test_llmvec_train_static_end_to_end(
    static_model: Path, pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmvec.cli import main

    output = tmp_path / "model"
    arguments = ["train", "static", str(pairs), "--model", str(static_model), "-o", str(output)]
    arguments += ["--max-steps", "4", "--batch-size", "8", "--dim", "8", "--matryoshka-dims", "4,8"]
    arguments += ["--binary", "--max-length", "16", "--eval-fraction", "0.25", "--no-progress"]
    arguments += ["--common-components", "1"]
    assert main(arguments) == 0
    assert f"trained static model in {output}" in capsys.readouterr().out
    assert Encoder(str(output), backend="static").dim == 8
    options = json.loads((output / TRAINING_FILE).read_text(encoding="utf-8"))["options"]
    assert options["matryoshka_dims"] == [4, 8] and options["binary"] is True
    assert options["max_tokens"] == 16 and options["dev_fraction"] == 0.25
    assert options["common_components"] == 1


def test_llmvec_train_static_on_scored_pairs_alone(
    static_model: Path, scored: Path, tmp_path: Path
) -> None:
    from llmvec.cli import main

    output = tmp_path / "model"
    arguments = ["train", "static", "--scored-pairs", str(scored), "--model", str(static_model)]
    arguments += ["-o", str(output), "--max-steps", "3", "--cosent-weight", "2", "--no-progress"]
    assert main(arguments) == 0
    options = json.loads((output / TRAINING_FILE).read_text(encoding="utf-8"))["options"]
    assert options["scored_pairs"] == str(scored) and options["cosent_weight"] == 2.0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["static", "PAIRS", "--lora-rank", "4", "--template", "ke"],
            "--lora-rank, --template do not apply to the static stage",
        ),
        (["static", "PAIRS", "PAIRS"], "the static stage takes one data file, got 2"),
        (
            ["contrastive", "PAIRS", "--teacher", "x", "--dim", "8"],
            "--teacher, --dim apply to the static stage only",
        ),
        (["static", "PAIRS", "--dim", "99"], "dim 99 exceeds"),
    ],
)
def test_llmvec_train_static_refuses_flags_that_do_not_apply(
    static_model: Path,
    pairs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    from llmvec.cli import main

    output = tmp_path / "model"
    arguments = [str(pairs) if a == "PAIRS" else a for a in arguments]
    assert main(["train", *arguments, "--model", str(static_model), "-o", str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()
