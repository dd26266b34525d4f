"""Engines that turn token ids into hidden states of one layer (or, with their own pooler, into
pooled vectors), behind two small protocols."""

from __future__ import annotations

from typing import Any

from llmvec.backends.base import Backend, PooledBackend
from llmvec.choices import BACKENDS, QUANTIZATION_MODES


def load_backend(name: str, model: str, **kwargs: Any) -> Backend | PooledBackend:
    """Build the backend called ``name`` for ``model``; unknown names are a ``ValueError``."""
    if name == "transformers":
        from llmvec.backends.transformers import TransformersBackend

        return TransformersBackend(model, **kwargs)
    if name == "static":
        from llmvec.backends.static import StaticBackend

        return StaticBackend(model, **kwargs)
    if name == "vllm":
        from llmvec.backends.vllm import VLLMBackend

        return VLLMBackend(model, **kwargs)
    raise ValueError(f"unknown backend {name!r}; allowed: {list(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "QUANTIZATION_MODES",
    "Backend",
    "PooledBackend",
    "load_backend",
]
