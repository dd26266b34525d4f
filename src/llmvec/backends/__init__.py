"""Engines that turn token ids into hidden states of one layer, behind one small protocol."""

from __future__ import annotations

from typing import Any

from llmvec.backends.base import Backend

BACKENDS = ("transformers", "static")


def load_backend(name: str, model: str, **kwargs: Any) -> Backend:
    """Build the backend called ``name`` for ``model``; unknown names are a ``ValueError``."""
    if name == "transformers":
        from llmvec.backends.transformers import TransformersBackend

        return TransformersBackend(model, **kwargs)
    if name == "static":
        from llmvec.backends.static import StaticBackend

        return StaticBackend(model, **kwargs)
    raise ValueError(f"unknown backend {name!r}; allowed: {list(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "load_backend"]
