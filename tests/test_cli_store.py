"""`llmvec index / ls / rm / info / search` as a user runs them: --json output with a stable
schema, filters by path, glob, type and date, the recipe printed, bad options refused before a
model loads."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmvec import cli

INDEX_KEYS = {
    "schema", "store", "files", "unchanged", "added", "changed", "reused", "empty", "removed",
    "chunks_encoded", "chunks_reused", "chunks_removed", "chunks_stored", "skipped",
}  # fmt: skip
DOCUMENT_KEYS = {"path", "chunks", "size", "modified", "ext", "sha256", "complete"}
HIT_KEYS = {"rank", "id", "score", "source", "chunk", "headings", "text", "metadata"}
INFO_KEYS = {
    "schema", "store", "kind", "documents", "chunks", "dim", "bytes_per_vector",
    "rescore_bytes_per_vector", "compression", "sparse", "chunking", "spec",
}  # fmt: skip


@pytest.fixture
def indexed(tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    (docs / "notes").mkdir(parents=True)
    (docs / "bees.md").write_text("# Bees\n\n## Dance\n\nBees dance to show where flowers are.\n")
    (docs / "notes" / "tides.txt").write_text("Tides follow the Moon.")
    (docs / "notes" / "bread.md").write_text("Sourdough bread needs a starter.")
    (docs / "page.html").write_text("<h1>Volcano</h1><script>x()</script><p>Magma rises.</p>")
    (docs / "broken.txt").write_bytes(b"\xff\xfe\x00binary")
    store = ["--store", f"faiss:{tmp_path / 'store'}"]
    model = ["--model", str(tiny_llama), "--dtype", "float32"]
    return docs, store, model


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    capsys.readouterr()
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_json_outputs_have_stable_schemas(indexed, capsys: pytest.CaptureFixture[str]) -> None:
    docs, store, model = indexed
    report = _json(capsys, ["index", str(docs), *store, *model, "--json"])
    assert set(report) == INDEX_KEYS and report["schema"] == 1
    assert report["added"] == 4 and report["files"] == 5
    assert [Path(s["path"]).name for s in report["skipped"]] == ["broken.txt"]

    listed = _json(capsys, ["ls", *store, "--json"])
    # Sorted by path: docs/bees.md, docs/notes/..., docs/page.html.
    names = [Path(d["path"]).name for d in listed["documents"]]
    assert names == ["bees.md", "bread.md", "tides.txt", "page.html"]
    assert all(set(d) == DOCUMENT_KEYS for d in listed["documents"])

    info = _json(capsys, ["info", *store, "--json"])
    assert set(info) == INFO_KEYS and info["documents"] == 4 and info["chunks"] >= 4
    assert (
        info["bytes_per_vector"] == 4 * info["dim"]
        and info["compression"]["precision"] == "float32"
    )

    found = _json(capsys, ["search", "where do bees dance", *store, "-k", "2", "--json"])
    assert set(found) == {"schema", "query", "mode", "hits"} and len(found["hits"]) == 2
    assert all(set(h) == HIT_KEYS for h in found["hits"])
    bees = next(h for h in _json(capsys, ["search", "bees", *store, "-k", "9", "--json"])["hits"]
                if h["source"].endswith("bees.md"))  # fmt: skip
    assert bees["headings"] == ["Bees", "Dance"]


def test_filters_by_glob_type_and_date(indexed, capsys: pytest.CaptureFixture[str]) -> None:
    docs, store, model = indexed
    assert cli.main(["index", str(docs), *store, *model]) == 0

    def sources(*options: str) -> set[str]:
        hits = _json(capsys, ["search", "a text", *store, "-k", "10", "--json", *options])["hits"]
        return {Path(h["source"]).name for h in hits}

    assert sources("--where", "source=docs/notes/*") == {"tides.txt", "bread.md"}
    assert sources("--where", "source=docs/notes") == {"tides.txt", "bread.md"}
    assert sources("--where", "ext=md") == {"bees.md", "bread.md"}
    assert sources("--where", "ext=md", "--where", "ext=html") == {
        "bees.md",
        "bread.md",
        "page.html",
    }
    assert sources("--where", "source=docs/notes/*", "--where", "ext=md") == {"bread.md"}
    assert sources("--where", "source=nowhere/*") == set()
    assert sources("--after", "2000-01-01") == {"bees.md", "bread.md", "tides.txt", "page.html"}
    tomorrow = time.strftime("%Y-%m-%d", time.localtime(time.time() + 86400))
    assert sources("--after", tomorrow) == set()
    assert sources("--before", tomorrow) == {"bees.md", "bread.md", "tides.txt", "page.html"}


def test_ls_rm_and_the_printed_recipe(indexed, capsys: pytest.CaptureFixture[str]) -> None:
    docs, store, model = indexed
    capsys.readouterr()
    assert cli.main(["index", str(docs), *store, *model]) == 0
    out = capsys.readouterr().out
    assert f"model {model[1]}" in out and "mean pooling" in out and "4 new" in out
    removed = _json(capsys, ["rm", "docs/notes/*", *store, "--json"])
    assert sorted(Path(p).name for p in removed["removed"]) == ["bread.md", "tides.txt"]
    listed = _json(capsys, ["ls", *store, "--json"])
    assert sorted(Path(d["path"]).name for d in listed["documents"]) == ["bees.md", "page.html"]
    assert cli.main(["rm", "docs/notes/*", *store]) == 1
    assert "no stored document matches" in capsys.readouterr().err
    # The next index run puts them back, and encodes nothing else.
    report = _json(capsys, ["index", str(docs), *store, "--json"])
    assert (report["added"], report["unchanged"]) == (2, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "docs", "--chunk-tokens", "0"], "max_tokens must be a positive"),
        (["index", "docs", "--overlap", "300"], "overlap must be >= 0 and below"),
        (["index", "missing-folder"], "neither a file nor a directory"),
        (["index", "docs", "--encoding", "klingon"], "unknown --encoding"),
        (["search", "q", "--after", "yesterday"], "is not an ISO date"),
        (["search", "q", "-k", "0"], "k must be a positive"),
    ],
)
def test_bad_options_fail_before_any_model_loads(
    indexed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv, message
) -> None:
    import llmvec.encoder

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(llmvec.encoder.Encoder, "__init__", no_model)
    _, store, _ = indexed
    assert cli.main([*argv, *store]) == 2
    assert message in capsys.readouterr().err
