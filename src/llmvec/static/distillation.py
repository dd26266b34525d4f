"""model2vec's recipe through any llmvec encoder: every token of the vocabulary embedded alone by
the model, with the encoder's own template, pooling and layer, then PCA and Zipf / SIF weights.

A token is put where a text goes: ``[CLS] token [SEP]`` for a BERT-style encoder (the mean over
all three, as model2vec does), or inside a PromptEOL / KE template for a decoder (the template's
last token, at the recipe's layer). The static model then averages these rows over a text's
tokens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from llmvec.backends.base import TokenizedText
from llmvec.choices import DEFAULT_EXCLUDED_TOKENS, DEFAULT_SIF_COEFFICIENT
from llmvec.encoder import Encoder
from llmvec.static.codebook import (
    check_static_output,
    principal_components,
    write_static_model,
    zipf_sif_weights,
)
from llmvec.validation import check_positive

logger = logging.getLogger(__name__)

#: Two one-token texts whose inputs differ in the text's position only.
_PROBES = ("a", "b")


def token_slot(
    encoder: Encoder, instruction: str | None = None
) -> tuple[list[int], list[int], int]:
    """The ids before and after a one-token text in the encoder's inputs, and where pooling
    starts: every token is embedded as ``head + [token] + tail``.

    Found by building two one-token texts and locating the one position where they differ;
    a template whose tokens merge with the text's is refused.
    """
    first, second = encoder.tokenize(list(_PROBES), instruction=instruction)
    differing = [i for i, (a, b) in enumerate(zip(first.ids, second.ids, strict=False)) if a != b]
    if len(first.ids) != len(second.ids) or len(differing) != 1:
        raise ValueError(
            "cannot place a single token in this recipe's inputs: the template's tokens merge "
            f"with the text's ({first.ids} vs {second.ids})"
        )
    slot = differing[0]
    if first.pool_start > slot:
        raise ValueError("the recipe pools after the text starts; a token would not be pooled")
    return first.ids[:slot], first.ids[slot + 1 :], first.pool_start


def vocabulary_ids(
    encoder: Encoder,
    vocabulary: Sequence[str] | None,
    exclude: re.Pattern[str] | None = None,
) -> list[int]:
    """Ids of the tokens to distil: ``vocabulary`` (token strings of the encoder's tokenizer),
    or every token but the special and added ones and those that match ``exclude`` fully."""
    tokenizer = encoder.tokenizer
    vocab: dict[str, int] = tokenizer.get_vocab()
    if vocabulary is None:
        added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
        ids = sorted(
            i
            for token, i in vocab.items()
            if i not in added and (exclude is None or not exclude.fullmatch(token))
        )
        if not ids:
            pattern = None if exclude is None else exclude.pattern
            raise ValueError(f"no token of the vocabulary is left once {pattern!r} is excluded")
        return ids
    if isinstance(vocabulary, str):
        raise TypeError("vocabulary must be a sequence of token strings, not one string")
    if not vocabulary:
        raise ValueError("vocabulary is empty")
    unknown = [token for token in vocabulary if token not in vocab]
    if unknown:
        raise ValueError(
            f"{len(unknown)} vocabulary entries are not tokens of the model's tokenizer, e.g. "
            f"{unknown[:5]}; list the tokenizer's own token strings (as in tokenizer.json)"
        )
    return sorted({vocab[token] for token in vocabulary})


def token_vectors(
    encoder: Encoder, ids: Sequence[int], tokens_per_batch: int = 256, show_progress: bool = False
) -> torch.Tensor:
    """Float32 ``(len(ids), hidden)``: each token embedded alone through ``encoder``'s recipe
    (not normalised, not truncated)."""
    check_positive("tokens_per_batch", tokens_per_batch)
    head, tail, pool_start = token_slot(encoder)
    out = torch.empty((len(ids), encoder.backend.hidden_size), dtype=torch.float32)
    with (
        torch.inference_mode(),
        tqdm(total=len(ids), disable=not show_progress, desc="llmvec distill", unit="token") as bar,
    ):
        for first in range(0, len(ids), tokens_per_batch):
            chunk = ids[first : first + tokens_per_batch]
            inputs = [TokenizedText([*head, token, *tail], pool_start) for token in chunk]
            pooled = encoder.pool(inputs, share_prefix=True)
            out[first : first + len(chunk)] = pooled.float().cpu()
            bar.update(len(chunk))
    return out


def distill(
    model: str | Encoder,
    path: str | Path,
    dim: int | None = 256,
    *,
    vocabulary: Sequence[str] | None = None,
    exclude: str | None = DEFAULT_EXCLUDED_TOKENS,
    sif_coefficient: float | None = DEFAULT_SIF_COEFFICIENT,
    tokens_per_batch: int = 256,
    show_progress: bool = False,
    **encoder_kwargs: Any,
) -> Path:
    """Distil a static model from ``model`` (model2vec's method) into the folder ``path``.

    Args:
        model: an :class:`~llmvec.Encoder` or what one loads (packaged name, folder, a model
            trained by ``llmvec train``), with ``encoder_kwargs`` (``template="ke"``,
            ``pooling``, ``layer``...): each token is embedded with that recipe.
        path: output folder, written atomically; load it with ``Encoder(path, backend="static")``.
        dim: principal components kept (``None``: all, unrotated).
        vocabulary: token strings of the model's tokenizer to distil (others get zero rows,
            which leave a normalised vector's direction as it is); default every non-special
            token but those matching ``exclude``.
        exclude: a regular expression of tokens left out of the default vocabulary
            (:data:`DEFAULT_EXCLUDED_TOKENS`; ``None`` keeps every token).
        sif_coefficient: Zipf / SIF token weights ``a / (a + p)``, a distilled token's
            frequency estimated from its rank among the distilled tokens (``None``: none).
        tokens_per_batch: tokens embedded per forward pass.
    """
    if isinstance(model, Encoder) and encoder_kwargs:
        raise TypeError("pass encoder options to Encoder, not with an Encoder instance")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim must be a positive integer or None, got {dim!r}")
    try:
        excluded = re.compile(exclude) if exclude else None
    except re.error as error:
        raise ValueError(f"exclude {exclude!r} is not a regular expression: {error}") from None
    check_static_output(path)
    encoder = model if isinstance(model, Encoder) else Encoder(model, **encoder_kwargs)
    hidden = encoder.backend.hidden_size
    ids = vocabulary_ids(encoder, vocabulary, excluded)
    if dim is not None and dim > min(hidden, len(ids)):
        raise ValueError(
            f"dim={dim} exceeds what the teacher gives: {hidden} dimensions over {len(ids)} tokens"
        )
    weights = None
    if sif_coefficient is not None:
        weights = torch.ones(len(encoder.tokenizer))
        weights[torch.tensor(ids)] = zipf_sif_weights(len(ids), sif_coefficient)
    logger.info("distilling %d tokens of %s", len(ids), encoder)
    vectors = token_vectors(encoder, ids, tokens_per_batch, show_progress)
    if dim is not None:
        vectors = principal_components(vectors, dim)
    table = torch.zeros((len(encoder.tokenizer), vectors.shape[1]), dtype=torch.float32)
    table[torch.tensor(ids)] = vectors
    spec = encoder.spec
    metadata = {
        "method": "llmvec.static.distill",
        "teacher": spec.to_json(),
        "tokens": str(len(ids)),
        "pca_dim": str(dim or ""),
        "sif_coefficient": "" if sif_coefficient is None else repr(sif_coefficient),
    }
    return write_static_model(path, table, encoder.tokenizer, weights, metadata)
