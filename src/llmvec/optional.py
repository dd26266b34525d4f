"""Optional dependencies: import one where it is needed, or fail saying what to install."""

from __future__ import annotations

import importlib
from typing import Any


def require(module: str, install: str) -> Any:
    """Import ``module``; if it is missing, raise ``ImportError`` with ``install`` (what the
    user should run) as the message."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(install) from None
