"""PEFT adapters (LoRA and the other mergeable kinds) merged into a base model, as LLM2Vec ships
its checkpoints: a base LLM, an MNTP adapter, then optionally a SimCSE or supervised adapter
trained on top of the merged MNTP model. Adapters are merged in the order given.

Weights are read from ``adapter_model.safetensors`` only (no pickled ``.bin`` files).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from llmvec.models import ModelLocation, fingerprint

logger = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_PEFT_PREFIX = "base_model.model."


def adapter_directory(adapter: str | os.PathLike[str]) -> Path:
    """A local folder holding the adapter's config and safetensors weights (hub ids download
    just those two files)."""
    if not isinstance(adapter, (str, os.PathLike)) or not str(adapter):
        raise TypeError(f"an adapter must be a folder path or a hub id, got {adapter!r}")
    path = Path(adapter).expanduser()
    if not path.exists():
        from huggingface_hub import hf_hub_download

        config = hf_hub_download(str(adapter), ADAPTER_CONFIG)
        hf_hub_download(str(adapter), ADAPTER_WEIGHTS)
        path = Path(config).parent
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"adapter {adapter!r} lacks {missing} in {path}; llmvec loads PEFT adapters saved "
            "with safetensors (`save_pretrained(..., safe_serialization=True)`)"
        )
    return path


def _key_mapping(model: nn.Module, directory: Path) -> dict[str, str] | None:
    """Map the keys of an adapter saved on a ``*ForCausalLM`` model (``model.layers...``) onto
    the bare base model llmvec loads (``layers...``); ``None`` when they already fit."""
    from safetensors import safe_open

    with safe_open(str(directory / ADAPTER_WEIGHTS), framework="pt") as handle:
        keys = [key.removeprefix(_PEFT_PREFIX) for key in handle.keys()]  # noqa: SIM118
    has_model_attribute = isinstance(getattr(model, "model", None), nn.Module)
    if keys and not has_model_attribute and all(key.startswith("model.") for key in keys):
        return {r"^model\.": ""}
    return None


def resolve_adapters(adapters: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Validate a list of adapters and turn each into a local folder."""
    if isinstance(adapters, str) or not isinstance(adapters, Sequence):
        raise TypeError(f"adapters must be a list of folder paths or hub ids, got {adapters!r}")
    return [adapter_directory(adapter) for adapter in adapters]


def merge_adapter(model: nn.Module, directory: Path) -> nn.Module:
    """Load the PEFT adapter saved in ``directory`` onto ``model`` and merge it into the weights.

    Raises ``ValueError`` when the adapter's weights do not all find their modules (an adapter
    for another architecture), instead of merging a partial adapter.
    """
    try:
        from peft import PeftConfig, PeftModel
    except ImportError as error:  # pragma: no cover - peft is installed with the dev extra
        raise ImportError("loading adapters needs peft: `pip install peft`") from error

    adapter = str(directory)
    config = PeftConfig.from_pretrained(str(directory))
    config.inference_mode = True
    peft_model = PeftModel(model, config)  # type: ignore[arg-type]
    result = peft_model.load_adapter(
        str(directory), "default", key_mapping=_key_mapping(model, directory)
    )
    if result.missing_keys:
        raise ValueError(
            f"adapter {adapter!r} does not fit {type(model).__name__}: "
            f"{len(result.missing_keys)} adapter weights were not found in the checkpoint, e.g. "
            f"{result.missing_keys[:3]}"
        )
    if result.unexpected_keys:
        logger.warning(
            "adapter %r: ignoring %d weights for modules the base model lacks (e.g. %s)",
            adapter,
            len(result.unexpected_keys),
            result.unexpected_keys[:3],
        )
    if not hasattr(peft_model, "merge_and_unload"):
        raise ValueError(
            f"adapter {adapter!r} is a {config.peft_type} adapter, which cannot be merged into "
            "the weights; llmvec supports mergeable adapters such as LoRA"
        )
    merged: nn.Module = peft_model.merge_and_unload()
    logger.info("merged %s adapter %s", config.peft_type, adapter)
    return merged


def merge_adapters(model: nn.Module, directories: Sequence[Path]) -> nn.Module:
    """Merge each adapter in order (LLM2Vec: the MNTP adapter first, then the SimCSE or
    supervised one)."""
    for directory in directories:
        model = merge_adapter(model, directory)
    return model


def adapters_revision(base_revision: str | None, directories: Sequence[Path]) -> str | None:
    """The identity of the base weights plus adapters: ``base+adapter1+...`` fingerprints."""
    if not directories:
        return base_revision
    adapters = [
        fingerprint(ModelLocation(str(directory))) or str(directory) for directory in directories
    ]
    return "+".join([base_revision or "unknown", *adapters])
