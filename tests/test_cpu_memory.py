"""Freed CPU memory is kept while encoding (no page faults for the next batch) and given back
after: measured with the process's own page-fault counter and resident size."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from llmvec import Encoder
from llmvec.backends import cpu_memory
from llmvec.bench import _resident_bytes

pytestmark = pytest.mark.skipif(not cpu_memory.supported(), reason="needs glibc")

BLOCK = 64 << 20  # above every glibc threshold: mmapped and unmapped by default

# Page faults of allocating, filling and freeing a 64 MiB tensor, after one warm round, in a
# fresh process (glibc's default state, and a heap no earlier test has shaped).
REALLOCATION_FAULTS = f"""
import json, resource, torch
from llmvec.backends import cpu_memory

def faults(rounds=8):
    torch.ones({BLOCK} // 4)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        torch.ones({BLOCK} // 4)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
with cpu_memory.reuse_freed_memory():
    kept = faults()
print(json.dumps({{"default": default, "kept": kept}}))
"""


def test_freed_blocks_are_reused_without_page_faults() -> None:
    run = subprocess.run(
        [sys.executable, "-c", REALLOCATION_FAULTS], capture_output=True, text=True, check=True
    )
    faults = json.loads(run.stdout)
    pages_per_block = BLOCK // resource.getpagesize()
    assert faults["default"] >= 8 * pages_per_block  # every round faults its block in again
    # Kept: at most a second block while the heap settles (an alignment that misses the hole).
    assert faults["kept"] <= 2 * pages_per_block


def test_leaving_gives_the_kept_memory_back() -> None:
    with cpu_memory.reuse_freed_memory():
        block = torch.ones(4 * BLOCK // 4)
        del block
        kept = _resident_bytes()
    assert kept - _resident_bytes() > 3 * BLOCK


def test_nested_and_concurrent_uses_keep_it_until_the_last_leaves() -> None:
    entered, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        with cpu_memory.reuse_freed_memory():
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=other_thread)
    worker.start()
    entered.wait(10)
    with cpu_memory.reuse_freed_memory(), cpu_memory.reuse_freed_memory():
        assert cpu_memory.active()
    assert cpu_memory.active()  # the other thread is still inside
    release.set()
    worker.join()
    assert not cpu_memory.active()


def test_cpu_encoding_runs_with_freed_memory_kept(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), pooling="mean", device="cpu")
    seen: list[bool] = []
    handle = encoder.backend.model.register_forward_pre_hook(
        lambda *_: seen.append(cpu_memory.active())
    )
    try:
        encoder.encode(["one text", "and another, a little longer"], batch_size=1)
    finally:
        handle.remove()
    assert seen and all(seen)
    assert not cpu_memory.active()
