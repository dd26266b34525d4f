"""The GPU path's choices on this CPU-only machine: CUDA is mocked here (no GPU can run in
these tests), so these check llmvec's decisions (device, dtype, memory counters), not kernels.
The real CUDA run is the device check recorded in the issue notes when a GPU is lent."""

from __future__ import annotations

import pytest
import torch

from llmvec.backends.transformers import default_device, resolve_dtype
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
