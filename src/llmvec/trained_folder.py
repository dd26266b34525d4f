"""A trained embedder's folder: what ``llmvec train`` writes and ``Encoder(folder)`` loads.

``llmvec_model.json`` names the base model and its fingerprint at training time, the adapters
(merged in order), the latent-attention head and the recipe. The files it names lie inside the
folder, and the manifest is written last: a folder without one is not (yet) a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmvec.backends.adapters import adapters_revision
from llmvec.models import fingerprint, resolve_model

MANIFEST = "llmvec_model.json"
FORMAT_VERSION = 1
#: The encoder arguments a trained folder fixes (its recipe); explicit arguments override them.
RECIPE_FIELDS = (
    "pooling",
    "template",
    "layer",
    "bidirectional",
    "query_instruction",
    "document_instruction",
    "instruction_format",
    "add_bos",
)


@dataclass(frozen=True)
class TrainedModel:
    """The manifest of a trained folder (paths relative to the folder)."""

    base_model: str
    base_fingerprint: str | None
    adapters: tuple[str, ...] = ()
    latent_attention_weights: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON data."""
        data = asdict(self)
        data["adapters"] = list(self.adapters)
        return data


def base_fingerprint(base_model: str) -> str | None:
    """The fingerprint of a base model's files (``None`` for a hub id not on this machine)."""
    return fingerprint(resolve_model(base_model))


def is_trained_folder(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` is a folder holding a trained model's manifest."""
    if not isinstance(model, (str, os.PathLike)) or not str(model):
        return False
    return (Path(model).expanduser() / MANIFEST).is_file()


@dataclass(frozen=True)
class LoadedTrainedModel:
    """A manifest read from ``folder``, its paths made absolute."""

    folder: Path
    base_model: str
    adapters: list[str]
    latent_attention_weights: str | None
    recipe: dict[str, Any]


def read_trained_folder(model: str | os.PathLike[str]) -> LoadedTrainedModel:
    """Read and check ``model``'s manifest: its files exist inside the folder and the base
    model's files are those it was trained on."""
    folder = Path(model).expanduser().resolve()
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} is not an llmvec trained-model manifest (format 1)")
    unknown = sorted(set(data.get("recipe", {})) - set(RECIPE_FIELDS))
    if unknown:
        raise ValueError(f"{path} has unknown recipe fields {unknown}")
    files = [*data.get("adapters", [])]
    if data.get("latent_attention_weights"):
        files.append(data["latent_attention_weights"])
    located = [_inside(folder, name) for name in files]
    base = str(data["base_model"])
    if base.startswith("./"):
        base = str(_inside(folder, base))
    trained_on = data.get("base_fingerprint")
    found = base_fingerprint(base)
    if trained_on and found and trained_on != found:
        raise ValueError(
            f"the base model {base!r} of {folder} has changed since training (fingerprint "
            f"{found}, trained on {trained_on}); point the manifest at the original weights"
        )
    adapters = [str(p) for p in located[: len(data.get("adapters", []))]]
    head = str(located[-1]) if data.get("latent_attention_weights") else None
    return LoadedTrainedModel(folder, base, adapters, head, dict(data.get("recipe", {})))


def trained_revision(model: str | os.PathLike[str]) -> str | None:
    """The weights identity an encoder of the trained folder ``model`` reports (its base
    model's fingerprint, then its adapters'), as the transformers backend computes it."""
    trained = read_trained_folder(model)
    return adapters_revision(
        base_fingerprint(trained.base_model), [Path(a) for a in trained.adapters]
    )


def _inside(folder: Path, name: str) -> Path:
    path = (folder / name).resolve()
    if not path.is_relative_to(folder):
        raise ValueError(f"{folder / MANIFEST} names {name!r}, outside the folder")
    if not path.exists():
        raise FileNotFoundError(f"{folder / MANIFEST} names {name!r}, which is missing")
    return path
