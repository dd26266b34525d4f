"""Training speed and peak memory of llmvec's stages against sentence-transformers' trainer on
the same model, data, batch, LoRA adapter, dtype and steps, in the same run.

Each (case, engine) runs in a fresh process (peak RSS is that process's), the engines taking
turns. The rate counts the steps after the first two (warm-up), timed by the same Trainer
callback in both engines. Cases:

- ``smollm2-simcse``: unsupervised SimCSE, SmolLM2-135M-Instruct, mean pooling, LoRA r=16,
  batch 32 sentences, attention dropout 0.1, vs MultipleNegativesRankingLoss on (s, s) pairs;
- ``smollm2-contrastive``: SNLI triplets (query, positive, hard negative), batch 16, vs MNRL;
- ``smollm2-contrastive-cached``: batch 32 in chunks of 8 (GradCache) vs
  CachedMultipleNegativesRankingLoss(mini_batch_size=8);
- ``minilm-contrastive``: all-MiniLM-L6-v2, every weight trained, batch 32, vs MNRL.

Both use bf16 autocast where the CPU has bf16 units (as llmvec's default does), temperature 0.05
(MNRL's scale 20), max length 128. Writes benchmarks/results/training_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _report import DATA, RESULTS, machine, versions, write_report

SENTENCES = DATA / "train" / "sentences_ccby_pd.txt.gz"
TRIPLETS = DATA / "train" / "snli_devtest_triplets.csv"
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
CASES: dict[str, dict[str, Any]] = {
    "smollm2-simcse": {"model": "smollm2", "stage": "simcse", "batch": 32},
    "smollm2-contrastive": {"model": "smollm2", "stage": "contrastive", "batch": 16},
    "smollm2-contrastive-cached": {
        "model": "smollm2",
        "stage": "contrastive",
        "batch": 32,
        "chunk": 8,
    },
    "minilm-contrastive": {"model": "all-minilm-l6-v2", "stage": "contrastive", "batch": 32},
}


def model_folder(name: str) -> str:
    """A safetensors folder both engines load (SmolLM2's GGUF converted once)."""
    from llmvec.models import gguf_as_folder, resolve_model

    location = resolve_model(name)
    return str(gguf_as_folder(location)) if location.gguf_file else location.name_or_path


def rows(stage: str, count: int) -> list[dict[str, str]]:
    """The first ``count`` training rows of the case's data."""
    from llmvec.training.data import load_texts, load_triplets

    if stage == "simcse":
        return [{"text": t} for t in load_texts(SENTENCES).select(range(count))["text"]]
    table = load_triplets(TRIPLETS, require_negative=True).select(range(count))
    return [dict(r) for r in table]


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        """Wall time from the start of step 3 to the end of the last step."""

        def __init__(self) -> None:
            self.start: float | None = None
            self.end = 0.0
            self.timed = 0

        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if state.global_step == 2:
                self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if self.start is not None:
                self.end = time.perf_counter()
                self.timed += 1

    return StepTimer()


def run_llmvec(case: dict[str, Any], data: list[dict[str, str]], steps: int, out: Path) -> Any:
    from llmvec.training.config import TrainingConfig
    from llmvec.training.stages import prepare

    key = "text" if case["stage"] == "simcse" else "query"
    path = out / ("data.txt" if key == "text" else "data.jsonl")
    with path.open("w", encoding="utf-8") as handle:
        for row in data:
            handle.write(row["text"] + "\n" if key == "text" else json.dumps(row) + "\n")
    minilm = case["model"].startswith("all-minilm")
    config = TrainingConfig(
        stage=case["stage"],
        model=model_folder(case["model"]),
        data=(str(path),),
        output=str(out / "llmvec"),
        pooling="mean",
        max_length=128,
        batch_size=case["batch"],
        max_steps=steps,
        save_steps=10**6,
        lora_rank=0 if minilm else LORA["r"],
        attention_dropout=None if minilm else 0.1,
        cache_chunk_size=case.get("chunk"),
        group_by_length=False,
        show_progress=False,
        warmup_ratio=0.0,
    )
    run = prepare(config)
    timer = step_timer()
    run.trainer.add_callback(timer)
    run.trainer.train()
    return timer, run.encoder.backend.tokenizer


def run_sentence_transformers(
    case: dict[str, Any], data: list[dict[str, str]], steps: int, out: Path
) -> Any:
    import datasets
    import torch
    from peft import LoraConfig
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.models import Pooling, Transformer

    from llmvec.backends.devices import has_bf16_matmul
    from llmvec.training.config import DEFAULT_LORA_TARGETS
    from llmvec.training.model import set_attention_dropout

    transformer = Transformer(model_folder(case["model"]), max_seq_length=128)
    model = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_word_embedding_dimension(), "mean")],
        device="cpu",
    )
    if not case["model"].startswith("all-minilm"):
        set_attention_dropout(transformer.auto_model, 0.1)
        model.add_adapter(LoraConfig(target_modules=list(DEFAULT_LORA_TARGETS), **LORA))
    if case["stage"] == "simcse":
        table = datasets.Dataset.from_dict(
            {"anchor": [r["text"] for r in data], "positive": [r["text"] for r in data]}
        )
    else:
        table = datasets.Dataset.from_dict(
            {
                "anchor": [r["query"] for r in data],
                "positive": [r["positive"] for r in data],
                "negative": [r["negative"] for r in data],
            }
        )
    loss = (
        losses.CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=case["chunk"])
        if case.get("chunk")
        else losses.MultipleNegativesRankingLoss(model, scale=20.0)
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st"),
        per_device_train_batch_size=case["batch"],
        max_steps=steps,
        learning_rate=1e-4,
        bf16=has_bf16_matmul(torch.device("cpu")),
        use_cpu=True,
        save_strategy="no",
        report_to=[],
        logging_steps=10**6,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    timer = step_timer()
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=table, loss=loss, callbacks=[timer]
    )
    trainer.train()
    return timer, transformer.tokenizer


def child(case_name: str, engine: str, steps: int) -> None:
    """Run one engine on one case and print its measurements as JSON."""
    import torch

    case = CASES[case_name]
    data = rows(case["stage"], case["batch"] * steps)
    with tempfile.TemporaryDirectory() as scratch:
        runner = run_llmvec if engine == "llmvec" else run_sentence_transformers
        timer, tokenizer = runner(case, data, steps, Path(scratch))
    texts = [t for r in data for t in r.values()]
    if case["stage"] == "simcse":
        texts = texts * 2
    tokens = sum(min(len(ids), 128) for ids in tokenizer(texts)["input_ids"])
    tokens_per_step = tokens / steps
    seconds = timer.end - (timer.start or timer.end)
    print(
        json.dumps(
            {
                "timed_steps": timer.timed,
                "seconds": seconds,
                "steps_per_s": timer.timed / seconds if seconds else None,
                "tokens_per_s": tokens_per_step * timer.timed / seconds if seconds else None,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "threads": torch.get_num_threads(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--steps", type=int, default=10, help="steps per run (2 are warm-up)")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "ENGINE"), help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=RESULTS / "training_speed.json")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.steps)
        return
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    results: dict[str, Any] = previous.get("cases", {})
    for name in args.cases:
        measured = {}
        for engine in ("llmvec", "sentence-transformers"):
            command = [
                sys.executable,
                __file__,
                "--child",
                name,
                engine,
                "--steps",
                str(args.steps),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{name} / {engine} failed:\n{done.stderr[-3000:]}")
            measured[engine] = json.loads(done.stdout.strip().splitlines()[-1])
            print(name, engine, measured[engine], flush=True)
        ours, peer = measured["llmvec"], measured["sentence-transformers"]
        results[name] = {
            **CASES[name],
            "llmvec": ours,
            "sentence_transformers": peer,
            "speed_ratio": ours["steps_per_s"] / peer["steps_per_s"],
            "memory_ratio": ours["peak_rss_mib"] / peer["peak_rss_mib"],
        }
    report = {
        "benchmark": "training_speed",
        "steps": args.steps,
        "machine": machine(),
        "versions": versions("sentence-transformers", "peft", "accelerate"),
        "cases": results,
    }
    write_report(args.output, report)


if __name__ == "__main__":
    main()
