"""The `llmvec` command: encode, index, search; the parser table; document chunking."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from index_data import EXAMPLES, example_texts
from qdrant_server import fake_qdrant

import llmvec
import llmvec.encoder
from llmvec import cli
from llmvec.compress import quantize
from llmvec.documents import load_chunks, split_text

HIT_LINE = re.compile(r"^(\d+)\. (-?\d\.\d{4})  (\S+)  (.*)$")


@pytest.fixture
def loaded_models(
    monkeypatch: pytest.MonkeyPatch, smollm2: llmvec.Encoder, minilm: llmvec.Encoder
) -> None:
    """Let the command build its encoders as usual, but reuse the session's loaded weights."""
    original = llmvec.encoder.load_backend
    loaded = {"smollm2": smollm2.backend, "all-minilm-l6-v2": minilm.backend}

    def load_backend(backend: str, model: str, **kwargs: Any) -> Any:
        defaults = kwargs.get("device") is None and kwargs.get("quantization") is None
        if backend == "transformers" and model in loaded and defaults:
            return loaded[model]
        return original(backend, model, **kwargs)

    monkeypatch.setattr(llmvec.encoder, "load_backend", load_backend)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _hits(out: str) -> list[tuple[int, float, str, str]]:
    lines = out.strip().splitlines()
    parsed = [HIT_LINE.match(line) for line in lines]
    assert all(parsed), lines
    return [(int(m[1]), float(m[2]), m[3], m[4]) for m in parsed if m]


def test_help_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("encode", "index", "search", "examples:", "--store faiss:/tmp/llmvec-demo"):
        assert name in out
    with pytest.raises(SystemExit):
        cli.main(["index", "--help"])
    out = capsys.readouterr().out
    assert "qdrant+http://HOST:PORT/COLLECTION" in out and "--precision" in out
    assert "a new store: all-minilm-l6-v2" in re.sub(r"-\s+", "-", " ".join(out.split()))


#: Run in a fresh interpreter: the command's exit code and which heavy modules it imported.
_IMPORTS_OF_A_COMMAND = """
import json, runpy, sys
report_path = sys.argv[1]
sys.argv = ["llmvec", *sys.argv[2:]]
try:
    runpy.run_module("llmvec.cli", run_name="__main__")
    code = 0
except SystemExit as exit_:
    code = exit_.code
heavy = [name for name in ("torch", "transformers") if name in sys.modules]
with open(report_path, "w") as report:
    json.dump({"code": code, "heavy": heavy}, report)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["index", "--help"],
        ["train", "--help"],
        ["search", "a query", "-k", "0"],
        ["bench", "{texts}", "--texts", "0"],
        ["bench", "{texts}", "--threads", "0"],
    ],
    ids=["help", "index-help", "train-help", "search-k-0", "bench-texts-0", "bench-threads-0"],
)
def test_help_and_bad_arguments_answer_before_torch_is_imported(
    tmp_path: Path, argv: list[str]
) -> None:
    """The parser and its checks import neither torch nor transformers (seconds on 2 cores)."""
    report, texts = tmp_path / "report.json", tmp_path / "texts.txt"
    texts.write_text("one text\n")
    arguments = [argument.format(texts=texts) for argument in argv]
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_OF_A_COMMAND, str(report), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    outcome = json.loads(report.read_text())
    assert outcome["code"] == (0 if "--help" in argv else 2), result.stderr
    if "--help" not in argv:
        assert "must be a positive integer, got 0" in result.stderr, result.stderr
    assert outcome["heavy"] == [], f"{argv} imported {outcome['heavy']}"


def test_the_public_names_load_on_first_use() -> None:
    assert sorted(llmvec.__all__) == sorted([*llmvec._PUBLIC, "__version__"])
    for name in llmvec._PUBLIC:
        value = getattr(llmvec, name)
        assert isinstance(value, dict) if name.isupper() else value.__name__ == name, name


def test_backend_options_reach_the_encoder(tiny_llama: Path) -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["encode", "--model", str(tiny_llama), "--backend-option", "revision=main",
         "--backend-option", 'model_kwargs={"low_cpu_mem_usage": true}', "--backend-option",
         "gpu_memory_utilization=0.3"]
    )  # fmt: skip
    kwargs = cli.encoder_kwargs(args)
    assert kwargs["revision"] == "main" and kwargs["gpu_memory_utilization"] == 0.3
    assert kwargs["model_kwargs"] == {"low_cpu_mem_usage": True}
    assert kwargs["backend"] == "transformers"
    with pytest.raises(SystemExit):
        parser.parse_args(["encode", "--backend-option", "no-equals-sign"])


def test_console_script_is_installed() -> None:
    executable = shutil.which("llmvec")
    assert executable is not None
    result = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"llmvec {llmvec.__version__}"


def test_commands_are_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [c.name for c in cli.COMMANDS][:3] == ["encode", "index", "search"]
    seen: list[str] = []

    def add(parser: Any) -> None:
        parser.add_argument("--name", default="x")

    def run(args: Any) -> int:
        seen.append(args.name)
        return 3

    extra = cli.Command("hello", "say hello", add, run)
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, extra])
    assert cli.main(["hello", "--name", "bench"]) == 3 and seen == ["bench"]


def test_index_and_search_with_the_default_model(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    loaded_models: None,
    minilm: llmvec.Encoder,
) -> None:
    store = f"faiss:{tmp_path / 'demo'}"
    code, out, _ = _run(capsys, "index", str(EXAMPLES), "--store", store)
    files = len(example_texts())
    assert code == 0 and out.startswith(f"{files} files: {files} new, 0 changed"), out
    # The default recipe of a new store, chosen by SciFact nDCG@10, is printed.
    assert "(model all-minilm-l6-v2, mean pooling, layer 6, float32)" in out
    question = "How do bees tell each other where the flowers are?"
    code, out, _ = _run(capsys, "search", question, "--store", store, "-k", "3")
    hits = _hits(out)
    assert code == 0 and [h[0] for h in hits] == [1, 2, 3]
    assert hits[0][2] == "examples/data/honeybees.md"  # relative to the working directory
    assert [h[1] for h in hits] == sorted((h[1] for h in hits), reverse=True)
    # The printed score is the cosine of the default encoder's vectors of the stored chunk.
    saved = llmvec.FaissIndex.load(tmp_path / "demo")
    best = saved.search(minilm.encode_queries([question])[0], k=1)[0]
    document = minilm.encode_documents([best.text])[0]
    expected = document @ minilm.encode_queries([question])[0]
    assert hits[0][1] == pytest.approx(float(expected), abs=1e-4)
    assert saved.spec == minilm.spec


@pytest.mark.parametrize("scheme", ["qdrant", "qdrant-edge"])
def test_qdrant_stores_with_binary_precision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loaded_models: None, scheme: str
) -> None:
    store = f"{scheme}:{tmp_path / 'store'}"
    args = ["--model", "all-minilm-l6-v2", "--precision", "binary", "--chunk-tokens", "64"]
    code, out, _ = _run(capsys, "index", str(EXAMPLES), "--store", store, *args, "--json")
    assert code == 0, out
    count = json.loads(out)["chunks_stored"]
    assert count > 9 and json.loads(out)["chunks_encoded"] == count
    # Indexing again encodes nothing and duplicates nothing.
    code, out, _ = _run(capsys, "index", str(EXAMPLES), "--store", store, *args, "--json")
    assert code == 0 and json.loads(out)["chunks_stored"] == count
    assert json.loads(out)["chunks_encoded"] == 0
    code, out, _ = _run(capsys, "search", "what makes an eruption explosive?", "--store", store)
    hits = _hits(out)
    assert len(hits) == 5 and Path(hits[0][2]).name == "volcanoes.md"
    index = llmvec.QdrantIndex.load(tmp_path / "store")
    assert index.spec.precision == "binary" and index.spec.model == "all-minilm-l6-v2"
    index.close()


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_qdrant_server_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loaded_models: None
) -> None:
    with fake_qdrant() as server:
        store = f"qdrant+{server.url}/notes"
        model = ["--model", "all-minilm-l6-v2"]
        code, out, _ = _run(capsys, "index", str(EXAMPLES), "--store", store, *model)
        assert code == 0 and f"{len(example_texts())} new" in out
        code, out, _ = _run(capsys, "search", "rule of 72", "--store", store, "-k", "2")
        assert code == 0 and Path(_hits(out)[0][2]).name == "compound_interest.txt"
        assert any(path == "/collections/notes" for _, path, _ in server.requests)
        # Again, with no model option: the collection's recipe, and nothing to encode.
        code, out, _ = _run(capsys, "index", str(EXAMPLES), "--store", store, "--json")
        report = json.loads(out)
        assert code == 0 and report["unchanged"] == len(example_texts())
        assert report["chunks_encoded"] == 0


def test_encode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loaded_models: None, minilm: llmvec.Encoder
) -> None:
    texts = ["Tides follow the Moon.", "Feed the starter daily."]
    code, out, _ = _run(capsys, "encode", *texts, "--model", "all-minilm-l6-v2")
    rows = np.array([json.loads(line) for line in out.strip().splitlines()])
    assert code == 0 and rows.shape == (2, 384)
    np.testing.assert_allclose(rows, minilm.encode_documents(texts), atol=1e-6)
    target = tmp_path / "codes.npy"
    code, out, _ = _run(
        capsys,
        "encode",
        *texts,
        "--model",
        "all-minilm-l6-v2",
        "--precision",
        "ubinary",
        "--output",
        str(target),
    )
    assert code == 0 and "wrote 2 x 48 uint8" in out
    np.testing.assert_array_equal(
        np.load(target), quantize(minilm.encode_documents(texts), "ubinary")
    )


def test_encode_queries_with_an_instruction_format(
    capsys: pytest.CaptureFixture[str], tiny_llama: Path
) -> None:
    texts = ["Tides follow the Moon.", "Feed the starter daily."]
    instruction = "Retrieve passages"
    expected = llmvec.Encoder(
        str(tiny_llama),
        query_instruction=instruction,
        instruction_format="qwen3",
        max_tokens_per_batch=16,
    ).encode_queries(texts)
    options = ["--query-instruction", instruction, "--instruction-format", "qwen3"]
    code, out, _ = _run(
        capsys,
        "encode",
        *texts,
        "--query",
        "--model",
        str(tiny_llama),
        *options,
        "--max-tokens-per-batch",
        "16",
    )
    rows = np.array([json.loads(line) for line in out.strip().splitlines()])
    assert code == 0
    np.testing.assert_allclose(rows, expected, atol=1e-6)
    default = llmvec.Encoder(str(tiny_llama), query_instruction=instruction).encode_queries(texts)
    assert np.sum(rows * default, axis=1).min() < 0.9999  # the format changed the input


def test_errors_are_short_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loaded_models: None
) -> None:
    code, _, err = _run(capsys, "search", "x", "--store", "redis:/tmp/x")
    assert code == 2 and "unknown store 'redis:/tmp/x'; use faiss:PATH, qdrant:PATH" in err
    code, _, err = _run(capsys, "search", "x", "--store", f"faiss:{tmp_path / 'none'}")
    assert code == 2 and "does not exist" in err
    code, _, err = _run(capsys, "search", "x", "--store", f"faiss:{tmp_path}", "-k", "0")
    assert code == 2 and "k must be a positive integer, got 0" in err
    code, _, err = _run(capsys, "index", str(tmp_path), "--store", f"faiss:{tmp_path / 'i'}")
    assert code == 2 and "no readable document (.txt, .md, .rst, .html, .pdf, .docx)" in err
    with pytest.raises(SystemExit):
        cli.main(["index", str(EXAMPLES), "--store", "faiss:/tmp/x", "--precision", "float16"])
    assert "invalid choice: 'float16'" in capsys.readouterr().err
    # A store built with one spec refuses another, naming the field, and stays as it was.
    store = f"faiss:{tmp_path / 'mini'}"
    model = ["--model", "all-minilm-l6-v2"]
    assert _run(capsys, "index", str(EXAMPLES), "--store", store, *model)[0] == 0
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "mini").iterdir())
    code, _, err = _run(
        capsys, "index", str(EXAMPLES), "--store", store, *model, "--pooling", "first_token"
    )
    assert code == 2 and "pooling: stored 'mean' != encoder 'first_token'" in err
    code, _, err = _run(
        capsys, "index", str(EXAMPLES), "--store", store, *model, "--precision", "int8"
    )
    assert code == 2 and "holds precision 'float32', not 'int8'" in err
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "mini").iterdir()) == before


def test_chunks_respect_the_limit_and_keep_every_word() -> None:
    text = (EXAMPLES / "volcanoes.md").read_text()
    for limit in (40, 120, 300, 10_000):
        chunks = split_text(text, limit)
        assert all(0 < len(c) <= limit for c in chunks)
        assert " ".join(chunks).split() == text.split()
    assert split_text(text, None) == [text.strip()]
    assert split_text("word " * 3 + "x" * 25, 10)[-1] == "x" * 5  # a long word is cut too
    assert split_text("  \n\n ", 50) == []
    with pytest.raises(ValueError, match="max_chars"):
        split_text(text, 0)


def test_chunk_ids_are_stable(tmp_path: Path) -> None:
    chunks = load_chunks(EXAMPLES, max_chars=250).chunks
    assert chunks == load_chunks(EXAMPLES, max_chars=250).chunks
    assert {c.source for c in chunks} == {(EXAMPLES / n).as_posix() for n in example_texts()}
    assert chunks[0].id == f"{chunks[0].source}#0" and chunks[0].metadata["chunk"] == 0
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.md").write_text("skip me")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "note.txt").write_text("First.\n\nSecond.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    note = (tmp_path / "sub" / "note.txt").as_posix()
    assert [(c.id, c.text) for c in load_chunks(tmp_path, 8).chunks] == [
        (f"{note}#0", "First."),
        (f"{note}#1", "Second."),
    ]
