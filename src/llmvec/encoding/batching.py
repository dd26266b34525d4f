"""Batches of token ids: length-sorted planning with least padding, and padding on the CPU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from llmvec.backends.base import TokenizedText

#: The fixed cost of one forward pass, in padded tokens: a batch is split off only where the
#: padding it saves is worth more. On a CPU, tens of small kernels per layer cost about as much
#: as a few dozen tokens' GEMM rows. On a GPU the host's work per pass dominates short batches
#: (measured on an H200: about 20 ms per 32-sentence batch for SmolLM2 and all-MiniLM-L6-v2,
#: where one token's kernels take about a microsecond), so a pass is worth about a thousand
#: tokens there, and a tail is split off only when it is long.
BATCH_OVERHEAD_TOKENS = 32
ACCELERATOR_BATCH_OVERHEAD_TOKENS = 1024


def batch_overhead_tokens(device: torch.device) -> int:
    """The planner's fixed cost of a forward pass on ``device``, in padded tokens."""
    return BATCH_OVERHEAD_TOKENS if device.type == "cpu" else ACCELERATOR_BATCH_OVERHEAD_TOKENS


def plan_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_tokens_per_batch: int | None = None,
    overhead_tokens: int = BATCH_OVERHEAD_TOKENS,
) -> list[list[int]]:
    """Group input positions into batches of at most ``batch_size`` inputs and (when given) at
    most ``max_tokens_per_batch`` padded tokens, with as little padding as possible.

    Inputs are sorted longest first and cut into runs; the cuts minimise the padded tokens plus
    ``overhead_tokens`` per batch (exactly, by dynamic programming: for this cost the best
    batches are runs of the sorted order). A long tail gets batches of its own instead of
    widening a full batch of shorter texts. Batches come longest first.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    widths = np.array([lengths[i] for i in order], dtype=np.int64)
    count = len(order)
    # cost[i]: the least cost of batching order[i:]; size[i]: the first batch's size there.
    cost = np.zeros(count + 1, dtype=np.int64)
    size = np.ones(count, dtype=np.int64)
    for start in range(count - 1, -1, -1):
        width = int(widths[start])
        most = min(batch_size, count - start)
        if max_tokens_per_batch is not None:
            most = max(1, min(most, max_tokens_per_batch // max(width, 1)))
        sizes = np.arange(1, most + 1)
        totals = cost[start + 1 : start + most + 1] + sizes * width + overhead_tokens
        # On ties the larger batch wins: fewer forward passes.
        best = most - 1 - int(np.argmin(totals[::-1]))
        cost[start] = totals[best]
        size[start] = best + 1
    batches: list[list[int]] = []
    start = 0
    while start < count:
        batches.append(order[start : start + int(size[start])])
        start += int(size[start])
    return batches


def pad_batch(
    batch: list[TokenizedText],
    skip: int,
    pad_token_id: int,
    padding_side: Literal["right", "left"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids, attention mask and pool mask of ``batch`` padded to one width, on the CPU. The first
    ``skip`` tokens (a shared prefix) stay in front of any left padding, so the rows read
    ``[prefix | padding | rest]``."""
    width = max(len(t.ids) for t in batch)
    ids_rows, attention_rows, pool_rows = [], [], []
    for item in batch:
        length, start = len(item.ids), item.pool_start
        gap = width - length
        # Tokens before the gap: the shared prefix with left padding, all of them with right.
        head = min(skip, length) if padding_side == "left" else length
        ids_rows.append([*item.ids[:head], *[pad_token_id] * gap, *item.ids[head:]])
        attention_rows.append([1] * head + [0] * gap + [1] * (length - head))
        pool_rows.append(
            [False] * min(start, head)
            + [True] * max(head - start, 0)
            + [False] * (gap + max(min(start, length) - head, 0))
            + [True] * (length - max(start, head))
        )
    return (
        torch.tensor(ids_rows, dtype=torch.long),
        torch.tensor(attention_rows, dtype=torch.long),
        torch.tensor(pool_rows, dtype=torch.bool),
    )
