"""Reading every kept file type into sections under heading paths, and token-counted chunking."""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from llmvec.documents import (
    SUPPORTED_SUFFIXES,
    Document,
    Piece,
    Section,
    Skipped,
    chunk_sections,
    find_files,
    hf_token_spans,
    read_document,
    whitespace_spans,
)
from llmvec.models import resolve_model
from llmvec.testing import build_tokenizer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"
Spans = Callable[[str], list[tuple[int, int]]]


def _write(path: Path, content: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def _sections(path: str) -> list[tuple[tuple[str, ...], str]]:
    document = read_document(path)
    assert isinstance(document, Document), document
    assert document.path == path
    return [(s.headings, s.text) for s in document.sections]


def _pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF written by hand: one Helvetica text stream per page, a line each."""

    def literal(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, page in enumerate(pages):
        bodies.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        shown = " ".join(f"({literal(line)}) Tj T*" for line in page.split("\n"))
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode("latin-1")
        bodies.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1,
        xref,
    )
    return bytes(out)


# ---------------------------------------------------------------------- the walk
def test_the_walk_finds_every_supported_type_in_any_case(tmp_path: Path) -> None:
    names = ["a.txt", "b.md", "c.markdown", "d.rst", "e.html", "f.HTM", "g.PDF", "h.docx"]
    for name in [*names, "i.png", "j.doc", ".k.md"]:
        _write(tmp_path / name, "x")
    files, skipped = find_files(tmp_path)
    assert [Path(f).name for f in files] == names and skipped == []
    assert set(SUPPORTED_SUFFIXES) == {
        ".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".docx"
    }  # fmt: skip
    only, _ = find_files(tmp_path, suffixes=(".RST",))
    assert only == [(tmp_path / "d.rst").as_posix()]


# ---------------------------------------------------------------------- plain text
def test_plain_text_is_one_section_decoded_strictly(tmp_path: Path) -> None:
    text = _write(tmp_path / "a.txt", "\ufeff  First line.\n\nSecond paragraph.\n")
    assert _sections(text) == [((), "First line.\n\nSecond paragraph.")]
    latin = _write(tmp_path / "latin.txt", "café".encode("latin-1"))
    assert read_document(latin) == Skipped(
        latin, "not utf-8 text: invalid byte 0xe9 at offset 3; pass encoding= to read it"
    )
    assert read_document(latin, encoding="latin-1") == Document(latin, [Section((), "café")])
    with pytest.raises(LookupError):
        read_document(latin, encoding="klingon")


def test_an_unknown_suffix_is_read_as_plain_text(tmp_path: Path) -> None:
    readme = _write(tmp_path / "README", "# Not parsed as Markdown")
    assert _sections(readme) == [((), "# Not parsed as Markdown")]


def test_binary_files_are_skipped_whatever_their_suffix(tmp_path: Path) -> None:
    for name in ("data.txt", "data.md", "data.rst", "data.html"):
        path = _write(tmp_path / name, b"GIF89a\0\0text")
        assert read_document(path) == Skipped(path, "binary file: NUL byte at offset 6")


def test_empty_files_give_documents_without_sections(tmp_path: Path) -> None:
    contents = {
        "e.txt": "",
        "e.md": "\n\n# \n",
        "e.rst": "  \n",
        "e.html": "<html><head><title>T</title><script>x()</script></head><body> </body></html>",
    }
    for name, content in contents.items():
        path = _write(tmp_path / name, content)
        assert read_document(path) == Document(path, [])


def test_files_that_cannot_be_read_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "folder.md"  # a folder whose name looks like a document
    folder.mkdir()
    assert read_document(str(folder)) == Skipped(str(folder), "cannot read: Is a directory")
    missing = str(tmp_path / "gone.pdf")
    assert read_document(missing) == Skipped(missing, "cannot read: No such file or directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_files_of_every_type_are_skipped(tmp_path: Path) -> None:
    for name in ("locked.txt", "locked.html", "locked.pdf", "locked.docx"):
        path = tmp_path / name
        _write(path, "x")
        path.chmod(0)
        try:
            assert read_document(str(path)) == Skipped(str(path), "cannot read: Permission denied")
        finally:
            path.chmod(0o644)


def test_huge_files_are_read_whole(tmp_path: Path) -> None:
    paragraph = "Lava flows far before it cools. " * 30
    body = "\n\n".join([paragraph] * 5300)  # about 5 MB
    text = _write(tmp_path / "huge.txt", body)
    markdown = _write(tmp_path / "huge.md", f"# Big\n\n{body}\n\n## Tail\n\nEnd.")
    assert os.path.getsize(text) > 5_000_000
    assert _sections(text) == [((), body.strip())]
    assert _sections(markdown) == [(("Big",), body.strip()), (("Big", "Tail"), "End.")]


# ---------------------------------------------------------------------- Markdown
def test_markdown_headings_build_the_path_and_code_fences_hide_hashes(tmp_path: Path) -> None:
    source = """\
---
title: Front matter
---
Intro text.

# Guide

Guide text with a #hashtag.
#not a heading either

## Install ##

```python
# not a heading
pip install llmvec
```
~~~
# nor this
~~~

Setup
-----

Under a setext heading.

- a list item
---

### Deep

Deep text.

Second Top
==========

Final.
"""
    path = _write(tmp_path / "guide.md", source)
    assert _sections(path) == [
        ((), "---\ntitle: Front matter\n---\nIntro text."),
        (("Guide",), "Guide text with a #hashtag.\n#not a heading either"),
        (
            ("Guide", "Install"),
            "```python\n# not a heading\npip install llmvec\n```\n~~~\n# nor this\n~~~",
        ),
        (("Guide", "Setup"), "Under a setext heading.\n\n- a list item\n---"),
        (("Guide", "Setup", "Deep"), "Deep text."),
        (("Second Top",), "Final."),
    ]


def test_a_markdown_heading_skipping_levels_keeps_its_parents(tmp_path: Path) -> None:
    path = _write(tmp_path / "skip.markdown", "# A\n### C\nc\n## B\nb\n# D\nd")
    assert _sections(path) == [(("A", "C"), "c"), (("A", "B"), "b"), (("D",), "d")]


# ---------------------------------------------------------------------- reStructuredText
def test_rst_titles_with_overlines_and_levels_in_order_of_appearance(tmp_path: Path) -> None:
    source = """\
=========
 Project
=========

Intro.

Usage
=====

Use it.

Details
-------

Fine print.

Short
===

::

    Literal
    =======

----

Other
=====

Back at level two.

#######
 Again
#######

Top again.
"""
    path = _write(tmp_path / "index.rst", source)
    assert _sections(path) == [
        (("Project",), "Intro."),
        (("Project", "Usage"), "Use it."),
        (
            ("Project", "Usage", "Details"),
            "Fine print.\n\nShort\n===\n\n::\n\n    Literal\n    =======\n\n----",
        ),
        (("Project", "Other"), "Back at level two."),
        (("Project", "Other", "Again"), "Top again."),
    ]


def test_rst_levels_follow_first_appearance_not_the_character(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.rst", "One\n~~~\n\na\n\nTwo\n***\n\nb\n\nThree\n~~~~~\n\nc\n")
    assert _sections(path) == [(("One",), "a"), (("One", "Two"), "b"), (("Three",), "c")]


# ---------------------------------------------------------------------- HTML
def test_html_text_paragraphs_and_heading_paths(tmp_path: Path) -> None:
    source = """<!DOCTYPE html>
<html><head><title>Page title</title><style>body { color: red }</style>
<script>var x = "<h1>no</h1>";</script><meta charset="utf-8"></head>
<body>
<noscript>Enable JavaScript</noscript>
<p>Intro &amp; welcome&nbsp;here.</p>
<h1>Main <em>topic</em></h1>
<p>First
   paragraph.</p><p>Second <b>para</b>graph.</p>
<h2>Sub</h2>
<ul><li>one</li><li>two</li></ul>
<table><tr><td>cell a</td><td>cell b</td></tr></table>
<template><h1>hidden</h1><p>hidden</p></template>
<h3>Deeper<br>still</h3><div>Deep text &lt;tag&gt; &#233; &eacute;</div>
<h2>Sibling</h2>Line<br>break
<h1>Second main</h1><pre>code   kept
  indented</pre>
</body></html>"""
    path = _write(tmp_path / "page.html", source)
    assert _sections(path) == [
        ((), "Intro & welcome here."),
        (("Main topic",), "First paragraph.\n\nSecond paragraph."),
        (("Main topic", "Sub"), "one\n\ntwo\n\ncell a cell b"),
        (("Main topic", "Sub", "Deeper still"), "Deep text <tag> é é"),
        (("Main topic", "Sibling"), "Line\n\nbreak"),
        (("Second main",), "code   kept\n  indented"),
    ]


def test_html_in_another_encoding_and_a_head_left_open(tmp_path: Path) -> None:
    path = _write(tmp_path / "old.htm", "<head><title>x</title><p>Caf\xe9</p>".encode("latin-1"))
    assert read_document(path) == Skipped(
        path, "not utf-8 text: invalid byte 0xe9 at offset 28; pass encoding= to read it"
    )
    assert read_document(path, encoding="latin-1") == Document(path, [Section((), "Café")])


# ---------------------------------------------------------------------- PDF
def test_pdf_pages_are_joined_by_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "paper.pdf", _pdf(["First page line.\nSecond line (x).", "Page two."]))
    assert _sections(path) == [((), "First page line.\nSecond line (x).\n\nPage two.")]
    blank = _write(tmp_path / "blank.pdf", _pdf([""]))
    assert read_document(blank) == Document(blank, [])


def test_encrypted_and_broken_pdfs_are_skipped(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    def encrypted(user_password: str) -> bytes:
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf(["Secret text."]))))
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    locked = _write(tmp_path / "locked.pdf", encrypted("secret"))
    assert read_document(locked) == Skipped(locked, "encrypted PDF: it needs a password")
    open_one = _write(tmp_path / "open.pdf", encrypted(""))  # permissions only: it opens
    assert _sections(open_one) == [((), "Secret text.")]
    broken = _write(tmp_path / "broken.pdf", b"%PDF-1.4\nthis is no PDF at all\n")
    skipped = read_document(broken)
    assert isinstance(skipped, Skipped) and skipped.reason.startswith("cannot read .pdf: ")


# ---------------------------------------------------------------------- DOCX
def test_docx_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Report", 0)  # the Title style
    document.add_paragraph("Opening words.")
    document.add_heading("Methods", 1)
    document.add_paragraph("We measured.")
    document.add_heading("Tools", 2)
    table = document.add_table(rows=2, cols=3)
    rows = [["name", "use", "note"], ["saw", "cuts", "sharp"]]
    for row, values in zip(table.rows, rows, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    table.cell(0, 1).merge(table.cell(0, 2))  # "use" and "note" in one cell, read once
    document.add_paragraph("")
    document.add_paragraph("After the table.")
    document.add_heading("Results", 1)
    document.add_paragraph("It worked.")
    path = str(tmp_path / "report.docx")
    document.save(path)
    assert _sections(path) == [
        (("Report",), "Opening words."),
        (("Report", "Methods"), "We measured."),
        (("Report", "Methods", "Tools"), "name use note\n\nsaw cuts sharp\n\nAfter the table."),
        (("Report", "Results"), "It worked."),
    ]
    empty = str(tmp_path / "empty.docx")
    docx.Document().save(empty)
    assert read_document(empty) == Document(empty, [])


def test_a_broken_docx_is_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.docx", b"PK\x03\x04 not really a zip")
    skipped = read_document(path)
    assert isinstance(skipped, Skipped) and skipped.reason.startswith("cannot read .docx: ")


# ---------------------------------------------------------------------- optional packages
@pytest.mark.parametrize(
    ("name", "module", "reason"),
    [
        ("a.pdf", "pypdf", "needs pypdf: pip install 'llmvec[pdf]'"),
        ("a.docx", "docx", "needs python-docx: pip install 'llmvec[docx]'"),
    ],
)
def test_a_missing_optional_package_skips_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str, reason: str
) -> None:
    # The package is installed here: a None entry in sys.modules makes its import fail, as it
    # does where the package is missing.
    monkeypatch.setitem(sys.modules, module, None)
    path = _write(tmp_path / name, _pdf(["Text."]))
    assert read_document(path) == Skipped(path, reason)


# ---------------------------------------------------------------------- chunking
@pytest.fixture(scope="module")
def minilm_spans() -> Spans:
    """Token spans from all-MiniLM-L6-v2's tokenizer (the packaged folder, offline)."""
    return hf_token_spans(
        AutoTokenizer.from_pretrained(resolve_model("all-minilm-l6-v2").name_or_path)
    )


def _prose() -> str:
    """The example documents' paragraphs: real prose, about 1,300 tokens."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.iterdir())]
    return "\n\n".join(re.sub(r"(?m)^#.*$", "", t) for t in texts)


def _squeezed(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize(("max_tokens", "overlap"), [(16, 0), (64, 0), (64, 16), (200, 40)])
def test_chunks_fit_a_real_tokenizer_keep_every_word_and_overlap(
    minilm_spans: Spans, max_tokens: int, overlap: int
) -> None:
    sections = [Section(("Nature",), _prose()), Section(("Nature", "Tail"), "Short tail.")]
    pieces = chunk_sections(sections, minilm_spans, max_tokens, overlap)
    assert pieces == chunk_sections(sections, minilm_spans, max_tokens, overlap)
    assert pieces[-1] == Piece("Short tail.", ("Nature", "Tail"))  # never across sections
    body = [p for p in pieces[:-1] if p.headings == ("Nature",)]
    assert len(body) == len(pieces) - 1 > 4
    for piece in body:
        assert 0 < len(minilm_spans(piece.text)) <= max_tokens
        assert "\n\n\n" not in piece.text and "  " not in piece.text
    if overlap == 0:
        assert " ".join(p.text for p in body).split() == _prose().split()
        return
    position = 0  # each chunk's text lies in the section in order, starting inside the last one
    text = " ".join(_prose().split())
    previous_end = 0
    for piece in body:
        start = text.index(" ".join(piece.text.split()), position)
        if piece is not body[0]:
            shared = len(minilm_spans(text[start:previous_end]))
            assert start < previous_end and overlap // 2 <= shared <= overlap * 2
        previous_end = start + len(" ".join(piece.text.split()))
        position = start + 1
    assert previous_end == len(text)


def test_cuts_prefer_paragraphs_then_sentences_then_words() -> None:
    text = "One two three.\n\nFour five six. Seven eight nine ten eleven twelve. Thirteen 14 15"
    pieces = chunk_sections([Section((), text)], whitespace_spans, 8)
    assert [p.text for p in pieces] == [
        "One two three.",
        "Four five six.",
        "Seven eight nine ten eleven twelve.",
        "Thirteen 14 15",
    ]
    words = " ".join(f"w{i}" for i in range(10))
    assert [p.text for p in chunk_sections([Section((), words)], whitespace_spans, 4)] == [
        "w0 w1 w2 w3",
        "w4 w5 w6 w7",
        "w8 w9",
    ]


def test_paragraph_whitespace_is_normalised_and_empty_sections_give_nothing() -> None:
    sections = [
        Section(("A",), "  one\t two \n three \n \n\n four  "),
        Section(("B",), " \n\n "),
        Section(("C",), ""),
    ]
    assert chunk_sections(sections, whitespace_spans, 100) == [
        Piece("one two three\n\nfour", ("A",))
    ]
    assert chunk_sections([], whitespace_spans, 5) == []


def test_words_longer_than_the_limit_are_cut_at_token_boundaries(minilm_spans: Spans) -> None:
    word = "antidisestablishmentarianism" * 4
    pieces = chunk_sections([Section((), f"Before {word} after.")], minilm_spans, 5)
    assert all(len(minilm_spans(p.text)) <= 5 for p in pieces)
    assert "".join(_squeezed(p.text) for p in pieces) == f"Before{word}after."


def test_chunks_are_counted_again_on_their_own_text() -> None:
    """A tokenizer whose count of a text depends on its edges (here: a text starting with a
    capital letter costs one token more): the chunks are shrunk until their own count fits."""

    def edgy(text: str) -> list[tuple[int, int]]:
        spans = whitespace_spans(text)
        return [(0, 0), *spans] if text[:1].isupper() else spans

    text = " ".join(["Alpha beta gamma delta"] * 6)
    pieces = chunk_sections([Section((), text)], edgy, 4, 1)
    assert pieces and all(len(edgy(p.text)) <= 4 for p in pieces)
    assert len(pieces) > 6  # "Alpha beta gamma delta" alone is 5 tokens by this count


def test_a_byte_level_tokenizer_with_multibyte_text_stays_within_the_limit() -> None:
    spans = hf_token_spans(build_tokenizer(adds_bos=False))  # a tiny byte-level BPE vocabulary
    text = "Naïve café owners sell crème brûlée. 日本語のテキスト。 Emoji 😀😀 too.\n\nEnd."
    for max_tokens, overlap in ((4, 0), (4, 3), (9, 2), (30, 10)):
        pieces = chunk_sections([Section(("h",), text)], spans, max_tokens, overlap)
        assert all(0 < len(spans(p.text)) <= max_tokens for p in pieces)
        if overlap == 0:
            assert "".join(_squeezed(p.text) for p in pieces) == _squeezed(text)


def test_a_limit_below_one_characters_tokens_is_refused() -> None:
    spans = hf_token_spans(build_tokenizer(adds_bos=False))
    assert len(spans("😀")) > 1  # bytes of one character, all spanning it
    with pytest.raises(ValueError, match="max_tokens=1 is too small: '😀'"):
        chunk_sections([Section((), "a 😀")], spans, 1)


def test_chunking_checks_its_limits() -> None:
    sections = [Section((), "a b c")]
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="max_tokens"):
            chunk_sections(sections, whitespace_spans, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_sections(sections, whitespace_spans, 4, -1)
    with pytest.raises(
        ValueError, match=r"overlap_tokens \(4\) must be less than max_tokens \(4\)"
    ):
        chunk_sections(sections, whitespace_spans, 4, 4)


def test_read_and_chunk_a_markdown_file(tmp_path: Path, minilm_spans: Spans) -> None:
    path = _write(tmp_path / "doc.md", "# Title\n\nIntro words here.\n\n## Part\n\n" + "Word " * 90)
    document = read_document(path)
    assert isinstance(document, Document)
    pieces = chunk_sections(document.sections, minilm_spans, 32, 4)
    assert pieces[0] == Piece("Intro words here.", ("Title",))
    assert {p.headings for p in pieces[1:]} == {("Title", "Part")} and len(pieces) > 3


# ---------------------------------------------------------------------- hf_token_spans
def test_hf_token_spans_of_a_long_text_match_tokenizing_it_whole() -> None:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-minilm-l6-v2").name_or_path)
    text = ("Shield volcanoes are built from runny lava.\n\n" * 23_000)[:1_000_000]
    whole = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    assert hf_token_spans(tokenizer)(text) == [tuple(s) for s in whole["offset_mapping"]]
    with pytest.raises(TypeError, match="fast tokenizer"):
        hf_token_spans(object())
