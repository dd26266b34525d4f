"""The Encoder on tiny random models of every architecture: correctness rules of the design."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from llmvec import EmbeddingSpec, Encoder
from llmvec.encoding.batching import (
    ACCELERATOR_BATCH_OVERHEAD_TOKENS,
    BATCH_OVERHEAD_TOKENS,
    batch_overhead_tokens,
    plan_batches,
)
from llmvec.encoding.pooling import POOLING_METHODS
from llmvec.testing import TINY_ARCHITECTURES, row_cosines

TEXTS = [
    "A man is playing a guitar.",
    "Paris",
    "",
    "The essence of a sentence is often captured by its main subjects and actions while",
    "Scientists found that proteins fold; stock markets fell 3% on Monday.",
]


@pytest.fixture(scope="module")
def encoders(tiny_models: dict[str, Path]) -> dict[tuple[str, str], Encoder]:
    return {
        (arch, side): Encoder(str(tiny_models[arch]), padding_side=side, batch_size=8)
        for arch in TINY_ARCHITECTURES
        for side in ("left", "right")
    }


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("template", [None, "prompteol"])
@pytest.mark.parametrize("method", POOLING_METHODS)
def test_batch_invariance(
    encoders: dict[tuple[str, str], Encoder],
    arch: str,
    side: str,
    template: str | None,
    method: str,
) -> None:
    encoder = encoders[(arch, side)]
    kwargs = {"pooling_method": method, "prompt_template": template, "layer_index": -1}
    batched = encoder.encode(TEXTS, **kwargs)
    alone = np.concatenate([encoder.encode(text, **kwargs) for text in TEXTS])
    assert np.isfinite(batched).all()
    assert row_cosines(batched, alone).min() > 0.9999


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_padding_side_does_not_change_vectors(
    encoders: dict[tuple[str, str], Encoder], arch: str
) -> None:
    left = encoders[(arch, "left")].encode(TEXTS, pooling_method="mean")
    right = encoders[(arch, "right")].encode(TEXTS, pooling_method="mean")
    assert row_cosines(left, right).min() > 0.9999


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_every_layer_matches_output_hidden_states(
    encoders: dict[tuple[str, str], Encoder], arch: str
) -> None:
    encoder = encoders[(arch, "right")]
    text = "A man is playing a guitar."
    (item,) = encoder.tokenize(text)
    ids = torch.tensor([item.ids])
    with torch.no_grad():
        reference = encoder.backend.model(ids, output_hidden_states=True).hidden_states  # type: ignore[attr-defined]
    n = encoder.backend.num_layers
    assert len(reference) == n + 1
    for layer in range(-(n + 1), n + 1):
        got = encoder.encode(text, layer_index=layer, pooling_method="mean", normalize=False)
        expected = reference[layer][0, item.pool_start :].mean(0)
        np.testing.assert_allclose(got[0], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_compute_stops_at_the_requested_layer(encoders: dict[tuple[str, str], Encoder]) -> None:
    encoder = encoders[("llama", "right")]
    calls: list[int] = []
    layers = encoder.backend.layers  # type: ignore[attr-defined]
    handles = [
        layer.register_forward_hook(lambda *args, i=i: calls.append(i))
        for i, layer in enumerate(layers)
    ]
    try:
        encoder.encode("hello there", layer_index=1)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [0]


def test_last_eos_and_mean_differ(encoders: dict[tuple[str, str], Encoder]) -> None:
    encoder = encoders[("llama", "right")]
    text = "A man is playing a guitar."
    vectors = {
        m: encoder.encode(text, pooling_method=m)[0] for m in ("last_token", "eos_token", "mean")
    }
    assert abs(vectors["last_token"] @ vectors["eos_token"]) < 0.9999
    assert abs(vectors["last_token"] @ vectors["mean"]) < 0.9999
    assert abs(vectors["eos_token"] @ vectors["mean"]) < 0.9999


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_special_tokens_are_explicit(encoders: dict[tuple[str, str], Encoder], arch: str) -> None:
    encoder = encoders[(arch, "right")]
    tokenizer = encoder.backend.tokenizer
    (plain,) = encoder.tokenize("hello world")
    (with_eos,) = encoder.tokenize("hello world", pooling_method="eos_token")
    assert with_eos.ids[-1] == tokenizer.eos_token_id
    assert plain.ids[-1] != tokenizer.eos_token_id
    adds_bos = arch in ("llama", "mistral", "gemma")
    assert (plain.ids[0] == tokenizer.bos_token_id) is adds_bos
    # BOS conditions the text but is never pooled.
    assert tokenizer.bos_token_id not in plain.ids[plain.pool_start :]


def test_add_bos_can_be_forced(tiny_models: dict[str, Path]) -> None:
    qwen = Encoder(str(tiny_models["qwen2"]), add_bos=True)
    (item,) = qwen.tokenize("hello")
    assert item.ids[0] == qwen.backend.tokenizer.bos_token_id
    assert item.pool_start == 1
    assert ("add_bos", "true") in qwen.spec.extra
    llama = Encoder(str(tiny_models["llama"]), add_bos=False)
    assert llama.tokenize("hello")[0].ids[0] != llama.backend.tokenizer.bos_token_id


@pytest.mark.parametrize("fmt", ["e5", "qwen3", "nv-embed"])
def test_instruction_tokens_are_excluded_from_pooling(tiny_llama: Path, fmt: str) -> None:
    encoder = Encoder(
        str(tiny_llama),
        query_instruction="Given a question, retrieve passages",
        instruction_format=fmt,
    )
    tokenizer = encoder.backend.tokenizer
    text = "what is the capital of France?"
    (item,) = encoder.tokenize(text, instruction=encoder.query_instruction)
    pooled_text = tokenizer.decode(item.ids[item.pool_start :])
    assert pooled_text.strip() == text
    prefix_text = tokenizer.decode(item.ids[: item.pool_start], skip_special_tokens=True)
    assert prefix_text.startswith("Instruct: Given a question, retrieve passages\nQuery:")
    # The query vector is the mean over exactly those positions of a full forward pass.
    ids = torch.tensor([item.ids])
    with torch.no_grad():
        states = encoder.backend.model(ids).last_hidden_state[0]  # type: ignore[attr-defined]
    expected = states[item.pool_start :].mean(0).numpy()
    got = encoder.encode_queries(text, normalize=False)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # Documents get no instruction, so the same text gives another vector.
    document = encoder.encode_documents(text, normalize=False)[0]
    assert not np.allclose(document, got)


def test_smart_defaults(tiny_llama: Path) -> None:
    n = Encoder(str(tiny_llama)).backend.num_layers
    cases = [
        ({}, ("mean", None, n)),
        ({"template": "prompteol"}, ("last_token", "prompteol", n)),
        ({"template": "pcoteol"}, ("last_token", "pcoteol", n - 1)),
        ({"template": "ke"}, ("last_token", "ke", n - 1)),
        ({"template": "ke", "pooling": "mean", "layer": -1}, ("mean", "ke", n)),
    ]
    for kwargs, (pooling, template, layer) in cases:
        recipe = Encoder(str(tiny_llama), **kwargs).recipe
        assert recipe.pooling == pooling
        assert (recipe.template is None) is (template is None)
        assert recipe.layer == layer
    # Per-call template follows the same rules.
    encoder = Encoder(str(tiny_llama))
    assert encoder.recipe.for_call(None, "ke", None, n).layer == n - 1


def test_output_types_and_shapes(encoders: dict[tuple[str, str], Encoder]) -> None:
    encoder = encoders[("qwen2", "right")]
    single = encoder.encode("one")
    assert single.shape == (1, encoder.dim) and single.dtype == np.float32
    empty = encoder.encode([])
    assert empty.shape == (0, encoder.dim)
    tensor = encoder.encode(["a", "b"], convert_to="torch")
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (2, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(encoder.encode(TEXTS), axis=1), 1.0, rtol=1e-5)


def test_truncate_dim_truncates_then_normalizes(tiny_llama: Path) -> None:
    full = Encoder(str(tiny_llama), normalize=False).encode(TEXTS)
    small = Encoder(str(tiny_llama), truncate_dim=16)
    got = small.encode(TEXTS)
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert small.dim == 16 and small.spec.dim == 16 and small.spec.truncate_dim == 16


def test_empty_string_is_finite(encoders: dict[tuple[str, str], Encoder]) -> None:
    for (_arch, _side), encoder in encoders.items():
        for method in POOLING_METHODS:
            assert np.isfinite(encoder.encode("", pooling_method=method)).all()


def test_spec_round_trip_and_differences(tiny_llama: Path) -> None:
    encoder = Encoder(
        str(tiny_llama), template="ke", query_instruction="Find", instruction_format="qwen3"
    )
    spec = encoder.spec
    assert EmbeddingSpec.from_json(spec.to_json()) == spec
    assert spec.layer == encoder.backend.num_layers - 1
    assert spec.instruction_format == "Instruct: {task}\nQuery:{text}"
    assert spec.model_revision and spec.model_revision.startswith("sha256:")
    other = Encoder(str(tiny_llama), template="prompteol").spec
    assert set(spec.differences(other)) >= {"template", "layer", "query_instruction"}
    with pytest.raises(ValueError, match="template"):
        spec.check_compatible(other)
    # The same weights at another path are the same model.
    assert spec.replace(model="/elsewhere").differences(spec) == []


def _padded_cost(lengths: list[int], batches: list[list[int]], overhead: int) -> int:
    return sum(len(b) * max(lengths[i] for i in b) + overhead for b in batches)


def _best_cost_by_brute_force(
    lengths: list[int], batch_size: int, budget: int | None, overhead: int
) -> int:
    """Every way to cut the longest-first order into contiguous batches, tried one by one."""
    ordered = sorted(lengths, reverse=True)
    best = None
    for mask in itertools.product([False, True], repeat=len(ordered) - 1):
        groups, current = [], [ordered[0]]
        for length, cut in zip(ordered[1:], mask, strict=True):
            if cut:
                groups.append(current)
                current = []
            current.append(length)
        groups.append(current)
        if any(len(g) > batch_size for g in groups):
            continue
        if budget is not None and any(len(g) > 1 and len(g) * g[0] > budget for g in groups):
            continue
        cost = sum(len(g) * g[0] + overhead for g in groups)
        best = cost if best is None else min(best, cost)
    assert best is not None
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("batch_size", "budget"), [(3, None), (4, 120), (9, None)])
def test_plan_batches_minimises_padding(seed: int, batch_size: int, budget: int | None) -> None:
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(5, 15), rng.randint(40, 60)]) for _ in range(9)]
    batches = plan_batches(lengths, batch_size, budget, overhead_tokens=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= batch_size for b in batches)
    assert _padded_cost(lengths, batches, 8) == _best_cost_by_brute_force(
        lengths, batch_size, budget, 8
    )


def test_plan_batches_splits_a_long_tail_off() -> None:
    # One long text among short ones: a fixed cut of 8 would pad seven texts to its length.
    lengths = [200] + [10] * 15
    batches = plan_batches(lengths, batch_size=8, overhead_tokens=32)
    assert [0] in batches
    assert _padded_cost(lengths, batches, 0) == 200 + 15 * 10


def test_a_gpu_plans_fewer_passes_but_still_splits_a_long_tail() -> None:
    """On a GPU a pass costs about a thousand tokens (host work), on a CPU a few dozen."""
    assert batch_overhead_tokens(torch.device("cpu")) == BATCH_OVERHEAD_TOKENS
    assert batch_overhead_tokens(torch.device("cuda")) == ACCELERATOR_BATCH_OVERHEAD_TOKENS
    assert batch_overhead_tokens(torch.device("mps")) == ACCELERATOR_BATCH_OVERHEAD_TOKENS
    rng = random.Random(0)
    sentences = [rng.randint(6, 40) for _ in range(250)]  # short sentences, as in STS-B
    on_cpu = plan_batches(sentences, 32, overhead_tokens=BATCH_OVERHEAD_TOKENS)
    on_gpu = plan_batches(sentences, 32, overhead_tokens=ACCELERATOR_BATCH_OVERHEAD_TOKENS)
    assert len(on_gpu) == -(-250 // 32) < len(on_cpu)
    documents = [4000] + [10] * 31  # padding 31 short texts to 4,000 tokens costs far more
    assert [0] in plan_batches(documents, 32, overhead_tokens=ACCELERATOR_BATCH_OVERHEAD_TOKENS)


def test_max_tokens_per_batch(tiny_llama: Path) -> None:
    lengths = [100, 3, 4, 90, 5, 6]
    batches = plan_batches(lengths, batch_size=4, max_tokens_per_batch=200)
    assert sorted(i for batch in batches for i in batch) == list(range(6))
    for batch in batches:
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 200
    encoder = Encoder(str(tiny_llama), max_tokens_per_batch=16)
    reference = Encoder(str(tiny_llama)).encode(TEXTS)
    np.testing.assert_allclose(encoder.encode(TEXTS), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pooling": "max"}, ValueError, "allowed"),
        ({"template": "no slot"}, ValueError, "template"),
        ({"layer": 99}, ValueError, "layer 99 is out of range"),
        ({"layer": -5}, ValueError, "allowed -4 to 3"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"instruction_format": "bogus"}, ValueError, "instruction_format"),
        ({"padding_side": "middle"}, ValueError, "padding_side"),
        ({"backend": "onnx"}, ValueError, "unknown backend 'onnx'"),
        ({"dtype": "int3"}, ValueError, "dtype"),
        ({"truncate_dim": 1000}, ValueError, "truncate_dim=1000"),
    ],
)
def test_bad_encoder_arguments(
    tiny_llama: Path, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Encoder(str(tiny_llama), **kwargs)  # type: ignore[arg-type]


def test_bad_encode_inputs(encoders: dict[tuple[str, str], Encoder]) -> None:
    encoder = encoders[("llama", "right")]
    with pytest.raises(TypeError, match="texts"):
        encoder.encode(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        encoder.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["ok"], batch_size=0)
    with pytest.raises(ValueError, match="convert_to"):
        encoder.encode(["ok"], convert_to="jax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown pooling method 'sum'"):
        encoder.encode(["ok"], pooling_method="sum")


def test_static_model_needs_the_static_backend() -> None:
    with pytest.raises(ValueError, match="backend='static'"):
        Encoder("wordllama")


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf"):
        Encoder(str(tmp_path / "missing.gguf"))


@pytest.mark.parametrize("path", ["a/missing/folder", "./missing-model", "~/missing-model", "abs"])
def test_a_missing_folder_is_named(tmp_path: Path, path: str) -> None:
    model = str(tmp_path / "missing-model") if path == "abs" else path
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(repr(model))} does not exist"):
        Encoder(model)


def test_a_hub_id_not_cached_offline_is_one_clear_line() -> None:
    # conftest.py runs the tests offline (HF_HUB_OFFLINE=1).
    with pytest.raises(OSError, match=r"'nobody/no-such-model'.*neither a packaged model") as error:
        Encoder("nobody/no-such-model")
    assert "offline mode" in str(error.value)
    assert "\n" not in str(error.value)
