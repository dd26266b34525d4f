"""backend="vllm" settings that fail before vLLM is imported, so they run without vLLM.

The vLLM backend itself is tested against transformers in tests_vllm/ (its own environment,
scripts/test_vllm.sh).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from llmvec import Encoder
from llmvec.backends import BACKENDS


def test_vllm_is_a_backend_and_not_imported_by_llmvec() -> None:
    assert "vllm" in BACKENDS
    assert "vllm" not in sys.modules


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bidirectional": True}, "bidirectional=True is not available with backend='vllm'"),
        ({"device": "cuda:1"}, "device='cuda:1' does not apply to backend='vllm'"),
        ({"quantization": "4bit"}, "name a vLLM method: 'bitsandbytes', 'fp8'"),
        ({"pooler_config": {}}, "sets ['pooler_config'] itself"),
    ],
)
def test_settings_vllm_cannot_take_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as error:
        Encoder("smollm2", backend="vllm", **kwargs)
    assert message in str(error.value)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_missing_vllm_names_the_install() -> None:
    with pytest.raises(ImportError, match=r"pip install 'llmvec\[vllm\]'"):
        Encoder("smollm2", backend="vllm")
