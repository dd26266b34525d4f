"""Prompt templates (PromptEOL, PCoTEOL, KE, custom) and instruction formats.

A template wraps the text; an instruction format puts a task description before it. Both are
split around their ``{text}`` slot so the encoder can truncate the text alone and keep the
instruction out of pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

TEXT_SLOT = "{text}"
TASK_SLOT = "{task}"

#: Exact strings from the papers (PromptEOL: Jiang et al. 2023; PCoTEOL and KE: Zhang et al. 2024).
TEMPLATES: dict[str, str] = {
    "prompteol": 'This sentence : "{text}" means in one word:"',
    "pcoteol": 'After thinking step by step , this sentence : "{text}" means in one word:"',
    "ke": (
        "The essence of a sentence is often captured by its main subjects and actions, while "
        "descriptive terms provide additional but less central details. With this in mind , "
        'this sentence : "{text}" means in one word:"'
    ),
}

#: Templates whose papers pool the second-to-last layer (llemb's smart default).
PENULTIMATE_LAYER_TEMPLATES = frozenset({"pcoteol", "ke"})

#: Instruction formats of the model families that train with them.
INSTRUCTION_FORMATS: dict[str, str] = {
    "e5": "Instruct: {task}\nQuery: {text}",  # e5-mistral-7b-instruct
    "gte-qwen2": "Instruct: {task}\nQuery: {text}",  # gte-Qwen2-*-instruct
    "qwen3": "Instruct: {task}\nQuery:{text}",  # Qwen3-Embedding (no space after "Query:")
    "nv-embed": "Instruct: {task}\nQuery: {text}",  # NV-Embed: prefix, excluded from pooling
    # LLM2Vec (supervised checkpoints): "instruction text", the instruction left out of pooling
    "llm2vec": "{task} {text}",
}


@dataclass(frozen=True)
class Wrapper:
    """A string with one ``{text}`` slot, split into the parts before and after it."""

    prefix: str
    suffix: str

    def apply(self, text: str) -> str:
        return f"{self.prefix}{text}{self.suffix}"

    @property
    def source(self) -> str:
        return f"{self.prefix}{TEXT_SLOT}{self.suffix}"


NO_TEMPLATE = Wrapper("", "")


def _split_on_text_slot(template: str, what: str) -> Wrapper:
    count = template.count(TEXT_SLOT)
    if count != 1:
        raise ValueError(
            f"{what} {template!r} must contain exactly one {TEXT_SLOT!r} slot, found {count}"
        )
    prefix, suffix = template.split(TEXT_SLOT)
    return Wrapper(prefix, suffix)


def resolve_template(template: str | None) -> str | None:
    """Return the full template string for a name (``prompteol``, ``pcoteol``, ``ke``) or a
    custom string with one ``{text}`` slot; ``None`` stays ``None``."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise TypeError(f"template must be a string or None, got {type(template).__name__}")
    key = template.lower()
    if key in TEMPLATES:
        return TEMPLATES[key]
    if TEXT_SLOT not in template:
        raise ValueError(
            f"unknown template {template!r}: use one of {sorted(TEMPLATES)} or a custom string "
            f"with one {TEXT_SLOT!r} slot"
        )
    _split_on_text_slot(template, "template")
    return template


def template_name(template: str | None) -> str | None:
    """The built-in name of a template string, if it is one."""
    if template is None:
        return None
    for name, source in TEMPLATES.items():
        if template == source or template.lower() == name:
            return name
    return None


def template_wrapper(template: str | None) -> Wrapper:
    """The prefix/suffix pair of a resolved template (empty for no template)."""
    resolved = resolve_template(template)
    if resolved is None:
        return NO_TEMPLATE
    return _split_on_text_slot(resolved, "template")


def resolve_instruction_format(instruction_format: str | None) -> str:
    """Return the format string for a family name or a custom ``{task}``/``{text}`` string.

    ``None`` means the e5 format, the one most instruction-tuned embedding LLMs share.
    """
    if instruction_format is None:
        return INSTRUCTION_FORMATS["e5"]
    if not isinstance(instruction_format, str):
        raise TypeError(
            f"instruction_format must be a string or None, got {type(instruction_format).__name__}"
        )
    key = instruction_format.lower()
    if key in INSTRUCTION_FORMATS:
        return INSTRUCTION_FORMATS[key]
    if TASK_SLOT not in instruction_format or TEXT_SLOT not in instruction_format:
        raise ValueError(
            f"unknown instruction_format {instruction_format!r}: use one of "
            f"{sorted(INSTRUCTION_FORMATS)} or a custom string with {TASK_SLOT!r} and "
            f"{TEXT_SLOT!r} slots"
        )
    return instruction_format


def instruction_prefix(instruction: str | None, instruction_format: str | None) -> str:
    """The text placed before the (templated) input for an instruction; '' for none.

    The format's text slot must come last: everything after the task forms a prefix, which the
    encoder keeps out of pooling.
    """
    if instruction is None or instruction == "":
        return ""
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a string or None, got {type(instruction).__name__}")
    fmt = resolve_instruction_format(instruction_format)
    wrapper = _split_on_text_slot(fmt, "instruction_format")
    if wrapper.suffix:
        raise ValueError(
            f"instruction_format {fmt!r} must end with {TEXT_SLOT!r}: text after the input "
            "would be pooled as if it were the input"
        )
    return wrapper.prefix.replace(TASK_SLOT, instruction)
