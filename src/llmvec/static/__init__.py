"""Static embedding models (WordLlama, model2vec style): made from an LLM's codebook
(:func:`extract`), distilled from any encoder and recipe (:func:`distill`), trained
(:func:`train_static`), and freed of their texts' common components
(:func:`remove_common_components`). The file format the static backend reads is
:mod:`llmvec.backends.static_files`.

The names load on first use: the ``llmvec`` command imports this package for its defaults
without loading the trainer.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmvec.static.codebook import principal_components, zipf_sif_weights
    from llmvec.static.common_components import remove_common_components
    from llmvec.static.distillation import distill
    from llmvec.static.extraction import extract
    from llmvec.static.training import train_static
    from llmvec.static.training_config import StaticTrainingConfig

_HOMES = {
    "distill": "llmvec.static.distillation",
    "extract": "llmvec.static.extraction",
    "principal_components": "llmvec.static.codebook",
    "remove_common_components": "llmvec.static.common_components",
    "zipf_sif_weights": "llmvec.static.codebook",
    "train_static": "llmvec.static.training",
    "StaticTrainingConfig": "llmvec.static.training_config",
}

__all__ = [
    "StaticTrainingConfig",
    "distill",
    "extract",
    "principal_components",
    "remove_common_components",
    "train_static",
    "zipf_sif_weights",
]


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
