"""Template and instruction strings are byte-exact, and the template survives truncation."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmvec import Encoder
from llmvec.encoding.templates import (
    INSTRUCTION_FORMATS,
    TEMPLATES,
    instruction_prefix,
    resolve_template,
    template_wrapper,
)

PAPER_STRINGS = {
    "prompteol": 'This sentence : "{text}" means in one word:"',
    "pcoteol": 'After thinking step by step , this sentence : "{text}" means in one word:"',
    "ke": "The essence of a sentence is often captured by its main subjects and actions, while "
    "descriptive terms provide additional but less central details. With this in mind , this "
    'sentence : "{text}" means in one word:"',
}


@pytest.mark.parametrize("name", sorted(PAPER_STRINGS))
def test_template_strings_are_byte_exact(name: str) -> None:
    assert TEMPLATES[name].encode() == PAPER_STRINGS[name].encode()
    assert resolve_template(name.upper()) == PAPER_STRINGS[name]


def test_instruction_formats_are_exact() -> None:
    assert INSTRUCTION_FORMATS["e5"] == "Instruct: {task}\nQuery: {text}"
    assert INSTRUCTION_FORMATS["gte-qwen2"] == "Instruct: {task}\nQuery: {text}"
    assert INSTRUCTION_FORMATS["qwen3"] == "Instruct: {task}\nQuery:{text}"
    assert instruction_prefix("Find it", "nv-embed") == "Instruct: Find it\nQuery: "
    assert instruction_prefix("Find it", "qwen3") == "Instruct: Find it\nQuery:"
    assert instruction_prefix("Find it", "<{task}>{text}") == "<Find it>"
    assert instruction_prefix(None, "e5") == ""


def test_custom_template_and_braces_in_text() -> None:
    wrapper = template_wrapper("Represent: {text} ->")
    assert wrapper.apply("a {b} c") == "Represent: a {b} c ->"


@pytest.mark.parametrize("bad", ["no slot here", "{text} twice {text}", "unknown-name"])
def test_bad_templates_name_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match="template"):
        resolve_template(bad)


def test_bad_instruction_format() -> None:
    with pytest.raises(ValueError, match="instruction_format"):
        instruction_prefix("task", "no slots")
    with pytest.raises(ValueError, match="must end with"):
        instruction_prefix("task", "{task}: {text} (end)")


def test_long_input_keeps_template_tail(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), template="prompteol", max_length=64)
    tokenizer = encoder.backend.tokenizer
    long_text = " ".join(f"word{i}" for i in range(5000))
    (item,) = encoder.tokenize(long_text)
    assert len(item.ids) <= 64
    decoded = tokenizer.decode(item.ids, skip_special_tokens=True)
    assert decoded.startswith('This sentence : "word0 word1')
    assert decoded.endswith('" means in one word:"')
    # The truncated text is a prefix of the original text, cut at a token boundary.
    body = decoded[len('This sentence : "') : -len('" means in one word:"')]
    assert long_text.startswith(body)


def test_max_length_too_small_for_template(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), template="ke", max_length=8)
    with pytest.raises(ValueError, match="max_length=8"):
        encoder.encode("hello")


def _plain_truncation(encoder: Encoder, text: str, prefix: str, template: str) -> list[int]:
    """The rule written out for one text: the prompt's ids when they fit; else cut the text at
    the end of one of its own tokens, first dropping as many tokens as the prompt is over, then
    one more at a time until the prompt fits."""
    tokenizer = encoder.backend.tokenizer
    inputs = encoder.inputs
    budget = inputs.max_length - len(inputs.prefix_ids) - len(inputs.suffix_ids)

    def encode(piece: str) -> list[int]:
        ids: list[int] = tokenizer(
            prefix + template.replace("{text}", piece), add_special_tokens=False
        )["input_ids"]
        return ids

    ids = encode(text)
    if len(ids) > budget:
        alone = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        keep = max(len(alone["input_ids"]) - (len(ids) - budget), 0)
        while True:
            ids = encode(text[: alone["offset_mapping"][keep - 1][1]] if keep else "")
            if len(ids) <= budget or keep == 0:
                break
            keep -= 1
    return inputs.prefix_ids + ids + inputs.suffix_ids


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_batched_truncation_equals_the_plain_rule(tiny_models: dict[str, Path], arch: str) -> None:
    texts = [
        " ".join(f"word{i}" for i in range(n)) + " ünïcödé, punctuation!" * (n % 3)
        for n in (3, 40, 41, 57, 200, 1000)
    ]
    instruction = "Instruct: Given a question, retrieve passages\nQuery: "
    encoder = Encoder(
        str(tiny_models[arch]), template="prompteol", query_instruction="x", max_length=48
    )
    got = encoder.inputs.build(texts, prefix=instruction, template=template_wrapper("prompteol"))
    template = TEMPLATES["prompteol"]
    assert [item.ids for item in got] == [
        _plain_truncation(encoder, text, instruction, template) for text in texts
    ]
    assert max(len(item.ids) for item in got) == 48
