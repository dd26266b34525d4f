"""``llmvec train STAGE DATA...``: a stage's options as flags (or a JSON configuration with
flags on top). Only the flags given override; the rest are the configuration's defaults."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

_EXAMPLES = """\
examples:
  llmvec train mntp sentences.txt --model smollm2 -o runs/mntp --max-steps 1000
  llmvec train simcse sentences.txt --model runs/mntp -o runs/simcse --eval-sts sts-dev.csv
  llmvec train simcse sentences.txt --model smollm2 --template ke -o runs/ke-cse
  llmvec train contrastive triplets.jsonl --model smollm2 -o runs/sup \\
      --query-instruction "Given a claim, retrieve abstracts that support it" \\
      --matryoshka-dims 64,128,576 --cache-chunk-size 16
  torchrun --nproc-per-node 2 -m llmvec.cli train contrastive triplets.jsonl -o runs/ddp
  llmvec train contrastive --config nv-embed-two-phase.json -o runs/nv
  llmvec train cosent sts-train.jsonl --model runs/sup -o runs/sup-sts --eval-sts sts-dev.csv
  llmvec train static pairs.jsonl --model wordllama -o runs/static --dim 128 \\
      --teacher all-minilm-l6-v2 --texts sentences.txt --matryoshka-dims 32,64,128
  llmvec train static --scored-pairs sts-train.jsonl --model runs/static -o runs/static-sts
"""

#: Flags that ``static`` reads under another name than its options'.
_STATIC_RENAMED = {"max_length": "max_tokens", "eval_fraction": "dev_fraction"}
#: Flags of the static stage only.
_STATIC_ONLY = (
    "scored_pairs",
    "cosent_weight",
    "teacher",
    "texts",
    "dim",
    "train_table",
    "distill_loss",
    "distill_weight",
    "contrastive_weight",
    "common_components",
)
#: Flags not named ``--`` followed by their destination with dashes.
_FLAG_NAMES = {
    "in_batch_negatives": "--no-in-batch-negatives",
    "time_budget_s": "--time-budget",
    "group_by_length": "--no-group-by-length",
    "show_progress": "--no-progress",
}


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` subcommand's arguments (every flag defaults to the configuration's)."""
    parser.epilog = _EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    keep = argparse.SUPPRESS
    parser.add_argument(
        "stage",
        choices=("mntp", "simcse", "contrastive", "cosent", "static"),
        help="what to train (cosent: scored sentence pairs; static: a WordLlama-style static "
        "model)",
    )
    parser.add_argument(
        "data",
        nargs="*",
        default=keep,
        help="training files: sentences (.txt[.gz], .jsonl with text) for mntp and simcse; "
        "query/positive[/negative] rows (.jsonl, .csv, .tsv; SimCSE's sent0,sent1,hard_neg) "
        "for contrastive; sentence1/sentence2/score rows for cosent; one triplet file for "
        "static",
    )
    parser.add_argument("--config", help="JSON file of options (flags override it)")
    parser.add_argument("--model", default=keep, help="base model or a trained folder (smollm2)")
    parser.add_argument("--output", "-o", default=keep, help="folder to write the model into")
    recipe = parser.add_argument_group("recipe (what the trained folder encodes with)")
    recipe.add_argument("--pooling", default=keep, help="mean, last_token, latent_attention...")
    recipe.add_argument("--template", default=keep, help="prompteol, pcoteol, ke or a {text} one")
    recipe.add_argument("--layer", type=int, default=keep, help="layer to pool (later never run)")
    recipe.add_argument(
        "--bidirectional", action="store_true", default=keep, help="LLM2Vec attention"
    )
    recipe.add_argument("--query-instruction", default=keep, help="task put before queries")
    recipe.add_argument("--instruction-format", default=keep, help="e5, qwen3, nv-embed...")
    recipe.add_argument("--max-length", type=int, default=keep, help="tokens per input (128)")
    adapter = parser.add_argument_group("adapter")
    adapter.add_argument("--lora-rank", type=int, default=keep, help="16; 0 trains every weight")
    adapter.add_argument("--lora-alpha", type=int, default=keep, help="32")
    adapter.add_argument("--lora-dropout", type=float, default=keep, help="0.05")
    adapter.add_argument(
        "--lora-targets", type=_names, default=keep, help="comma-separated linear layer names"
    )
    adapter.add_argument(
        "--attention-dropout", type=float, default=keep, help="SimCSE's noise (simcse: 0.1)"
    )
    loss = parser.add_argument_group("loss")
    loss.add_argument("--temperature", type=float, default=keep, help="0.05")
    loss.add_argument(
        "--no-in-batch-negatives",
        dest="in_batch_negatives",
        action="store_false",
        default=keep,
        help="score a query against its own positive and negatives only (NV-Embed stage 2)",
    )
    loss.add_argument(
        "--matryoshka-dims", type=_ints, default=keep, help="e.g. 64,128,576: train each prefix"
    )
    loss.add_argument("--binary", action="store_true", default=keep, help="binary-aware term")
    loss.add_argument(
        "--cache-chunk-size", type=int, default=keep, help="GradCache: embed N rows at a time"
    )
    loss.add_argument("--mask-probability", type=float, default=keep, help="mntp: 0.2")
    loss.add_argument("--mask-token", default=keep, help="mntp: blank (LLM2Vec's '_'), eos, mask")
    loop = parser.add_argument_group("loop")
    loop.add_argument("--batch-size", type=int, default=keep, help="rows per step per process")
    loop.add_argument("--learning-rate", type=float, default=keep, help="1e-4")
    loop.add_argument("--epochs", type=float, default=keep, help="1")
    loop.add_argument("--max-steps", type=int, default=keep, help="stop after N steps")
    loop.add_argument(
        "--time-budget",
        dest="time_budget_s",
        type=float,
        default=keep,
        help="stop (with a checkpoint) after N s; give --max-steps too, so that the warm-up "
        "and decay of the learning rate span the steps the budget holds, not a whole epoch",
    )
    loop.add_argument("--gradient-accumulation", type=int, default=keep, help="1")
    loop.add_argument("--seed", type=int, default=keep, help="42")
    loop.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=keep,
        help="bfloat16 autocast (default: where the CPU or GPU has bf16 units)",
    )
    loop.add_argument("--gradient-checkpointing", action="store_true", default=keep)
    loop.add_argument(
        "--no-group-by-length",
        dest="group_by_length",
        action="store_false",
        default=keep,
        help="shuffle freely instead of batching similar lengths",
    )
    loop.add_argument("--eval-sts", default=keep, help="STS file scored every --eval-steps")
    loop.add_argument(
        "--eval-fraction", type=float, default=keep, help="contrastive: dev split by query"
    )
    loop.add_argument("--eval-steps", type=int, default=keep, help="(--save-steps)")
    loop.add_argument("--save-steps", type=int, default=keep, help="checkpoint every N (100)")
    loop.add_argument("--resume", action="store_true", default=keep, help="from the last one")
    loop.add_argument("--device", default=keep, help="cpu or cuda (default: the best)")
    loop.add_argument("--no-progress", dest="show_progress", action="store_false", default=keep)
    static = parser.add_argument_group(
        "static (--max-length: tokens pooled per text; --eval-fraction: a dev split)"
    )
    static.add_argument(
        "--scored-pairs",
        default=keep,
        help="sentence1,sentence2,score rows (.jsonl, .csv, .tsv; e.g. STS-B train) for CoSENT",
    )
    static.add_argument("--cosent-weight", type=float, default=keep, help="1.0")
    static.add_argument("--teacher", default=keep, help="encoder to distil (all-minilm-l6-v2)")
    static.add_argument("--texts", default=keep, help="texts to distil on (.txt, .jsonl)")
    static.add_argument("--dim", type=int, default=keep, help="output dimension (the table's)")
    static.add_argument(
        "--train-table", action="store_true", default=keep, help="train the token rows too"
    )
    static.add_argument(
        "--distill-loss",
        choices=("similarity", "vectors"),
        default=keep,
        help="similarity (in-batch similarities, any teacher width; default) or vectors (the "
        "teacher's own vectors PCA'd to the student's width, as tokenlearn)",
    )
    static.add_argument("--distill-weight", type=float, default=keep, help="1.0")
    static.add_argument("--contrastive-weight", type=float, default=keep, help="1.0")
    static.add_argument(
        "--common-components",
        type=int,
        default=keep,
        help="after training, project out this many common directions (SIF) of the training "
        "texts' vectors (0; benchmarks/static_training.py chose 5 on STS-B dev)",
    )


def train_from_args(args: argparse.Namespace) -> Path:
    """Build the stage's configuration (checked before anything loads), train it, and return
    the trained folder."""
    from llmvec.models import DEFAULT_MODEL
    from llmvec.training.config import TrainingConfig
    from llmvec.training.stages import train

    options: dict[str, Any] = {
        key: value
        for key, value in vars(args).items()
        if key not in ("run", "verbose", "config", "stage")
    }
    if args.stage == "static":
        return _train_static(options, args.config)
    misplaced = [_flag(key) for key in _STATIC_ONLY if key in options]
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)} apply to the static stage only")
    if "data" in options:
        options["data"] = tuple(options["data"])
    options["stage"] = args.stage
    if args.config:
        config = TrainingConfig.from_file(args.config, **options)
    else:
        for needed in ("output", "data"):
            if not options.get(needed):
                raise ValueError(
                    f"llmvec train needs {'--output' if needed == 'output' else 'data'}"
                )
        options.setdefault("model", DEFAULT_MODEL)
        config = TrainingConfig.from_dict(options)
    return train(config)


def _flag(destination: str) -> str:
    return _FLAG_NAMES.get(destination, "--" + destination.replace("_", "-"))


def _train_static(options: dict[str, Any], config_file: str | None) -> Path:
    """``llmvec train static``: flags (over a JSON configuration) to a static training run."""
    from llmvec.static.training import train_static
    from llmvec.static.training_config import StaticTrainingConfig

    known = {option.name for option in fields(StaticTrainingConfig)}
    unsupported = [_flag(key) for key in options if key not in known | set(_STATIC_RENAMED)]
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)} do not apply to the static stage")
    data = options.pop("data", [])
    if len(data) > 1:
        raise ValueError(f"the static stage takes one data file, got {len(data)}")
    values = {_STATIC_RENAMED.get(key, key): value for key, value in options.items()}
    if data:
        values["data"] = data[0]
    if config_file:
        try:
            stored = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            message = f"training configuration {config_file} is not valid JSON: {error}"
            raise ValueError(message) from None
        values = {**stored, **values}
    if "output" not in values:
        raise ValueError("llmvec train static needs --output")
    return train_static(StaticTrainingConfig.from_dict(values))
