"""The GPU path's choices on this CPU-only machine: CUDA is mocked here (no GPU can run in
these tests), so these check llmvec's decisions (device, dtype, memory counters), not kernels.
The real CUDA run is the device check recorded in the issue notes when a GPU is lent."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import llmvec.backends.transformers as transformers_backend
from llmvec import Encoder
from llmvec.backends.devices import default_device, resolve_device, resolve_dtype
from llmvec.backends.grouped_sdpa import GROUPED_SDPA
from llmvec.backends.transformers import default_attention
from llmvec.bench import PeakMemory

CUDA = torch.device("cuda")


def test_cuda_is_the_default_device_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == CUDA


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_dtype_on_cuda(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: torch.dtype
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert resolve_dtype("auto", CUDA) == expected
    assert resolve_dtype("float32", CUDA) == torch.float32


def test_peak_memory_reads_the_cuda_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    mib = 1024 * 1024
    allocated = {"now": 100 * mib, "peak": 100 * mib}

    def reset(device: torch.device) -> None:
        allocated["peak"] = allocated["now"]

    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: allocated["now"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: allocated["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    memory = PeakMemory(CUDA)  # the allocator's counters alone: no sampling thread on CUDA
    with memory:
        allocated["peak"] = 740 * mib  # a pass allocated 640 MiB more, then freed it
    assert memory.report() == {"peak_mib": 740.0, "added_mib": 640.0}


@pytest.mark.parametrize("installed", [True, False])
def test_flash_attention_is_the_default_on_cuda_in_half_precision_when_installed(
    monkeypatch: pytest.MonkeyPatch, installed: bool
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (SimpleNamespace() if installed else None)
            if name == "flash_attn"
            else find_spec(name, *a)
        ),
    )
    expected = "flash_attention_2" if installed else None
    assert default_attention(CUDA, torch.bfloat16) == expected
    assert default_attention(CUDA, torch.float16) == expected
    assert default_attention(CUDA, torch.float32) is None  # flash kernels are half precision
    assert default_attention(torch.device("cpu"), torch.bfloat16) is None


def test_the_default_attention_reaches_the_model_unless_one_is_chosen(
    monkeypatch: pytest.MonkeyPatch, tiny_llama: Path
) -> None:
    # A CPU stand-in for flash attention: "eager" is an implementation every model has.
    monkeypatch.setattr(transformers_backend, "default_attention", lambda device, dtype: "eager")
    chosen = Encoder(str(tiny_llama)).backend.model.config._attn_implementation  # type: ignore[union-attr]
    assert chosen == "eager"
    kept = Encoder(str(tiny_llama), attn_implementation="sdpa")
    assert kept.backend.model.config._attn_implementation == "sdpa"  # type: ignore[union-attr]


def test_an_attention_the_model_cannot_run_falls_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch, tiny_llama: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # flash_attention_2 without the package (or without CUDA) is refused by transformers.
    monkeypatch.setattr(
        transformers_backend, "default_attention", lambda device, dtype: "flash_attention_2"
    )
    with caplog.at_level("INFO", logger="llmvec.backends.transformers"):
        encoder = Encoder(str(tiny_llama))
    # transformers' default, SDPA, which llmvec runs with grouped heads on the CPU.
    assert encoder.backend.model.config._attn_implementation == GROUPED_SDPA  # type: ignore[union-attr]
    assert "flash_attention_2 unavailable here" in caplog.text
    assert encoder.encode(["still works"]).shape == (1, encoder.dim)


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that gets as far as loading a tokenizer or model."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the device was checked")

    monkeypatch.setattr(transformers_backend.AutoTokenizer, "from_pretrained", refuse)
    monkeypatch.setattr(transformers_backend.AutoModel, "from_pretrained", refuse)


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu"])
def test_an_unknown_device_is_named_with_the_allowed_ones(tiny_llama: Path, device: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown device '{device}'; allowed: \['cpu', 'cuda'"):
        Encoder(str(tiny_llama), device=device)


@pytest.mark.usefixtures("no_model_loads")
def test_cuda_on_a_machine_without_it_is_named(
    tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda' is not available here.*\['cpu'"):
        Encoder(str(tiny_llama), device="cuda")


@pytest.mark.usefixtures("no_model_loads")
def test_a_cuda_index_beyond_the_gpus_is_named(
    tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"'cuda:2' is not available here \(torch sees 2 cuda"):
        Encoder(str(tiny_llama), device="cuda:2")


def test_the_static_backend_checks_its_device() -> None:
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Encoder("wordllama", backend="static", device="tpu")


def test_resolve_device_keeps_what_is_here() -> None:
    assert resolve_device(None) == default_device()
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(TypeError, match=r"device must be a string.*got 0"):
        resolve_device(0)  # type: ignore[arg-type]
