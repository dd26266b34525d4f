"""Where a backend runs and in which dtype: the devices a user may name, the default one, and
the ``auto`` dtype for each."""

from __future__ import annotations

import torch

#: The devices a user names, for error messages (torch's other types are checked the same way).
DEVICE_NAMES = ("cpu", "cuda", "cuda:N", "mps", "xpu", "xpu:N")


def default_device() -> torch.device:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _device_count(kind: str) -> int:
    """How many devices of type ``kind`` torch can use here (``torch.cuda``, ``torch.mps``...)."""
    if kind == "cpu":
        return 1
    module = getattr(torch, kind, None)
    if module is None or not hasattr(module, "is_available") or not module.is_available():
        return 0
    return int(module.device_count())


def _present_devices() -> list[str]:
    """The CPU and each accelerator torch can use here."""
    accelerators = ("cuda", "mps", "xpu")
    return ["cpu"] + [f"{kind}:{i}" for kind in accelerators for i in range(_device_count(kind))]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on: ``None`` is :func:`default_device`; a name or ``torch.device`` must
    be one torch knows (``cpu``, ``cuda``, ``cuda:N``, ``mps``...) and present on this machine,
    else a ``ValueError`` says which is wrong and what is allowed or available."""
    if device is None:
        return default_device()
    if not isinstance(device, str | torch.device):
        raise TypeError(f"device must be a string, a torch.device or None, got {device!r}")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"unknown device {device!r}; allowed: {list(DEVICE_NAMES)} or None (the default: "
            "cuda, then mps, then cpu)"
        ) from None
    count = _device_count(resolved.type)
    if count == 0 or (resolved.index or 0) >= count:
        found = f"torch sees {count} {resolved.type} device{'s' if count != 1 else ''}"
        raise ValueError(
            f"device {device!r} is not available here ({found}); available: {_present_devices()}"
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto`` is float32 on CPU and bfloat16 (float16 where unsupported) on accelerators."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(
            f"unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16', 'float16' or a "
            "torch.dtype"
        )
    return resolved


def has_bf16_matmul(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: a CUDA device that supports
    bfloat16, or a CPU with AMX or AVX-512 bf16 units (Linux reports them in /proc/cpuinfo)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags
