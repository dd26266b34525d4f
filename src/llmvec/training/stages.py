"""The training stages, each one run of transformers' Trainer on the encoder's own path:
``mntp`` (LLM2Vec), ``simcse`` (unsupervised), ``contrastive`` (supervised InfoNCE, optionally
in NV-Embed's phases), ``cosent`` (scored sentence pairs, as STS-B train). Everything a run is
told is checked before its first step."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import TrainingArguments, set_seed

from llmvec.backends.devices import has_bf16_matmul
from llmvec.encoder import Encoder
from llmvec.trained_folder import MANIFEST
from llmvec.training.collate import (
    ContrastiveCollator,
    MaskingCollator,
    ScoredPairCollator,
    query_instruction,
)
from llmvec.training.config import TrainingConfig
from llmvec.training.data import dev_split, load_scored_pairs, load_texts, load_triplets
from llmvec.training.dev import DevScore, retrieval_dev, sts_dev
from llmvec.training.losses import ContrastiveLoss, CoSENTLoss
from llmvec.training.mntp import LMHead
from llmvec.training.model import (
    EmbeddingModel,
    add_lora,
    set_attention_dropout,
    transformers_backend,
)
from llmvec.training.output import RunSummary, earlier_stages, write_trained_folder
from llmvec.training.trainer import EmbeddingTrainer, TimeBudget

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
#: SimCSE's dropout, on the attention probabilities of decoders that train with none.
SIMCSE_DROPOUT = 0.1


def train(config: TrainingConfig) -> Path:
    """Run ``config`` (every phase of it, in order) and return the trained folder."""
    if not config.phases:
        return run_stage(config)
    previous = config.model
    for number, phase in enumerate(config.phases, start=1):
        last = number == len(config.phases)
        output = config.output if last else str(Path(config.output) / f"phase-{number}")
        run_stage(replace(config.for_phase(phase, output), model=previous))
        previous = output
    return Path(config.output)


DataFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def train_mntp(model: str, data: DataFiles, output: str, **options: Any) -> Path:
    """LLM2Vec's masked next-token prediction (bidirectional, LoRA) on text files."""
    return _train_stage("mntp", model, data, output, options)


def train_simcse(model: str, data: DataFiles, output: str, **options: Any) -> Path:
    """Unsupervised SimCSE on text files: each sentence against itself under dropout."""
    return _train_stage("simcse", model, data, output, options)


def train_contrastive(model: str, data: DataFiles, output: str, **options: Any) -> Path:
    """Supervised InfoNCE on (query, positive[, negative]) rows of one or more files."""
    return _train_stage("contrastive", model, data, output, options)


def train_cosent(model: str, data: DataFiles, output: str, **options: Any) -> Path:
    """CoSENT on (sentence1, sentence2, score) rows of one or more files (STS-B train)."""
    return _train_stage("cosent", model, data, output, options)


def _train_stage(
    stage: str, model: str, data: DataFiles, output: str, options: dict[str, Any]
) -> Path:
    files = (data,) if isinstance(data, str | os.PathLike) else tuple(data)
    paths = tuple(os.fspath(path) for path in files)
    return train(TrainingConfig(stage=stage, model=model, data=paths, output=output, **options))


def _check_output(config: TrainingConfig) -> Path:
    output = Path(config.output).expanduser()
    checkpoints = output / CHECKPOINTS
    has_checkpoints = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    if config.resume and not has_checkpoints:
        raise FileNotFoundError(f"--resume: {checkpoints} holds no checkpoint to resume from")
    if not config.resume and ((output / MANIFEST).exists() or has_checkpoints):
        raise FileExistsError(
            f"{output} already holds a trained model or checkpoints; resume it with --resume "
            "or train into another folder"
        )
    return output


def _load_rows(config: TrainingConfig) -> tuple[datasets.Dataset, dict[str, int]]:
    """Every data file's rows in one dataset, with the row number and a length for grouping."""
    loader = {"contrastive": load_triplets, "cosent": load_scored_pairs}.get(config.stage)
    loaded = [(loader or load_texts)(path) for path in config.data]
    rows = datasets.concatenate_datasets(loaded) if len(loaded) > 1 else loaded[0]
    if config.stage == "contrastive":
        with_negative = sum(1 for negative in rows["negative"] if negative)
        if 0 < with_negative < len(rows):
            raise ValueError(
                f"{with_negative} of {len(rows)} rows of {list(config.data)} have a negative: "
                "give every row one (llmvec mine) or none"
            )
        texts = [q + p for q, p in zip(rows["query"], rows["positive"], strict=True)]
    elif config.stage == "cosent":
        texts = [a + b for a, b in zip(rows["sentence1"], rows["sentence2"], strict=True)]
    else:
        texts = rows["text"]
    rows = rows.add_column("row", list(range(len(rows))))
    rows = rows.add_column("length", [len(text) for text in texts])
    counts = {path: len(table) for path, table in zip(config.data, loaded, strict=True)}
    return rows, counts


def _dev_instruction(rows: datasets.Dataset, default: str | None) -> str | None:
    """The query instruction of a retrieval dev split, which scores one task."""
    given = {query_instruction(row, default) for row in rows}
    if len(given) > 1:
        raise ValueError(
            f"the retrieval dev split (eval_fraction) scores one task, but its rows carry "
            f"{len(given)} query instructions; score with eval_sts, or train one task per run"
        )
    return given.pop()


def _arguments(config: TrainingConfig, output: Path, evaluate: bool) -> TrainingArguments:
    use_cpu = config.device == "cpu" or not torch.cuda.is_available()
    device = torch.device("cpu" if use_cpu else "cuda")
    bf16 = has_bf16_matmul(device) if config.bf16 is None else config.bf16
    eval_steps = config.eval_steps or config.save_steps
    return TrainingArguments(
        output_dir=str(output / CHECKPOINTS),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type="linear",
        bf16=bf16,
        use_cpu=use_cpu,
        seed=config.seed,
        logging_steps=max(1, min(10, config.save_steps)),
        save_strategy="steps",
        save_steps=eval_steps if evaluate else config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=eval_steps if evaluate else None,
        load_best_model_at_end=evaluate,
        metric_for_best_model="score" if evaluate else None,
        greater_is_better=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=not config.show_progress,
        # Under torchrun on CPUs: gloo (one process has no process group to set up).
        ddp_backend="gloo" if use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
    )


@dataclass
class Run:
    """A stage ready to train: its Trainer, the model it trains and what the folder needs."""

    config: TrainingConfig
    output: Path
    encoder: Encoder
    model: EmbeddingModel
    trainer: EmbeddingTrainer
    peft_model: Any
    dev_score: DevScore | None
    summary: RunSummary

    def train(self) -> Path:
        """Train (from the last checkpoint with ``resume``), keep the best checkpoint by the dev
        score, and write the trained folder on the main process."""
        started = time.monotonic()
        if self.dev_score is not None and not self.config.resume:
            self.model.eval()
            self.summary.dev_before = self.dev_score()
        result = self.trainer.train(resume_from_checkpoint=True if self.config.resume else None)
        self.model.eval()
        self.summary.steps = self.trainer.state.global_step
        self.summary.final_loss = float(result.training_loss)
        self.summary.log = list(self.trainer.state.log_history)
        if self.dev_score is not None:
            self.summary.dev_after = self.dev_score()
        self.summary.seconds = time.monotonic() - started
        if self.trainer.is_world_process_zero():
            write_trained_folder(
                self.output,
                config=self.config,
                encoder=self.encoder,
                peft_model=self.peft_model,
                backbone=self.model.backbone,
                summary=self.summary,
            )
        self.trainer.accelerator.wait_for_everyone()
        return self.output


def run_stage(config: TrainingConfig) -> Path:
    """One stage, prepared then trained."""
    return prepare(config).train()


def prepare(config: TrainingConfig) -> Run:
    """Load the data and the model and check everything the stage was told, before any step:
    the output folder, every data row, the recipe, the adapter's targets, the loss."""
    output = _check_output(config)
    rows, counts = _load_rows(config)
    dev_rows = None
    dev_instruction = config.query_instruction
    if config.eval_fraction and config.stage == "contrastive":
        rows, dev_rows = dev_split(rows, config.eval_fraction, config.seed)
        if config.eval_sts is None:  # the split is scored by retrieval only without eval_sts
            dev_instruction = _dev_instruction(dev_rows, config.query_instruction)
    evaluate = config.eval_sts is not None or dev_rows is not None
    if config.cache_chunk_size is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Each chunk's backward would all-reduce on its own; the sums would not be the loss's.
        raise ValueError(
            "cache_chunk_size (GradCache) runs on one process; under torchrun, raise the "
            "per-process batch or use gradient_accumulation"
        )
    if not config.trains_adapter and earlier_stages(config.model)[1]:
        raise ValueError(
            f"{config.model} carries adapters: train it with a LoRA adapter (lora_rank > 0)"
        )
    args = _arguments(config, output, evaluate)
    set_seed(config.seed)
    encoder = Encoder(
        config.model,
        device=args.device,
        dtype="float32",
        max_length=config.max_length,
        prefix_caching=False,
        **config.recipe(),
    )
    backend = transformers_backend(encoder)
    loss: ContrastiveLoss | CoSENTLoss | None = None
    if config.stage == "cosent":
        loss = CoSENTLoss(config.temperature, config.matryoshka_dims, config.binary)
    elif config.stage != "mntp":
        loss = ContrastiveLoss(
            temperature=config.temperature,
            in_batch_negatives=config.in_batch_negatives,
            matryoshka_dims=config.matryoshka_dims,
            binary=config.binary,
        )
    if loss is not None:
        loss.check_dimension(backend.hidden_size)
    peft_model = None
    if config.trains_adapter:
        peft_model = add_lora(backend, config, encoder.recipe.layer)
    else:
        backend.model.requires_grad_(True)
    dropout = config.attention_dropout
    if dropout is None and config.stage == "simcse":
        dropout = SIMCSE_DROPOUT
    if dropout is not None:
        set_attention_dropout(backend.model, dropout)
    if config.gradient_checkpointing:
        backend.model.gradient_checkpointing_enable({"use_reentrant": False})
    lm_head = LMHead.for_model(backend.model) if config.stage == "mntp" else None
    model = EmbeddingModel(encoder, config, loss=loss, lm_head=lm_head)
    collator: Any = ContrastiveCollator(encoder, config.query_instruction)
    if config.stage == "mntp":
        collator = MaskingCollator(encoder, config.mask_probability, config.mask_token, config.seed)
    elif config.stage == "cosent":
        collator = ScoredPairCollator(encoder)
    dev_score: DevScore | None = None
    if config.eval_sts is not None:
        dev_score = sts_dev(encoder, config.eval_sts)
    elif dev_rows is not None:
        dev_score = retrieval_dev(encoder, dev_rows, dev_instruction)
    trainer = EmbeddingTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        eval_dataset=dev_rows if dev_rows is not None else (rows if evaluate else None),
        data_collator=collator,
        dev_score=dev_score,
        callbacks=[TimeBudget(config.time_budget_s)] if config.time_budget_s else None,
    )
    return Run(config, output, encoder, model, trainer, peft_model, dev_score, RunSummary(counts))
