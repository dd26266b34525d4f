"""Texts far longer than max_length: the ids of tokenizing them whole, from a bounded window."""

from __future__ import annotations

import random
from typing import Any

import pytest

from llmvec import Encoder
from llmvec.backends.base import TokenizedText
from llmvec.encoding.inputs import InputBuilder
from llmvec.encoding.templates import Wrapper, instruction_prefix, template_wrapper

INSTRUCTION = "Given a question, retrieve passages that answer it"
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "wizards")


def sentences(characters: int, seed: int = 0) -> str:
    """Sentences of common words, with punctuation, about ``characters`` long."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < characters:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        parts.append(sentence.capitalize() + rng.choice([".", ",", "!", "?", ";"]))
        length += len(parts[-1]) + 1
    return " ".join(parts)


LONG_TEXTS = {
    "words": sentences(200_000),
    "spaces then words": " " * 60_000 + sentences(20_000),
    "spaces then a few words": " " * 50_000 + "a few words at the end.",
    "multi-byte": "".join(
        random.Random(1).choice(["naïve ", "café ", "日本語の", "テキスト、", "😀 ", "Ünïcödé "])
        for _ in range(40_000)
    ),
    "newlines and tabs": "\n\n\t  ".join(sentences(400, seed) for seed in range(400)),
}


def reference(builder: InputBuilder, text: str, prefix: str, template: Wrapper) -> TokenizedText:
    """A plain reference: ``prefix + template(text)`` tokenized whole; where it does not fit,
    the text alone tokenized whole and cut at the end of its tokens, first by as many tokens as
    the prompt is over, then one more while it still does not fit (and marked truncated)."""

    def tokenize(string: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoded = builder.tokenizer(string, add_special_tokens=False, return_offsets_mapping=True)
        return encoded["input_ids"], encoded["offset_mapping"]

    budget = builder.max_length - len(builder.prefix_ids) - len(builder.suffix_ids)
    ids, offsets = tokenize(prefix + template.apply(text))
    truncated = len(ids) > budget
    if truncated:
        own_ids, own_offsets = tokenize(text)
        keep = max(len(own_ids) - (len(ids) - budget), 0)
        while True:
            cut = text[: own_offsets[keep - 1][1]] if keep else ""
            ids, offsets = tokenize(prefix + template.apply(cut))
            if len(ids) <= budget or keep == 0:
                break
            keep -= 1
    pool_start = sum(1 for _, end in offsets if end <= len(prefix)) if prefix else 0
    body = [*builder.prefix_ids, *ids, *builder.suffix_ids]
    skipped = len(builder.prefix_ids) if not builder.pool_prefix_specials or prefix else 0
    return TokenizedText(body, min(skipped + pool_start, len(body) - 1), truncated=truncated)


#: Texts a window must grow to cover: their spaces give WordPiece no token, and the words after
#: them fit.
COVERED = {("minilm", "spaces then a few words")}


def record_inputs(
    monkeypatch: pytest.MonkeyPatch, tokenizer: Any, limit: int | None = None
) -> list[int]:
    """The characters of the longest string in each call of ``tokenizer`` from now on; a call
    with more than ``limit`` fails before it tokenizes."""
    lengths: list[int] = []
    tokenizer_type = type(tokenizer)
    call = tokenizer_type.__call__

    def recording(self: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        longest = len(text) if isinstance(text, str) else max(map(len, text), default=0)
        lengths.append(longest)
        assert limit is None or longest <= limit, f"the tokenizer was given {longest:,} characters"
        return call(self, text, *args, **kwargs)

    monkeypatch.setattr(tokenizer_type, "__call__", recording)
    return lengths


@pytest.fixture(params=["smollm2", "minilm"])
def encoder(request: pytest.FixtureRequest) -> Encoder:
    """SmolLM2 (byte-level BPE) and all-MiniLM-L6-v2 (WordPiece, which drops whitespace)."""
    found: Encoder = request.getfixturevalue(request.param)
    return found


@pytest.mark.parametrize("name", sorted(LONG_TEXTS))
def test_long_texts_get_the_ids_of_tokenizing_them_whole(
    encoder: Encoder, name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = LONG_TEXTS[name]
    expected = [reference(encoder.inputs, text, "", template_wrapper(None))]
    lengths = record_inputs(monkeypatch, encoder.inputs.tokenizer)
    assert encoder.tokenize(text) == expected
    if (request.node.callspec.params["encoder"], name) in COVERED:
        assert max(lengths) == len(text)
    else:
        assert max(lengths) < len(text), "the text was tokenized whole"


@pytest.mark.parametrize("name", ["words", "multi-byte"])
def test_long_texts_with_template_and_instruction(
    encoder: Encoder, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [LONG_TEXTS[name], "short"]
    prefix = instruction_prefix(INSTRUCTION, encoder.instruction_format)
    expected = [reference(encoder.inputs, text, prefix, template_wrapper("ke")) for text in texts]
    lengths = record_inputs(monkeypatch, encoder.inputs.tokenizer)
    assert encoder.tokenize(texts, prompt_template="ke", instruction=INSTRUCTION) == expected
    assert max(lengths) < len(texts[0]), "the text was tokenized whole"


def test_a_huge_text_is_tokenized_in_a_bounded_window(
    minilm: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = sentences(100_000) * 500  # 50 MB
    limit = 1_000_000
    lengths = record_inputs(monkeypatch, minilm.inputs.tokenizer, limit)
    vectors = minilm.encode(huge)
    assert vectors.shape == (1, minilm.dim)
    assert max(lengths) < len(huge) / 500
    assert minilm.tokenize(huge) == minilm.tokenize(huge[:limit])
