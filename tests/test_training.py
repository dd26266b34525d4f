"""Training stages end to end on tiny random models: what the trainer trains is what the folder
serves, instructions stay out of pooling, MNTP, the latent head, phases, and bad configuration
refused before the first step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from training_rows import SCORED, TOPICS, write_jsonl

from llmvec import Encoder
from llmvec.testing import row_cosines
from llmvec.trained_folder import MANIFEST
from llmvec.training.config import Phase, TrainingConfig
from llmvec.training.data import TrainingDataError
from llmvec.training.losses import CoSENTLoss
from llmvec.training.model import group_by_shared_head
from llmvec.training.stages import CHECKPOINTS, prepare, train

TEXTS = [f"a short sentence number {i} about {TOPICS[i % 8]} and more" for i in range(48)]
PROBES = ["cats sit on mats", "the river floods in spring", "Query about stars"]


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sentences.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def triplets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [
        {
            "query": f"what about {TOPICS[i % 8]} {i}?",
            "positive": f"a passage on {TOPICS[i % 8]} number {i}",
            "negative": f"a passage on {TOPICS[(i + 3) % 8]} number {i}",
        }
        for i in range(40)
    ]
    return write_jsonl(tmp_path_factory.mktemp("data") / "triplets.jsonl", rows)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "scored.jsonl", SCORED)


def _config(model: Path, data: Path, output: Path, **options: object) -> TrainingConfig:
    defaults: dict[str, object] = {
        "batch_size": 8,
        "max_steps": 4,
        "save_steps": 2,
        "learning_rate": 5e-3,
        "show_progress": False,
        "bf16": False,
    }
    stage = "simcse" if data.suffix == ".txt" else "contrastive"
    if data.name.startswith("scored"):
        stage = "cosent"
    return TrainingConfig(
        stage=str(options.pop("stage", stage)),
        model=str(model),
        data=(str(data),),
        output=str(output),
        **{**defaults, **options},  # type: ignore[arg-type]
    )


def _trained_vectors(run_model: torch.nn.Module, encoder: Encoder, texts: list[str]) -> np.ndarray:
    run_model.eval()
    with torch.no_grad():
        pooled = encoder.pool(encoder.tokenize(texts))
    return torch.nn.functional.normalize(pooled.float(), dim=-1).numpy()


@pytest.mark.parametrize(
    "recipe",
    [
        {"pooling": "mean"},
        {"template": "ke"},  # last token of a template, as in PromptEOL+CSE
        {"pooling": "mean", "layer": 2},  # a layer before the last: the later block never runs
    ],
    ids=["mean", "ke-last-token", "layer-2"],
)
def test_trained_folder_gives_the_trainers_own_vectors(
    tiny_llama: Path, sentences: Path, tmp_path: Path, recipe: dict[str, object]
) -> None:
    run = prepare(_config(tiny_llama, sentences, tmp_path / "out", **recipe))
    before = Encoder(str(tiny_llama), **recipe).encode(PROBES)  # type: ignore[arg-type]
    folder = run.train()
    expected = _trained_vectors(run.model, run.encoder, PROBES)
    loaded = Encoder(str(folder))
    got = loaded.encode(PROBES)
    assert row_cosines(got, expected).min() > 0.9999
    assert row_cosines(got, before).min() < 0.9999  # training moved the vectors
    assert loaded.recipe == run.encoder.recipe
    assert loaded.spec.model == str(folder.resolve())
    assert Encoder.from_spec(loaded.spec).encode(PROBES) == pytest.approx(got, abs=1e-6)
    for name in ("README.md", "training_config.json", "training_log.json", MANIFEST):
        assert (folder / name).is_file()
    card = (folder / "README.md").read_text()
    assert "simcse" in card and "48 rows" in card and str(tiny_llama) in card


def test_query_instruction_is_kept_out_of_pooling_in_training(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    instruction = "Given a question, retrieve passages that answer it"
    run = prepare(_config(tiny_llama, triplets, tmp_path / "out", query_instruction=instruction))
    collator = run.trainer.data_collator
    batch = collator([{"query": "what about cats?", "positive": "cats", "negative": "dogs"}])
    query = batch["queries"][0]
    # The pooled span starts after the instruction: exactly the tokens of the query itself.
    tokenizer = run.encoder.backend.tokenizer
    assert query.pool_start > 0
    assert tokenizer.decode(query.ids[query.pool_start :]).strip() == "what about cats?"
    assert instruction in tokenizer.decode(query.ids[: query.pool_start])
    assert batch["positives"][0].pool_start == run.encoder.tokenize(["cats"])[0].pool_start
    # And the training forward pools as inference does for queries.
    run.model.eval()
    with torch.no_grad():
        trained = run.model.embed(batch["queries"])
    inference = run.encoder.encode_queries(["what about cats?"], instruction=instruction)
    assert row_cosines(trained.numpy(), inference).min() > 0.9999


def test_a_row_instruction_replaces_the_runs_for_its_query(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    default, own = "Retrieve passages about the topic", "Given a question, retrieve answers"
    run = prepare(_config(tiny_llama, triplets, tmp_path / "out", query_instruction=default))
    rows = [
        {"query": "what about cats?", "positive": "cats", "negative": "", "instruction": own},
        {"query": "what about dogs?", "positive": "dogs", "negative": "", "instruction": ""},
        {"query": "what about rain?", "positive": "rain", "negative": "", "instruction": own},
    ]
    queries = run.trainer.data_collator(rows)["queries"]
    for row, query in zip(rows, queries, strict=True):
        instruction = row["instruction"] or default
        assert query == run.encoder.tokenize([row["query"]], instruction=instruction)[0]


def test_rows_are_grouped_by_their_head_and_pool_as_alone(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    run = prepare(_config(tiny_llama, triplets, tmp_path / "out", template="ke"))
    encoder = run.encoder
    asked = encoder.tokenize(["what about cats?", "and dogs?"], instruction="Find passages")
    other = encoder.tokenize(["rivers?"], instruction="Answer the question")
    documents = encoder.tokenize(["a passage on cats", "a passage on dogs", "rain falls"])
    rows = [asked[0], documents[0], other[0], documents[1], asked[1], documents[2]]
    # Each head's rows share their instruction and the template's preamble...
    assert sorted(map(sorted, group_by_shared_head(rows, overhead=0.0))) == [[0, 4], [1, 3, 5], [2]]
    # ...unless a pass costs more than the sharing saves.
    assert group_by_shared_head(rows, overhead=1e9) == [[0, 1, 2, 3, 4, 5]]
    run.model.eval()
    with torch.no_grad():
        together = run.model.embed(rows)
        alone = torch.cat([encoder.pool([row]) for row in rows])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_a_retrieval_dev_split_needs_one_instruction(tiny_llama: Path, tmp_path: Path) -> None:
    rows = [
        {"query": f"q{i}", "positive": f"p{i}", "instruction": f"task {i % 2}"} for i in range(20)
    ]
    data = write_jsonl(tmp_path / "tasks.jsonl", rows)
    with pytest.raises(ValueError, match="carry 2 query instructions; score with eval_sts"):
        prepare(_config(tiny_llama, data, tmp_path / "out", eval_fraction=0.5))
    # Scored on an STS file instead, the split is fine.
    sts = tmp_path / "sts.csv"
    sts.write_text("".join(f"g\tf\t2012\t{i}\t{i}.0\tcats {i}\tdogs {i}\n" for i in range(5)))
    config = _config(tiny_llama, data, tmp_path / "sts-out", eval_fraction=0.5, eval_sts=str(sts))
    assert prepare(config).dev_score is not None


def test_grad_cached_run_equals_the_plain_run(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    plain = train(_config(tiny_llama, triplets, tmp_path / "plain", lora_dropout=0.0))
    cached = train(
        _config(tiny_llama, triplets, tmp_path / "cached", lora_dropout=0.0, cache_chunk_size=5)
    )
    for a, b in zip(_adapter(plain), _adapter(cached), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # Adam, float32 sums


def _adapter(folder: Path) -> list[torch.Tensor]:
    adapters = sorted((folder / "adapters").iterdir())
    with safe_open(str(adapters[-1] / "adapter_model.safetensors"), "pt") as handle:
        return [handle.get_tensor(key) for key in sorted(handle.keys())]


def test_mntp_then_simcse_stacks_adapters(
    tiny_llama: Path, sentences: Path, tmp_path: Path
) -> None:
    mntp = train(_config(tiny_llama, sentences, tmp_path / "mntp", stage="mntp"))
    manifest = json.loads((mntp / MANIFEST).read_text())
    assert manifest["recipe"]["bidirectional"] is True
    assert manifest["recipe"]["pooling"] == "mean"
    with safe_open(str(mntp / manifest["adapters"][0] / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in key for key in keys)  # the LM head is never saved
    simcse = train(_config(mntp, sentences, tmp_path / "simcse", stage="simcse"))
    stacked = json.loads((simcse / MANIFEST).read_text())
    assert stacked["base_model"] == str(tiny_llama)
    assert [Path(a).name for a in stacked["adapters"]] == ["01-mntp", "02-simcse"]
    assert stacked["recipe"]["bidirectional"] is True
    encoder = Encoder(str(simcse))
    assert encoder.bidirectional and encoder.encode(PROBES).shape == (3, 64)
    card = (simcse / "README.md").read_text()
    assert "stage 1: `mntp`" in card and "stage 2: `simcse`" in card


def test_latent_attention_head_trains_in_two_phases(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    config = _config(
        tiny_llama,
        triplets,
        tmp_path / "nv",
        pooling="latent_attention",
        phases=(
            Phase(data=(str(triplets),), in_batch_negatives=True, max_steps=2),
            Phase(data=(str(triplets),), in_batch_negatives=False, max_steps=2),
        ),
    )
    folder = train(config)
    head = folder / "latent_attention.safetensors"
    assert head.is_file() and (folder / "phase-1" / MANIFEST).is_file()
    untrained = Encoder(str(tiny_llama), pooling="latent_attention")
    loaded = Encoder(str(folder))
    assert loaded.latent_head is not None
    assert loaded.latent_head.identity != untrained.latent_head.identity  # type: ignore[union-attr]
    with safe_open(str(head), "pt") as trained_head:
        latents = trained_head.get_tensor("latents")
    assert not torch.equal(latents, untrained.latent_head.latents.detach())  # type: ignore[union-attr]
    assert json.loads((folder / "training_config.json").read_text())["in_batch_negatives"] is False


def test_dev_evaluation_keeps_the_best_checkpoint(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    config = _config(tiny_llama, triplets, tmp_path / "out", eval_fraction=0.2, max_steps=4)
    folder = train(config)
    log = json.loads((folder / "training_log.json").read_text())["log_history"]
    scores = [entry["eval_score"] for entry in log if "eval_score" in entry]
    assert len(scores) == 2 and all(0.0 <= s <= 100.0 for s in scores)
    card = (folder / "README.md").read_text()
    assert "| ndcg@10 |" in card


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stage": "distill"}, "unknown training stage 'distill'"),
        ({"instruction_format": "{task} without text"}, "text"),
        ({"pooling": "median"}, "unknown pooling 'median'"),
        ({"lora_targets": ("q_proj", "wq")}, r"LoRA targets \['wq'\] are not linear layers"),
        ({"matryoshka_dims": (32, 65)}, r"Matryoshka dimensions \[65\] exceed"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"resume": True}, "holds no checkpoint to resume from"),
    ],
)
def test_bad_configuration_fails_before_the_first_step(
    tiny_llama: Path, triplets: Path, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        prepare(_config(tiny_llama, triplets, tmp_path / "out", **options))
    assert not (tmp_path / "out" / CHECKPOINTS).exists()


def test_grad_cache_under_several_processes_is_refused(
    tiny_llama: Path, triplets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What torchrun sets; the check runs before any process group would be set up.
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="GradCache"):
        prepare(_config(tiny_llama, triplets, tmp_path / "out", cache_chunk_size=4))


def _cosent_loss(encoder: Encoder, rows: list[dict[str, object]]) -> torch.Tensor:
    """CoSENT of ``rows`` on the encoder's pooled vectors, both sentences as documents."""
    first = encoder.pool(encoder.tokenize([str(row["sentence1"]) for row in rows]))
    second = encoder.pool(encoder.tokenize([str(row["sentence2"]) for row in rows]))
    gold = torch.tensor([float(row["score"]) for row in rows])  # type: ignore[arg-type]
    return CoSENTLoss()(first, second, gold)


def test_a_cosent_step_is_the_plain_loss_of_its_pairs(
    tiny_llama: Path, scored: Path, tmp_path: Path
) -> None:
    run = prepare(_config(tiny_llama, scored, tmp_path / "out", pooling="mean"))
    rows = [{**row, "row": number, "length": 0} for number, row in enumerate(SCORED[:8])]
    batch = run.trainer.data_collator(rows)
    run.model.eval()
    with torch.no_grad():
        got = run.model(**batch)["loss"]
        expected = _cosent_loss(run.encoder, SCORED[:8])
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cosent_training_orders_the_pairs_and_serves_the_trainers_vectors(
    tiny_llama: Path, scored: Path, tmp_path: Path
) -> None:
    run = prepare(
        _config(tiny_llama, scored, tmp_path / "out", pooling="mean", max_steps=12,
                learning_rate=2e-2, matryoshka_dims=(16, 64))
    )  # fmt: skip
    run.model.eval()
    with torch.no_grad():
        before = _cosent_loss(run.encoder, SCORED).item()
    folder = run.train()
    with torch.no_grad():
        after = _cosent_loss(run.encoder, SCORED).item()
    assert after < 0.7 * before
    expected = _trained_vectors(run.model, run.encoder, PROBES)
    assert row_cosines(Encoder(str(folder)).encode(PROBES), expected).min() > 0.9999
    card = (folder / "README.md").read_text()
    assert "`cosent`" in card and "32 rows" in card


def test_cosent_on_a_trained_folder_keeps_its_recipe_and_stacks_an_adapter(
    tiny_llama: Path, triplets: Path, scored: Path, tmp_path: Path
) -> None:
    first = train(_config(tiny_llama, triplets, tmp_path / "sup", template="ke", max_steps=2))
    second = train(_config(first, scored, tmp_path / "sts", max_steps=2))
    assert Encoder(str(second)).recipe == Encoder(str(first)).recipe
    assert Encoder(str(second)).recipe.template is not None
    assert [p.name for p in sorted((second / "adapters").iterdir())] == [
        "01-contrastive",
        "02-cosent",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"query_instruction": "Find"}, "encodes both sentences of a pair as documents"),
        ({"eval_fraction": 0.2}, "score it with eval_sts"),
        ({"matryoshka_dims": (128,)}, r"Matryoshka dimensions \[128\] exceed"),
    ],
)
def test_bad_cosent_configuration_fails_before_the_first_step(
    tiny_llama: Path, scored: Path, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        prepare(_config(tiny_llama, scored, tmp_path / "out", **options))


def test_triplets_given_to_the_cosent_stage_are_named(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        TrainingDataError, match=r'triplets.jsonl, line 1: missing column "sentence1"'
    ):
        prepare(_config(tiny_llama, triplets, tmp_path / "out", stage="cosent"))


def test_bad_data_is_named_with_its_file_and_line(tiny_llama: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\n{"query": "q2"}\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"bad.jsonl, line 2: .*positive"):
        prepare(_config(tiny_llama, bad, tmp_path / "out"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"empty\.txt"):
        prepare(_config(tiny_llama, empty, tmp_path / "out"))


def test_unknown_option_in_a_configuration_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"stage": "simcse", "loss": "triplet"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown training options \['loss'\]"):
        TrainingConfig.from_file(path)


def test_a_two_phase_configuration_file_round_trips(triplets: Path, tmp_path: Path) -> None:
    phases = [
        {"data": [str(triplets)], "in_batch_negatives": True, "max_steps": 2},
        {"data": [str(triplets)], "in_batch_negatives": False},
    ]
    path = tmp_path / "nv-embed.json"
    options = {"stage": "contrastive", "model": "m", "data": [], "output": "o", "phases": phases}
    path.write_text(json.dumps(options), encoding="utf-8")
    config = TrainingConfig.from_file(path, pooling="latent_attention")
    assert config.phases[1] == Phase(data=(str(triplets),), in_batch_negatives=False)
    assert TrainingConfig.from_dict(json.loads(config.to_json())) == config
    bad = {**options, "phases": [{"data": [str(triplets)], "max_steps": 0}]}
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        TrainingConfig.from_dict(bad)


def test_a_trained_folder_is_not_overwritten(
    tiny_llama: Path, sentences: Path, tmp_path: Path
) -> None:
    folder = train(_config(tiny_llama, sentences, tmp_path / "out", max_steps=2))
    manifest = (folder / MANIFEST).read_bytes()
    with pytest.raises(FileExistsError, match="already holds a trained model"):
        prepare(_config(tiny_llama, sentences, folder, max_steps=2))
    assert (folder / MANIFEST).read_bytes() == manifest


def test_llmvec_train_then_index_and_search_with_the_trained_folder(
    tiny_llama: Path, sentences: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmvec.cli import main

    output = tmp_path / "model"
    arguments = ["train", "simcse", str(sentences), "--model", str(tiny_llama), "-o", str(output)]
    arguments += ["--max-steps", "2", "--batch-size", "8", "--no-progress", "--no-bf16"]
    assert main(arguments) == 0
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("Cats sit on warm mats all day.", encoding="utf-8")
    (notes / "b.txt").write_text("Rivers flood in the spring.", encoding="utf-8")
    store = f"faiss:{tmp_path / 'store'}"
    assert main(["index", str(notes), "--model", str(output), "--store", store]) == 0
    capsys.readouterr()
    assert main(["search", "cats on mats", "--store", store, "-k", "1"]) == 0
    assert "a.txt" in capsys.readouterr().out
    from llmvec.index.faiss import FaissIndex

    spec = FaissIndex.load(str(tmp_path / "store")).spec
    assert spec.model == str(output.resolve()) and "+" in str(spec.model_revision)


def test_gradient_checkpointing_trains_the_same_weights(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    options = {"lora_dropout": 0.0, "max_steps": 3}
    plain = train(_config(tiny_llama, triplets, tmp_path / "plain", **options))
    checkpointed = train(
        _config(tiny_llama, triplets, tmp_path / "ckpt", gradient_checkpointing=True, **options)
    )
    for a, b in zip(_adapter(plain), _adapter(checkpointed), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_bf16_autocast_run_serves_its_own_vectors(
    tiny_llama: Path, sentences: Path, tmp_path: Path
) -> None:
    run = prepare(_config(tiny_llama, sentences, tmp_path / "out", bf16=True, template="ke"))
    assert run.trainer.args.bf16
    folder = run.train()
    expected = _trained_vectors(run.model, run.encoder, PROBES)
    # The folder encodes in float32; bf16 autocast only ran the training steps.
    assert row_cosines(Encoder(str(folder)).encode(PROBES), expected).min() > 0.9999


@pytest.mark.slow
def test_smollm2_simcse_smoke_run(sentences: Path, tmp_path: Path) -> None:
    """A real 135M model: forward, backward and two LoRA steps, served from its folder."""
    config = TrainingConfig(
        stage="simcse",
        model="smollm2",
        data=(str(sentences),),
        output=str(tmp_path / "smollm2"),
        template="ke",
        batch_size=4,
        max_steps=2,
        max_length=48,
        save_steps=2,
        show_progress=False,
    )
    run = prepare(config)
    folder = run.train()
    losses = [entry["loss"] for entry in run.summary.log if "loss" in entry]
    assert losses and all(np.isfinite(losses))
    expected = _trained_vectors(run.model, run.encoder, PROBES)
    loaded = Encoder(str(folder))
    assert loaded.dim == 576
    assert row_cosines(loaded.encode(PROBES), expected).min() > 0.9999


def test_full_fine_tuning_writes_the_weights_into_the_folder(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    run = prepare(_config(tiny_llama, triplets, tmp_path / "out", lora_rank=0, pooling="mean"))
    folder = run.train()
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["base_model"] == "./model" and manifest["adapters"] == []
    assert (folder / "model" / "model.safetensors").is_file()
    expected = _trained_vectors(run.model, run.encoder, PROBES)
    assert row_cosines(Encoder(str(folder)).encode(PROBES), expected).min() > 0.9999
    (folder / "model" / "config.json").write_text("{}", encoding="utf-8")  # weights changed
    with pytest.raises(ValueError, match="has changed since training"):
        Encoder(str(folder))


def test_a_time_budget_stops_the_run_with_a_checkpoint(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    # A budget spent before the first step ends: one step runs, of the twenty allowed.
    folder = train(
        _config(tiny_llama, triplets, tmp_path / "out", max_steps=20, time_budget_s=1e-6)
    )
    log = json.loads((folder / "training_log.json").read_text())["log_history"]
    assert next(e for e in reversed(log) if "train_runtime" in e)["step"] == 1
