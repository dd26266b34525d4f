"""Training across processes: a run killed with SIGKILL and resumed ends at the weights of an
uninterrupted run; two gloo DDP processes equal one process at the same global batch, with
in-batch negatives gathered. Real processes through the `llmvec train` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TOPICS = ["cats", "dogs", "rivers", "stars", "music", "bread", "trains", "rain"]


@pytest.fixture(scope="module")
def triplets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "triplets.jsonl"
    rows = [
        {
            "query": f"what about {TOPICS[i % 8]} {i}?",
            "positive": f"a passage on {TOPICS[i % 8]} number {i} " + "word " * (i % 5),
            "negative": f"a passage on {TOPICS[(i + 3) % 8]} number {i}",
        }
        for i in range(64)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _command(model: Path, data: Path, output: Path, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "llmvec.cli", "train", "contrastive", str(data),
        "--model", str(model), "-o", str(output), "--no-bf16", "--no-progress",
        "--learning-rate", "5e-3", *options,
    ]  # fmt: skip


def _environment() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapters" / "01-contrastive" / "adapter_model.safetensors")


def test_sigkill_then_resume_ends_at_the_uninterrupted_weights(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    # Dropout on and length-grouped batches: the resumed run must replay both.
    options = ("--batch-size", "8", "--max-steps", "30", "--save-steps", "5")
    options += ("--lora-dropout", "0.1")
    env = _environment()
    subprocess.run(_command(tiny_llama, triplets, tmp_path / "full", *options), env=env, check=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _command(tiny_llama, triplets, killed, *options),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "checkpoints" / "checkpoint-10" / "trainer_state.json"
    while not checkpoint.exists() and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "llmvec_model.json").exists()
    subprocess.run(
        _command(tiny_llama, triplets, killed, *options, "--resume"), env=env, check=True
    )
    full, resumed = _adapter(tmp_path / "full"), _adapter(killed)
    assert full.keys() == resumed.keys()
    for key, value in full.items():
        assert torch.equal(value, resumed[key]), key


def test_two_gloo_processes_equal_one_at_the_same_global_batch(
    tiny_llama: Path, triplets: Path, tmp_path: Path
) -> None:
    # No dropout: the processes draw different masks than one process would.
    options = ("--max-steps", "6", "--lora-dropout", "0", "--no-group-by-length")
    env = _environment()
    one = tmp_path / "one"
    subprocess.run(
        _command(tiny_llama, triplets, one, *options, "--batch-size", "8"), env=env, check=True
    )
    two = tmp_path / "two"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command = _command(tiny_llama, triplets, two, *options, "--batch-size", "4")
    subprocess.run([*launcher, *command[1:]], env=env, check=True)
    single, parallel = _adapter(one), _adapter(two)
    assert single.keys() == parallel.keys()
    largest = max(value.abs().max().item() for value in single.values())
    for key, value in single.items():
        torch.testing.assert_close(parallel[key], value, rtol=1e-4, atol=1e-4 * largest)
    log = json.loads((two / "training_log.json").read_text())["log_history"]
    assert log[-1]["step"] == 6
