"""Tiny random models built from a config, for tests and examples that must run offline.

``build_tiny_model(arch, path)`` writes a loadable model folder (config, random weights, a fast
tokenizer trained on a few sentences) that :class:`llmvec.Encoder` opens like any checkpoint.
``record_forward_passes(encoder)`` logs the forward passes an encoder makes;
``unpadded_states`` is the plain reference the pooling tests compare against.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

from llmvec.backends.base import Backend
from llmvec.compress import normalize

if TYPE_CHECKING:
    from llmvec.encoder import Encoder

TINY_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gpt2")

# Tokenizer conventions of each family: Llama, Mistral and Gemma prepend BOS; Qwen and GPT-2
# do not. GPT-2 has learned absolute positions, so it catches position-id mistakes RoPE hides.
_ADDS_BOS = {
    "llama": True,
    "mistral": True,
    "qwen2": False,
    "qwen3": False,
    "gemma": True,
    "gpt2": False,
}

_CORPUS = [
    "A man is playing a guitar. A woman is slicing an onion. The cat sat on the mat.",
    "Query: what is the capital of France? Paris is the capital and largest city of France.",
    "Instruct: Given a question, retrieve passages that answer the question",
    'This sentence : "x" means in one word:" After thinking step by step , this sentence',
    "The essence of a sentence is often captured by its main subjects and actions, while "
    "descriptive terms provide additional but less central details. With this in mind ,",
    "Scientists found that proteins fold; stock markets fell 3% on Monday 2024-01-05!",
]


def build_tokenizer(adds_bos: bool, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ``<s>``/``</s>``/``<pad>`` trained on a few sentences."""
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    if adds_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def build_tiny_model(
    arch: str, path: str | Path, *, num_layers: int = 3, hidden_size: int = 64, seed: int = 0
) -> Path:
    """Write a tiny random ``arch`` model (float32) with its tokenizer to ``path``."""
    import torch

    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; allowed: {list(TINY_ARCHITECTURES)}")
    path = Path(path)
    tokenizer = build_tokenizer(_ADDS_BOS[arch])
    config = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = AutoModel.from_config(config, dtype=torch.float32)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@dataclass
class ForwardLog:
    """What :func:`record_forward_passes` saw: the batch size of each forward pass, and the most
    passes that ran at the same time."""

    batch_sizes: list[int] = field(default_factory=list)
    max_concurrent: int = 0


@contextmanager
def record_forward_passes(encoder: Encoder, hold_s: float = 0.01) -> Iterator[ForwardLog]:
    """Log every forward pass ``encoder`` makes inside the block (the passes run as usual).

    Each pass is held ``hold_s`` seconds longer so that passes which could overlap do overlap,
    which makes ``max_concurrent`` show whether callers serialise their calls.
    """
    log = ForwardLog()
    backend = encoder.backend
    if not isinstance(backend, Backend):
        raise TypeError(f"the {backend.name} backend pools inside its engine: no forward passes")
    forward = backend.hidden_states
    wrapped_already = "hidden_states" in vars(backend)  # an outer recorder's wrapper
    guard = threading.Lock()
    running = 0

    def recorded(input_ids: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal running
        with guard:
            running += 1
            log.batch_sizes.append(len(input_ids))
            log.max_concurrent = max(log.max_concurrent, running)
        try:
            time.sleep(hold_s)
            return forward(input_ids, *args, **kwargs)
        finally:
            with guard:
                running -= 1

    backend.hidden_states = recorded  # type: ignore[method-assign]
    try:
        yield log
    finally:
        if wrapped_already:
            backend.hidden_states = forward  # type: ignore[method-assign]
        else:
            del backend.hidden_states  # type: ignore[method-assign]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b`` (plain numpy, a test reference)."""
    return np.asarray(np.sum(normalize(a) * normalize(b), axis=1))


#: Sentences of different lengths (one word to a long one), for tests that compare vectors.
SAMPLE_TEXTS = [
    "The honey bee dances to show where the flowers are.",
    "Paris is the capital of France.",
    "Stock markets fell sharply on Monday after the announcement.",
    "How many legs does a spider have?",
    "short",
]
#: A retrieval instruction, for tests of the query side.
SAMPLE_INSTRUCTION = "Given a question, retrieve passages that answer it"


def assert_same_vectors(got: Any, expected: np.ndarray, min_cosine: float = 0.9999) -> None:
    """``got`` (rows or one row, lists or an array) has ``expected``'s shape, and each row's
    cosine to its ``expected`` row exceeds ``min_cosine``."""
    rows = np.atleast_2d(np.asarray(got, dtype=np.float32))
    assert rows.shape == expected.shape, (rows.shape, expected.shape)
    lowest = float(row_cosines(rows, expected).min())
    assert lowest > min_cosine, f"lowest cosine {lowest}"


def unpadded_states(path: str | Path, encoder: Encoder, texts: list[str]) -> list[torch.Tensor]:
    """A plain reference: each text's ids (as ``encoder`` builds them) run alone through
    ``AutoModel`` (no padding, no cache); per text, the states of ``encoder``'s layer."""
    model = AutoModel.from_pretrained(path).eval()
    states = []
    for item in encoder.tokenize(texts):
        with torch.inference_mode():
            output = model(torch.tensor([item.ids]), output_hidden_states=True)
        states.append(output.hidden_states[encoder.recipe.layer][0])
    return states
