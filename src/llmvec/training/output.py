"""Writing a trained folder: adapters (earlier stages' first), the latent-attention head or
the full weights, the recipe, the configuration, and a model card; the manifest last."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from llmvec.encoder import Encoder
from llmvec.index.storage import write_json
from llmvec.trained_folder import (
    MANIFEST,
    TrainedModel,
    base_fingerprint,
    is_trained_folder,
    read_trained_folder,
)
from llmvec.training.config import TrainingConfig

CARD = "README.md"
CONFIG = "training_config.json"
LOG = "training_log.json"
HEAD = "latent_attention.safetensors"
FULL_MODEL = "model"
_STAGING = ".llmvec-staging"


@dataclass
class RunSummary:
    """What a stage did, for the model card: data, steps, losses, dev scores."""

    data_rows: dict[str, int]
    steps: int = 0
    final_loss: float | None = None
    dev_before: dict[str, float] = field(default_factory=dict)
    dev_after: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)


def earlier_stages(model: str) -> tuple[str, list[Path], list[str]]:
    """The base model, adapters and model-card stage lines of ``model`` when it is a trained
    folder (a stage continues it), else ``model`` itself and nothing."""
    if not is_trained_folder(model):
        return model, [], []
    trained = read_trained_folder(model)
    card = trained.folder / CARD
    lines = []
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if line.startswith("- stage ")]
    return trained.base_model, [Path(a) for a in trained.adapters], lines


def write_trained_folder(
    output: Path,
    *,
    config: TrainingConfig,
    encoder: Encoder,
    peft_model: Any,
    backbone: PreTrainedModel,
    summary: RunSummary,
) -> Path:
    """Write the stage's model into ``output``. The old manifest goes first and the new one
    comes last, so a crash in between leaves a folder ``Encoder`` refuses, never a mix."""
    base, earlier, stage_lines = earlier_stages(config.model)
    staging = output / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    adapters: list[str] = []
    for number, source in enumerate(earlier, start=1):
        name = f"adapters/{number:02d}-{source.name.split('-', 1)[-1]}"
        shutil.copytree(source, staging / name)
        adapters.append(name)
    if peft_model is not None:
        name = f"adapters/{len(earlier) + 1:02d}-{config.stage}"
        peft_model.save_pretrained(str(staging / name), safe_serialization=True)
        adapters.append(name)
    full = not config.trains_adapter
    if full:
        backbone.save_pretrained(str(staging / FULL_MODEL), safe_serialization=True)
        encoder.backend.tokenizer.save_pretrained(str(staging / FULL_MODEL))
    head = encoder.latent_head
    if head is not None:
        head.save(staging / HEAD)
    recipe = _recipe(encoder)
    (staging / CONFIG).write_text(config.to_json(), encoding="utf-8")
    write_json(staging / LOG, {"log_history": summary.log})
    card = model_card(config, base, recipe, summary, stage_lines)
    (staging / CARD).write_text(card, encoding="utf-8")
    (output / MANIFEST).unlink(missing_ok=True)
    for entry in sorted(staging.iterdir()):
        _replace(entry, output / entry.name)
    staging.rmdir()
    stored_base = f"./{FULL_MODEL}" if full else base
    manifest = TrainedModel(
        base_model=stored_base,
        base_fingerprint=base_fingerprint(str(output / FULL_MODEL) if full else base),
        adapters=tuple(adapters),
        latent_attention_weights=HEAD if head is not None else None,
        recipe=recipe,
    )
    write_json(output / MANIFEST, manifest.to_dict())
    return output


def _replace(source: Path, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.replace(source, target)


def _recipe(encoder: Encoder) -> dict[str, Any]:
    recipe = encoder.recipe
    return {
        "pooling": recipe.pooling,
        "template": recipe.template,
        "layer": recipe.layer,
        "bidirectional": encoder.bidirectional,
        "query_instruction": encoder.query_instruction,
        "document_instruction": encoder.document_instruction,
        "instruction_format": encoder.instruction_format,
        "add_bos": encoder.add_bos,
    }


def model_card(
    config: TrainingConfig,
    base: str,
    recipe: dict[str, Any],
    summary: RunSummary,
    earlier: Sequence[str],
) -> str:
    """The README of a trained folder: what it was made from and how well it does."""
    data = "\n".join(f"- `{path}`: {rows:,} rows" for path, rows in summary.data_rows.items())
    stage = (
        f"- stage {len(earlier) + 1}: `{config.stage}`, {summary.steps} steps of batch "
        f"{config.batch_size} x {config.gradient_accumulation}, lr {config.learning_rate}, "
        f"{'LoRA r=' + str(config.lora_rank) if config.trains_adapter else 'all weights'}, "
        f"final loss {_number(summary.final_loss)}, {summary.seconds:.0f} s"
    )
    scores = "\n".join(
        f"| {name} | {_number(summary.dev_before.get(name))} | {_number(value)} |"
        for name, value in summary.dev_after.items()
    )
    evaluation = (
        "| dev metric | before | after |\n| --- | --- | --- |\n" + scores
        if scores
        else "No dev evaluation was run."
    )
    described = ", ".join(f"{key} `{value}`" for key, value in recipe.items())
    return f"""# llmvec trained embedder

Load it with `llmvec.Encoder("<this folder>")`, or index with
`llmvec index DIR --model <this folder>`.

- base model: `{base}`
- recipe: {described}

## Stages

{chr(10).join([*earlier, stage])}

## Data of the last stage

{data}

Keep the licences of the training data with the model (see each data set's terms: some, such
as SciFact and WikiQA, allow research use only).

## Evaluation

{evaluation}
"""


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
