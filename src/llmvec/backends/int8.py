"""Dynamic int8 linear layers on the CPU (``quantization="int8"``): weights stored as int8 per
output channel, activations quantized per batch, the matmuls in int8 through torch's own
quantized engine (FBGEMM / oneDNN on x86). Attention, norms and embeddings stay in float32."""

from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize_linear_layers(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Replace every ``nn.Linear`` of ``model`` (in place) by its dynamic int8 counterpart."""
    if device.type != "cpu":
        raise ValueError(
            f"quantization='int8' runs on the CPU, not on {device.type!r}; on a GPU use "
            "quantization='8bit' (bitsandbytes) or bfloat16"
        )
    if dtype != torch.float32:
        raise ValueError(f"quantization='int8' quantizes float32 weights; got dtype={dtype}")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch marks its eager quantization API for a future move to torchao; it is the
        # engine that runs int8 linear layers eagerly on x86 CPUs today.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
        # One scale per output channel: per-tensor scales cost MiniLM a cosine of 0.96 to its
        # float32 vectors, per-channel ones 0.98.
        qconfig = {nn.Linear: per_channel_dynamic_qconfig}
        quantize_dynamic(model, qconfig, dtype=torch.qint8, inplace=True)
