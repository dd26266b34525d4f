"""Argument checks shared across llmvec: positive integers, texts and lists of texts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, Literal, overload


def check_positive(name: str, value: int) -> int:
    """``value`` if it is an int >= 1 (not a bool), else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_text(name: str, value: Any) -> str:
    """``value`` if it is a str, else a ``TypeError`` naming ``name``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} ({value!r})")
    return value


def as_text_list(texts: str | Sequence[str]) -> list[str]:
    """One text or a sequence of texts, as a list of str."""
    if isinstance(texts, str):
        return [texts]
    if texts is None or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    return check_text_list(texts)


@overload
def check_text_list(texts: Any, allow_none: Literal[False] = False) -> list[str]: ...


@overload
def check_text_list(texts: Any, allow_none: Literal[True]) -> list[str | None]: ...


def check_text_list(texts: Any, allow_none: bool = False) -> list[str] | list[str | None]:
    """A sequence of texts (not one str) as a list; ``allow_none`` also accepts ``None`` items.
    The error names the first bad item and its position."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__} ({texts!r})")
    allowed = "a str or None" if allow_none else "a str"
    for position, text in enumerate(texts):
        if not isinstance(text, str) and not (allow_none and text is None):
            raise TypeError(
                f"texts[{position}] is {type(text).__name__} ({text!r}); every text must be "
                f"{allowed}"
            )
    return list(texts)


def known_options(cls: type, options: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A copy of ``options`` for the dataclass ``cls``; keys that are not among its fields are
    refused, by name (``what`` says what the options are)."""
    known = {field.name for field in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return dict(options)
