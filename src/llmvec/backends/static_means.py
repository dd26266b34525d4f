"""The static backend's lean path: texts to the mean of their tokens' rows, through the
tokenizers library's batch encoder and a numpy gather-and-reduce (no input builder, no torch).

What is pooled is what WordLlama and model2vec pool: each text's own tokens (no special
tokens), its first ``max_tokens`` of them, the unknown token left out. A text with no tokens
gets a zero vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

from llmvec.encoding.inputs import MIN_CHARS_PER_TOKEN, WINDOW_MARGIN_TOKENS

#: Token rows gathered at once (bounds the memory of one reduction step).
GATHER_ROWS = 1 << 16
#: Texts tokenized at once (bounds the memory of the token id lists of a huge call).
TEXTS_PER_BLOCK = 8192


class TokenMeans:
    """Mean token rows of texts for one tokenizer and one ``(vocab, dim)`` table."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, rows: np.ndarray) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise ValueError("the static backend's lean path needs a fast tokenizer")
        # A copy: padding or truncation saved in tokenizer.json must not apply here.
        self._tokenizer = Tokenizer.from_str(backend.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.rows = rows
        unknown = tokenizer.unk_token_id
        self._unknown = unknown if isinstance(unknown, int) and unknown < len(rows) else None
        longest = max((len(token) for token in tokenizer.get_vocab()), default=0)
        self._chars_per_token = max(MIN_CHARS_PER_TOKEN, longest)

    def token_ids(self, texts: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """The pooled token ids of every text, concatenated, and how many each text has."""
        # A text far longer than max_tokens tokens is tokenized from its head only, unless a
        # normalizer dropped so much of that head that it gave too few tokens.
        window = self._chars_per_token * (max_tokens + WINDOW_MARGIN_TOKENS)
        heads = [text if len(text) <= window else text[:window] for text in texts]
        ids = [e.ids for e in self._tokenizer.encode_batch_fast(heads, add_special_tokens=False)]
        short = [
            row
            for row, text in enumerate(texts)
            if len(text) > window and len(ids[row]) < max_tokens
        ]
        if short:
            whole = self._tokenizer.encode_batch_fast(
                [texts[row] for row in short], add_special_tokens=False
            )
            for row, encoding in zip(short, whole, strict=True):
                ids[row] = encoding.ids
        return self._pooled_ids(
            [row if len(row) <= max_tokens else row[:max_tokens] for row in ids]
        )

    def __call__(self, texts: Sequence[str], max_tokens: int) -> np.ndarray:
        """Float32 ``(len(texts), dim)``: each text's mean token row, a block of texts at a
        time."""
        out = np.empty((len(texts), self.rows.shape[1]), dtype=np.float32)
        for first in range(0, len(texts), TEXTS_PER_BLOCK):
            block = texts[first : first + TEXTS_PER_BLOCK]
            out[first : first + len(block)] = mean_rows(
                self.rows, *self.token_ids(block, max_tokens)
            )
        return out

    def of_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Float32 ``(len(ids), dim)``: the mean row of each list of token ids (already
        tokenized and cut), the unknown token left out as for texts."""
        return mean_rows(self.rows, *self._pooled_ids(ids))

    def _pooled_ids(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The ids concatenated without the unknown token, and how many each list keeps."""
        counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(counts.sum()))
        if self._unknown is not None:
            known = flat != self._unknown
            if not known.all():
                owner = np.repeat(np.arange(len(ids)), counts)
                counts = np.bincount(owner[known], minlength=len(ids)).astype(np.int64)
                flat = flat[known]
        return flat, counts


def mean_rows(rows: np.ndarray, flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean of ``rows[flat[...]]`` over each consecutive run of ``counts`` ids.

    Texts of one length are reduced together, a ``(texts, length, dim)`` gather summed over its
    middle axis, in slices of at most :data:`GATHER_ROWS` rows.
    """
    out = np.zeros((len(counts), rows.shape[1]), dtype=np.float32)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    order = np.argsort(counts, kind="stable")
    bounds = np.flatnonzero(np.diff(counts[order])) + 1
    for group in np.split(order, bounds):
        length = int(counts[group[0]]) if len(group) else 0
        if length == 0:
            continue
        step = max(1, GATHER_ROWS // length)
        offsets = np.arange(length)
        for first in range(0, len(group), step):
            members = group[first : first + step]
            positions = starts[members][:, None] + offsets
            gathered = rows[flat[positions]]
            out[members] = gathered.sum(axis=1)
    np.divide(out, np.maximum(counts, 1)[:, None], out=out)
    return out
