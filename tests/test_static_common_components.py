"""Common-component removal from a static model: the written model's vectors equal a plain
reference (each text's vector with its top uncentred singular directions projected out), and
bad input is refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from llmvec import Encoder
from llmvec.static import extract, remove_common_components
from llmvec.static.common_components import COMMON_COMPONENTS_KEY

TOPICS = ["cats", "rivers", "stars", "bread", "music", "trains", "maps", "snow"]
TEXTS = [f"sentence {i} about {topic} and a few common words" for i, topic in enumerate(TOPICS * 4)]
PROBES = ["cats sit on mats", "the river floods in spring", "bread and music", "x"]


@pytest.fixture(scope="module")
def static_model(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract(str(tiny_llama), tmp_path_factory.mktemp("static") / "model", 16)


def _reference(model: Path, count: int) -> np.ndarray:
    """PROBES' vectors with the ``count`` top right singular vectors of TEXTS' (unnormalized)
    vectors projected out, then normalized."""
    raw = Encoder(str(model), backend="static", normalize=False)
    fitted = np.asarray(raw.encode_documents(TEXTS), dtype=np.float64)
    directions = np.linalg.svd(fitted, full_matrices=False)[2][:count]
    probes = np.asarray(raw.encode_documents(PROBES), dtype=np.float64)
    removed = probes - probes @ directions.T @ directions
    norms = np.linalg.norm(removed, axis=1, keepdims=True)
    return np.where(norms > 0, removed / np.where(norms > 0, norms, 1), 0.0)


@pytest.mark.parametrize("count", [1, 3])
def test_vectors_equal_the_reference_projection(
    static_model: Path, tmp_path: Path, count: int
) -> None:
    folder = remove_common_components(str(static_model), tmp_path / "out", TEXTS, count)
    vectors = np.asarray(Encoder(str(folder), backend="static").encode_documents(PROBES))
    np.testing.assert_allclose(vectors, _reference(static_model, count), atol=1e-5)
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as handle:
        record = json.loads(handle.metadata()[COMMON_COMPONENTS_KEY])
    assert record == {"count": count, "texts": len(TEXTS), "source_model": str(static_model)}


def test_the_fitted_texts_lose_their_top_direction(static_model: Path, tmp_path: Path) -> None:
    raw = Encoder(str(static_model), backend="static", normalize=False)
    before = np.asarray(raw.encode_documents(TEXTS), dtype=np.float64)
    top = np.linalg.svd(before, full_matrices=False)[2][0]
    folder = remove_common_components(str(static_model), tmp_path / "out", TEXTS, 1)
    after = np.asarray(
        Encoder(str(folder), backend="static", normalize=False).encode_documents(TEXTS)
    )
    assert np.abs(before @ top).mean() > 0.1 * np.linalg.norm(before, axis=1).mean()
    assert np.abs(after @ top).max() < 1e-4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 16}, "common directions"),
        ({"count": 0}, "count must be a positive integer"),
        ({"texts": []}, "texts must be a non-empty sequence"),
        ({"texts": "one text"}, "texts must be a non-empty sequence"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    static_model: Path, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"texts": TEXTS, "count": 1, **options}
    with pytest.raises(ValueError, match=message):
        remove_common_components(str(static_model), tmp_path / "out", **arguments)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_static_model_is_never_replaced(
    static_model: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.md").write_text("keep me", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not a static model folder"):
        remove_common_components(str(static_model), foreign, TEXTS, 1)
    assert (foreign / "todo.md").read_text(encoding="utf-8") == "keep me"
