"""Throughput of an encoder on a set of texts, next to a peer library on the same texts.

:func:`run_bench` measures sentences and tokens per second, peak memory, the floating-point
work of the forward passes (counted by :class:`torch.utils.flop_counter.FlopCounterMode` on an
untimed pass) and the fraction of this machine's dense matmul rate (:func:`matmul_peak`, in the
encoder's dtype, measured in the same run) that the encoder reaches. With a peer
(:data:`PEERS`: ``llemb``, ``sentence-transformers``) both libraries take turns on chunks of
the texts, so that load from other processes falls on both alike, and the report holds the
speed ratio and the cosine between the two libraries' vectors.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from llmvec.backends import Backend
from llmvec.choices import BENCH_PEERS
from llmvec.compress import normalize
from llmvec.encoder import Encoder
from llmvec.encoding.templates import template_name
from llmvec.models import gguf_as_folder, resolve_model
from llmvec.optional import require

EncodeFunction = Callable[[list[str]], Any]
_INSTALL_PEERS = "the peer {peer!r} is not installed: pip install 'llmvec[bench]'"


# ---------------------------------------------------------------------- machine peak
class MatmulPeak(NamedTuple):
    """A measured dense matmul rate and the square matrix size it was measured on."""

    flop_per_s: float
    size: int


def matmul_peak(
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    size: int = 2048,
    repeats: int = 20,
    seconds_per_product: float = 0.25,
) -> MatmulPeak:
    """This machine's dense matmul rate in FLOP/s: the best of ``repeats`` products of two
    ``size`` x ``size`` matrices in ``dtype`` on ``device``, with torch's current threads, into
    a preallocated output (the kernel's rate, not the allocator's page faults).

    A probe at 512 first: where one product of ``size`` would take longer than
    ``seconds_per_product`` (bfloat16 on a CPU without bf16 units runs near 1 GFLOP/s, a
    2048 product in 20 s), the size drops to the largest multiple of 256 that fits, so the
    measurement takes seconds on every machine."""
    probe = min(size, 512)
    rate = _product_rate(dtype, device, probe, repeats=3)
    fitting = 256 * int((rate * seconds_per_product / 2) ** (1 / 3) // 256)
    chosen = min(size, fitting)
    if chosen <= probe:
        return MatmulPeak(rate, probe)
    return MatmulPeak(_product_rate(dtype, device, chosen, repeats), chosen)


def _product_rate(dtype: torch.dtype, device: torch.device | str, size: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    product = torch.mm(a, b)  # warm-up: kernel selection, first-touch of memory
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        began = time.perf_counter()
        torch.mm(a, b, out=product)
        _synchronize(device)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def _synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------- memory
def _resident_bytes() -> int:
    """This process's resident memory now (Linux), else its peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """Peak resident memory (CPU, sampled every few milliseconds by a thread) or peak allocated
    CUDA memory (the allocator's own counter) over every ``with`` block it guards, and the most
    it rose within one block."""

    def __init__(self, device: torch.device, interval: float = 0.01) -> None:
        self.device = device
        self.interval = interval
        self.peak = 0
        self.added = 0
        self._start = 0
        self._block_peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _now(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        return _resident_bytes()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._block_peak = max(self._block_peak, self._now())

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._start = self._block_peak = self._now()
        if self.device.type != "cuda":  # CUDA keeps its own peak; no thread competes for the GIL
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.device.type == "cuda":
            self._block_peak = max(
                self._block_peak, int(torch.cuda.max_memory_allocated(self.device))
            )
        self._block_peak = max(self._block_peak, self._now())
        self.peak = max(self.peak, self._block_peak)
        self.added = max(self.added, self._block_peak - self._start)

    def report(self) -> dict[str, float]:
        """``peak_mib`` (the process's, or CUDA's total) and ``added_mib`` (the most one block
        added to what was in use when it started)."""
        mib = 1024 * 1024
        return {"peak_mib": round(self.peak / mib, 1), "added_mib": round(self.added / mib, 1)}


# ---------------------------------------------------------------------- peers
@dataclass(frozen=True)
class Peer:
    """A peer library set up to compute the encoder's recipe on the same model."""

    name: str
    version: str
    encode: EncodeFunction
    #: The peer's call, for the report.
    arguments: dict[str, Any]
    #: Where the peer's recipe is known to differ from llmvec's (its vectors will too).
    differences: tuple[str, ...] = ()
    #: The folder or hub id the peer loaded the model from.
    model: str = ""


def _model_folder(encoder: Encoder) -> str:
    """The encoder's model as a folder or hub id a peer can load (GGUF files are rebuilt)."""
    location = resolve_model(encoder.model_name)
    if location.gguf_file is not None:
        return str(gguf_as_folder(location))
    return location.name_or_path


def _require_plain_recipe(encoder: Encoder, peer: str) -> None:
    if encoder.truncate_dim is not None:
        raise ValueError(f"--compare {peer} cannot truncate dimensions; leave out truncate_dim")
    if encoder.backend.name != "transformers":
        raise ValueError(
            f"--compare {peer} needs backend='transformers', not {encoder.backend.name!r}"
        )


def _llemb(encoder: Encoder, batch_size: int) -> Peer:
    """llemb 0.3.0 with the same pooling, paper template and layer."""
    _require_plain_recipe(encoder, "llemb")
    recipe = encoder.recipe
    name = template_name(recipe.template)
    if recipe.template is not None and name is None:
        raise ValueError("--compare llemb supports only the named templates prompteol/pcoteol/ke")
    if recipe.pooling not in ("mean", "last_token", "eos_token"):
        raise ValueError(f"llemb pools with mean, last_token or eos_token, not {recipe.pooling!r}")
    llemb = require("llemb", _INSTALL_PEERS.format(peer="llemb"))
    backend = encoder.backend
    assert isinstance(backend, Backend)
    folder = _model_folder(encoder)
    model = llemb.Encoder(folder, device=str(backend.device), dtype=backend.dtype)
    differences: list[str] = []
    if name in ("prompteol", "pcoteol"):
        differences.append(
            f"llemb's {name} string is not the paper's (its capitalisation or spacing differs)"
        )
    if recipe.pooling == "mean" and encoder.tokenize("probe")[0].pool_start > 0:
        differences.append("llemb's mean includes the BOS token, which llmvec never pools")
    arguments = {
        "pooling_method": recipe.pooling,
        "prompt_template": name,
        # llemb indexes the hidden-state tuple, counting back from the last layer.
        "layer_index": recipe.layer - (backend.num_layers + 1),
        "batch_size": batch_size,
    }
    return Peer(
        "llemb",
        _version("llemb"),
        lambda texts: model.encode(texts, **arguments),
        arguments,
        tuple(differences),
        folder,
    )


def _sentence_transformers(encoder: Encoder, batch_size: int) -> Peer:
    """sentence-transformers with the model's own pooling (mean unless configured otherwise)."""
    _require_plain_recipe(encoder, "sentence-transformers")
    recipe = encoder.recipe
    if recipe.template is not None or recipe.pooling != "mean":
        raise ValueError(
            "--compare sentence-transformers runs the model's own (mean) pooling without a "
            f"template; this encoder uses pooling={recipe.pooling!r} with a template"
            if recipe.template
            else f"--compare sentence-transformers needs pooling='mean', not {recipe.pooling!r}"
        )
    module = require("sentence_transformers", _INSTALL_PEERS.format(peer="sentence-transformers"))
    backend = encoder.backend
    folder = _model_folder(encoder)
    model = module.SentenceTransformer(
        folder, device=str(backend.device), model_kwargs={"dtype": backend.dtype}
    )
    model.max_seq_length = encoder.max_length
    arguments = {"batch_size": batch_size, "normalize_embeddings": True}
    return Peer(
        "sentence-transformers",
        _version("sentence-transformers"),
        lambda texts: model.encode(texts, show_progress_bar=False, **arguments),
        arguments,
        model=folder,
    )


#: Peer name (:data:`llmvec.choices.BENCH_PEERS`) -> a function that sets the peer up for an
#: encoder's recipe and batch size.
PEERS: dict[str, Callable[[Encoder, int], Peer]] = dict(
    zip(BENCH_PEERS, (_llemb, _sentence_transformers), strict=True)
)


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


# ---------------------------------------------------------------------- measurement
def read_texts(path: str | Path, limit: int | None = None) -> list[str]:
    """The non-empty lines of a text file, the first ``limit`` of them when given."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{str(file)!r} is not a file of texts (one per line)")
    texts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    texts = [text for text in texts if text]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"the number of texts must be positive, got {limit}")
        texts = texts[:limit]
    if not texts:
        raise ValueError(f"{str(file)!r} holds no text")
    return texts


def _as_array(output: Any) -> np.ndarray:
    if isinstance(output, torch.Tensor):
        output = output.detach().to("cpu", torch.float32).numpy()
    return np.asarray(output, dtype=np.float32)


def _chunks(texts: list[str], count: int) -> list[list[str]]:
    size = -(-len(texts) // max(1, min(count, len(texts))))
    return [texts[start : start + size] for start in range(0, len(texts), size)]


def attention_flops(
    query_shape: Sequence[int],
    key_shape: Sequence[int],
    value_shape: Sequence[int],
    *_: Any,
    **__: Any,
) -> int:
    """The two products of scaled-dot-product attention, ``2·b·h·s_q·s_k·(d + d_v)`` with ``h``
    the query heads: grouped-query key/value heads count as broadcast to every query head.

    torch 2.11's own formula for the fused CUDA kernels rejects grouped-query shapes, which
    transformers passes to those kernels (``enable_gqa``) in half precision, and torch has no
    formula for the CPU's fused kernel at all: its attention would count as free."""
    batch, heads, queries, dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * (dim + value_dim)


_FUSED_ATTENTION = {
    getattr(torch.ops.aten, name): attention_flops
    for name in (
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    )
    if hasattr(torch.ops.aten, name)
}


def _warm_up(function: EncodeFunction, parts: list[list[str]], count_flops: bool) -> int | None:
    """Run ``function`` once over ``parts``; return the FLOPs it did when ``count_flops``.

    FLOPs are counted with compiled code off (the counter sees every operation eagerly; under
    the counter, torch.compile's code also runs slower for the rest of the process)."""
    if not count_flops:
        for part in parts:
            function(part)
        return None
    counter = FlopCounterMode(display=False, custom_mapping=_FUSED_ATTENTION)
    with torch.compiler.set_stance("force_eager"), counter:
        for part in parts:
            function(part)
    return int(counter.get_total_flops())


def run_bench(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    compare: str | None = None,
    batch_size: int | None = None,
    repeats: int = 1,
    chunks: int = 4,
    matmul_size: int | None = None,
) -> dict[str, Any]:
    """Measure ``encoder`` (and ``compare``, a name in :data:`PEERS`) on ``texts``.

    Each library first encodes every chunk once, untimed (a warm-up: the first pass over new
    batch shapes is several times slower) that also counts its FLOPs (vLLM's engine, outside
    this process, is not counted); a compiled encoder makes one more pass, which compiles.
    Then the libraries take turns on the chunks, ``repeats`` times. The peak is measured on
    ``matmul_size`` square matrices (default 2048 on a CPU, 8192 on a GPU, where a smaller
    product is too short to time; less where the dtype is slow, see :func:`matmul_peak`).
    Returns a JSON-ready report.
    """
    items = list(texts)
    if not items:
        raise ValueError("no texts to measure")
    if repeats < 1 or chunks < 1:
        raise ValueError(f"repeats and chunks must be positive, got {repeats} and {chunks}")
    if compare is not None and compare not in PEERS:
        raise ValueError(f"unknown peer {compare!r}; allowed: {sorted(PEERS)}")
    batch_size = encoder.batch_size if batch_size is None else batch_size
    backend = encoder.backend
    dtype = torch.float32 if backend.dtype is None else backend.dtype
    tokens = sum(len(item.ids) for item in encoder.tokenize(items))
    parts = _chunks(items, chunks)

    def ours(part: list[str]) -> Any:
        return encoder.encode(part, batch_size=batch_size, show_progress=False)

    functions: list[tuple[str, EncodeFunction]] = [("llmvec", ours)]
    peer = PEERS[compare](encoder, batch_size) if compare is not None else None
    if peer is not None:
        functions.append((peer.name, peer.encode))

    # Warm-up on the very chunks timed below, counting each library's floating-point work
    # (an engine outside this process, vLLM, cannot be counted).
    if isinstance(backend, Backend):
        ours(parts[0][:1])  # builds the shared-prefix cache, which later passes reuse
    flops: dict[str, int | None] = {}
    for name, function in functions:
        countable = name != "llmvec" or isinstance(backend, Backend)
        flops[name] = _warm_up(function, parts, countable)
    compiled = backend.compiled
    if compiled:
        _warm_up(ours, parts, count_flops=False)  # compiles for these shapes

    seconds = {name: 0.0 for name, _ in functions}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name, _ in functions}
    memory = {name: PeakMemory(backend.device) for name, _ in functions}
    for repeat in range(repeats):
        for part in parts:
            for name, function in functions:
                with memory[name]:
                    began = time.perf_counter()
                    output = function(part)
                    _synchronize(backend.device)
                    seconds[name] += time.perf_counter() - began
                if repeat == 0:
                    vectors[name].append(_as_array(output))

    runs = len(items) * repeats
    if matmul_size is None:
        matmul_size = 2048 if torch.device(backend.device).type == "cpu" else 8192
    peak, matmul_size = matmul_peak(dtype, backend.device, size=matmul_size)
    results: dict[str, Any] = {}
    for name, _ in functions:
        entry: dict[str, Any] = {
            "seconds": round(seconds[name], 6),
            "sentences_per_s": round(runs / seconds[name], 2),
            "tokens_per_s": round(tokens * repeats / seconds[name], 1),
            "memory": memory[name].report(),
        }
        results[name] = entry
    for name, work in flops.items():
        if work is not None:
            results[name]["flop_per_pass"] = work
            results[name]["gflop_per_s"] = round(work * repeats / seconds[name] / 1e9, 2)
    if flops["llmvec"] is not None:
        achieved = flops["llmvec"] * repeats / seconds["llmvec"]
        results["llmvec"]["fraction_of_matmul_peak"] = achieved / peak
    report: dict[str, Any] = {
        "texts": len(items),
        "tokens": tokens,
        "batch_size": batch_size,
        "repeats": repeats,
        "chunks": len(parts),
        "threads": torch.get_num_threads(),
        "device": str(backend.device),
        "dtype": str(dtype).removeprefix("torch."),
        "compiled": compiled,
        "spec": encoder.spec.to_dict(),
        "matmul_peak_gflop_per_s": round(peak / 1e9, 2),
        "matmul_size": matmul_size,
        "results": results,
    }
    if peer is not None:
        agreement = np.sum(
            normalize(np.concatenate(vectors["llmvec"]))
            * normalize(np.concatenate(vectors[peer.name])),
            axis=1,
        )
        report["peer"] = {
            "name": peer.name,
            "version": peer.version,
            "arguments": peer.arguments,
            "ratio": round(seconds[peer.name] / seconds["llmvec"], 3),
            # How much more floating-point work the peer does for the same vectors.
            "work_ratio": (
                round(theirs / ours_flops, 3)
                if (theirs := flops[peer.name]) and (ours_flops := flops["llmvec"])
                else None
            ),
            "cosine_min": float(agreement.min()),
            "cosine_mean": float(agreement.mean()),
            "known_differences": list(peer.differences),
        }
    return report
