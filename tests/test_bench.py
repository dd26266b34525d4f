"""`llmvec bench` and llmvec.bench: rates, FLOPs of only the layers run, peers on the same texts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from llmvec import Encoder
from llmvec.bench import PEERS, attention_flops, matmul_peak, read_texts, run_bench
from llmvec.cli import main

WORDS = ["cats", "dogs", "rain", "the sun", "a long and winding road", "tea"] * 2
TEXTS = [f"sentence number {i} about {word}" for i, word in enumerate(WORDS)]


def test_matmul_peak_is_a_rate() -> None:
    rate, size = matmul_peak(torch.float32, "cpu", size=256, repeats=2)
    assert math.isfinite(rate) and rate > 1e6 and size == 256


def test_matmul_peak_shrinks_a_product_that_would_be_slow() -> None:
    # A product of 1,024 takes 2 GFLOP; a thousandth of a second fits only the 512 probe.
    rate, size = matmul_peak(torch.float32, "cpu", size=1024, seconds_per_product=1e-3)
    assert size == 512 and rate > 1e6
    assert matmul_peak(torch.float32, "cpu", size=1024, seconds_per_product=60)[1] == 1024


@pytest.mark.parametrize("kv_heads", [9, 3])  # multi-head, grouped-query (SmolLM2's 9 / 3)
def test_attention_flops_match_torch_formula(kv_heads: int) -> None:
    from torch.utils.flop_counter import sdpa_flop_count  # accepts grouped-query shapes in 2.13

    query, key, value = (2, 9, 40, 64), (2, kv_heads, 40, 64), (2, kv_heads, 40, 64)
    assert attention_flops(query, key, value) == sdpa_flop_count(query, key, value)


def test_cpu_attention_work_is_counted(tiny_llama: Path) -> None:
    """torch's counter has no formula for the CPU's fused attention kernel, which would count
    attention as free: doubling a text doubles the rest of the work, attention's grows 4x."""
    encoder = Encoder(str(tiny_llama), pooling="mean", device="cpu")
    config = encoder.backend.model.config  # type: ignore[union-attr]
    head_dim = config.hidden_size // config.num_attention_heads
    query_heads, kv_heads = config.num_attention_heads, config.num_key_value_heads

    def attention(length: int) -> int:
        query, key = (1, query_heads, length, head_dim), (1, kv_heads, length, head_dim)
        return attention_flops(query, key, key)

    counted = {}
    for words in (30, 60):
        report = run_bench(encoder, ["word " * words], chunks=1)
        counted[report["tokens"]] = report["results"]["llmvec"]["flop_per_pass"]
    (short, short_flops), (long, long_flops) = sorted(counted.items())
    quadratic_part = long_flops - long / short * short_flops
    expected = encoder.backend.num_layers * (attention(long) - long / short * attention(short))
    assert quadratic_part == pytest.approx(expected, rel=0.01)


def test_report_counts_tokens_and_only_the_layers_run(tiny_llama: Path) -> None:
    reports = {
        layer: run_bench(Encoder(str(tiny_llama), layer=layer), TEXTS, chunks=2)
        for layer in (1, 2, 3)
    }
    encoder = Encoder(str(tiny_llama))
    assert reports[3]["tokens"] == sum(len(t.ids) for t in encoder.tokenize(TEXTS))
    flops = {layer: r["results"]["llmvec"]["flop_per_pass"] for layer, r in reports.items()}
    # Identical blocks: each layer pooled deeper adds one block's work (what runs once per pass,
    # such as the rotary tables, cancels out), and pooling layer 1 runs one block, not three.
    block = flops[2] - flops[1]
    assert flops[3] - flops[2] == pytest.approx(block, rel=1e-9)
    assert flops[1] == pytest.approx(block, rel=0.01)
    result = reports[3]["results"]["llmvec"]
    assert result["sentences_per_s"] == pytest.approx(len(TEXTS) / result["seconds"], rel=0.01)
    achieved = flops[3] / result["seconds"]
    peak = reports[3]["matmul_peak_gflop_per_s"] * 1e9
    assert result["fraction_of_matmul_peak"] == pytest.approx(achieved / peak, rel=0.01)
    assert result["memory"]["peak_mib"] > 0
    assert "peer" not in reports[3]


def test_shared_prefix_work_is_not_counted_per_pass(tiny_llama: Path) -> None:
    # The template's preamble runs once per encoder: a pass costs less than without the cache.
    template = "Read this carefully and think about what it means: {text} In one word:"
    cached = run_bench(Encoder(str(tiny_llama), template=template), TEXTS, chunks=1)
    uncached = run_bench(
        Encoder(str(tiny_llama), template=template, prefix_caching=False), TEXTS, chunks=1
    )
    flop = "flop_per_pass"
    assert cached["results"]["llmvec"][flop] < 0.7 * uncached["results"]["llmvec"][flop]


@pytest.mark.slow
def test_compare_sentence_transformers_same_vectors() -> None:
    encoder = Encoder("all-minilm-l6-v2", pooling="mean")
    report = run_bench(encoder, TEXTS, compare="sentence-transformers", chunks=2)
    peer = report["peer"]
    assert peer["name"] == "sentence-transformers"
    assert peer["cosine_min"] > 0.9999
    assert set(report["results"]) == {"llmvec", "sentence-transformers"}
    ratio = (
        report["results"]["sentence-transformers"]["seconds"]
        / report["results"]["llmvec"]["seconds"]
    )
    assert peer["ratio"] == pytest.approx(ratio, rel=0.01)


def test_compare_llemb_same_vectors_for_ke(tiny_llama: Path) -> None:
    report = run_bench(Encoder(str(tiny_llama), template="ke"), TEXTS, compare="llemb", chunks=2)
    assert report["peer"]["arguments"]["layer_index"] == -2
    assert report["peer"]["cosine_min"] > 0.9999
    assert report["peer"]["known_differences"] == []
    # llemb runs KE's long preamble for every input (and every layer after the pooled one).
    assert report["peer"]["work_ratio"] > 2


@pytest.mark.parametrize(
    ("recipe", "difference"),
    [({"template": "prompteol"}, "not the paper's"), ({"pooling": "mean"}, "BOS")],
)
def test_compare_llemb_names_its_differences(
    tiny_llama: Path, recipe: dict[str, str], difference: str
) -> None:
    # llemb's PromptEOL string is not the paper's, and its mean pools BOS (the tiny model's
    # tokenizer adds one): the vectors differ, and the report says why.
    report = run_bench(Encoder(str(tiny_llama), **recipe), TEXTS, compare="llemb", chunks=2)
    assert report["peer"]["cosine_min"] < 0.9999
    assert any(difference in note for note in report["peer"]["known_differences"])


@pytest.mark.parametrize(
    ("peer", "kwargs", "message"),
    [
        ("sentence-transformers", {"template": "ke"}, "template"),
        ("sentence-transformers", {"pooling": "last_token"}, "pooling='mean'"),
        ("llemb", {"pooling": "weighted_mean"}, "weighted_mean"),
        ("llemb", {"template": "Say {text} briefly:"}, "named templates"),
        ("llemb", {"truncate_dim": 8}, "truncate_dim"),
        ("nobody", {}, "unknown peer 'nobody'"),
    ],
)
def test_peer_cannot_compute_the_recipe(
    tiny_llama: Path, peer: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_bench(Encoder(str(tiny_llama), **kwargs), TEXTS, compare=peer)  # type: ignore[arg-type]


def test_peers_are_listed() -> None:
    assert sorted(PEERS) == ["llemb", "sentence-transformers"]


def test_read_texts(tmp_path: Path) -> None:
    file = tmp_path / "texts.txt"
    file.write_text("one\n\n  two  \nthree\n", encoding="utf-8")
    assert read_texts(file) == ["one", "two", "three"]
    assert read_texts(file, 2) == ["one", "two"]
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no text"):
        read_texts(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        read_texts(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="positive"):
        read_texts(file, 0)


def test_cli_bench_prints_and_writes_json(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "texts.txt"
    file.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "bench.json"
    argv = ["bench", str(file), "--model", str(tiny_llama), "--texts", "6", "--json", str(output)]
    assert main([*argv, "--compare", "llemb", "--template", "ke"]) == 0
    printed = capsys.readouterr().out
    assert "sentences/s" in printed and "matmul peak" in printed and "x llemb" in printed
    report = json.loads(output.read_text())
    assert report["texts"] == 6
    assert report["peer"]["cosine_min"] > 0.9999


def test_cli_bench_bad_input_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path / "nothing.txt")]) == 2
    assert "nothing.txt" in capsys.readouterr().err


def test_cli_bench_dtype(tiny_llama: Path, tmp_path: Path) -> None:
    file = tmp_path / "texts.txt"
    file.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "bench.json"
    argv = ["bench", str(file), "--model", str(tiny_llama), "--dtype", "bfloat16"]
    assert main([*argv, "--chunks", "1", "--json", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["dtype"] == "bfloat16"
    assert report["results"]["llmvec"]["flop_per_pass"] > 0
    assert main([*argv[:-1], "int3"]) == 2


def test_a_missing_peer_says_what_to_install() -> None:
    from llmvec.optional import require

    with pytest.raises(ImportError, match=r"pip install 'llmvec\[bench\]'"):
        require("llmvec_no_such_peer", "the peer is not installed: pip install 'llmvec[bench]'")
