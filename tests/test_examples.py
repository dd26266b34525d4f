"""Each runnable example runs offline, as a user would start it, and prints the right sources."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    """Run ``examples/<name>`` in a fresh interpreter and return its standard output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LLMVEC_CHAT_MODEL", None)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_langchain_rag() -> None:
    out = run_example("langchain_rag.py", "--question", "How often should I water a cactus?")
    system_prompt = out.split("--- system", 1)[1].split("--- human", 1)[0]
    sources = re.findall(r"^\[(.+)\]$", system_prompt, flags=re.MULTILINE)
    assert len(sources) == 3 and sources[0] == "houseplants.txt", out
    assert "LLM step skipped" in out


@pytest.mark.slow
def test_llamaindex_ingest() -> None:
    files = [p for p in (EXAMPLES / "data").iterdir() if p.suffix in {".txt", ".md"}]
    out = run_example("llamaindex_ingest.py", "How do I find the hole in an inner tube?", "-k", "1")
    assert f"Ingested {len(files)} files" in out
    answer = out.split("Q: How do I find the hole", 1)[1]
    assert re.findall(r"\[(.+?)\]", answer) == ["bicycle_repair.txt"], out


@pytest.mark.slow
def test_embeddings_server() -> None:
    out = run_example("embeddings_server.py")
    assert "openai client: 384 dimensions" in out
    assert "best chunk for the question: honeybees.md" in out
    assert "128 dimensions: 128 floats, 16 bytes" in out
