"""LLM2Vec's masked next-token prediction (MNTP): the mask token, BERT's masking of a batch,
the loss read one position early, and the LM head that stage alone needs."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils.hub import cached_file

from llmvec.models import resolve_model

MASK_TOKEN_CHOICES = ("blank", "eos", "mask")
DEFAULT_MASK_PROBABILITY = 0.2

#: The label of a position that carries no loss (transformers' and PyTorch's convention).
IGNORE_INDEX = -100
#: Of the selected tokens, the share replaced by the mask token (BERT's 80%).
_MASK_SHARE = 0.8
#: Of the selected tokens left after that, the share replaced by a random token (10% of all).
_RANDOM_SHARE = 0.5


def mask_token_id(tokenizer: PreTrainedTokenizerBase, choice: str = "blank") -> int:
    """The token LLM2Vec masks with: the tokenizer's own mask token when it has one; else
    ``"blank"``, the token ``_``, or ``"eos"``, the EOS token. ``"mask"`` needs a tokenizer with
    a mask token (LLM2Vec adds a new ``<mask>`` and grows the embeddings; llmvec does not)."""
    if choice not in MASK_TOKEN_CHOICES:
        raise ValueError(f"unknown mask token {choice!r}; allowed: {list(MASK_TOKEN_CHOICES)}")
    own = tokenizer.mask_token_id
    if own is not None:
        return int(own)
    if choice == "blank":
        blank = tokenizer.convert_tokens_to_ids("_")
        unknown = blank == tokenizer.unk_token_id and tokenizer.unk_token != "_"
        if not isinstance(blank, int) or unknown:
            raise ValueError(
                "the tokenizer has no '_' token for mask token 'blank'; choose 'eos' "
                f"(allowed: {list(MASK_TOKEN_CHOICES)})"
            )
        return blank
    if choice == "eos":
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError(
                f"the tokenizer has no EOS token for mask token 'eos'; allowed: "
                f"{list(MASK_TOKEN_CHOICES)}"
            )
        return int(eos)
    raise ValueError(
        "mask token 'mask' needs a tokenizer with a mask token, and this one has none; "
        f"choose 'blank' or 'eos' (allowed: {list(MASK_TOKEN_CHOICES)})"
    )


def mask_batch(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    *,
    mask_id: int,
    probability: float = DEFAULT_MASK_PROBABILITY,
    generator: torch.Generator | None = None,
    special_ids: Collection[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input ids, labels) by BERT's rule, as LLM2Vec runs it through transformers'
    ``DataCollatorForLanguageModeling``: each real token that is not one of the tokenizer's
    special tokens (nor of ``special_ids``) is selected with ``probability``; of those, 80% become
    ``mask_id``, 10% a random token of the tokenizer, 10% stay. Labels are the original ids where
    selected, ``IGNORE_INDEX`` elsewhere.

    The random draws are the collator's, in its order, on ``generator``'s device: for the same
    generator state both give the same batch. (Without a special-tokens mask from its dataset,
    the collator also skips LLM2Vec's mask token, e.g. ``_``: ``special_ids={mask_id}``.)
    """
    if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
        raise ValueError(
            "input_ids and attention_mask must be (batch, length) of the same shape, got "
            f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}"
        )
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    device = generator.device if generator is not None else input_ids.device
    ids = input_ids.to(device)
    specials = sorted({*tokenizer.all_special_ids, *special_ids})
    excluded = torch.tensor(specials, dtype=torch.long, device=device)
    never = (attention_mask.to(device) == 0) | torch.isin(ids, excluded)

    def shares(share: float) -> torch.Tensor:
        return torch.full(ids.shape, share, dtype=torch.float32, device=device)

    chances = shares(probability).masked_fill_(never, 0.0)
    selected = torch.bernoulli(chances, generator=generator).bool()
    replaced = torch.bernoulli(shares(_MASK_SHARE), generator=generator).bool() & selected
    randomised = torch.bernoulli(shares(_RANDOM_SHARE), generator=generator).bool()
    randomised &= selected & ~replaced
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator, device=device)
    masked = torch.where(randomised, random_ids, ids.masked_fill(replaced, mask_id))
    labels = ids.masked_fill(~selected, IGNORE_INDEX)
    return masked.to(input_ids.device), labels.to(input_ids.device)


def mntp_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the prediction at position ``i - 1`` for the label at position ``i``
    (LLM2Vec's shift: a decoder's state predicts the next token), in float32, averaged over the
    labelled positions (zero when there are none). A label at position 0 is never used."""
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            "logits must be (batch, length, vocabulary) and labels (batch, length), got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    targets = labels[:, 1:]
    labelled = targets != IGNORE_INDEX
    predictions = logits[:, :-1][labelled].float()
    total = F.cross_entropy(predictions, targets[labelled], reduction="sum")
    return total / labelled.sum().clamp(min=1)


class LMHead(nn.Module):
    """The LM head for MNTP only, outside the embedder (which keeps no head): the input
    embeddings' own weight where the config ties them, else ``lm_head.weight`` read from the
    model's safetensors files (or ``output.weight`` from its GGUF file), frozen. Gemma 2's final
    logit soft-capping is applied as its causal-LM model applies it."""

    def __init__(self, weight: torch.Tensor, softcap: float | None = None) -> None:
        """``weight`` ``(vocabulary, hidden)``: a parameter is shared as it is, any other tensor
        becomes a frozen parameter."""
        super().__init__()
        if not isinstance(weight, nn.Parameter):
            weight = nn.Parameter(weight, requires_grad=False)
        self.weight = weight
        self.softcap = softcap

    @classmethod
    def for_model(cls, model: PreTrainedModel, location: str | None = None) -> LMHead:
        """The head of ``model`` (a bare ``AutoModel``). ``location`` (anything
        :func:`~llmvec.models.resolve_model` takes) holds the untied weight; by default the
        folder or hub id ``model`` was loaded from (at the commit it was loaded at)."""
        embedding = model.get_input_embeddings()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"{type(model).__name__}'s input embeddings are not an nn.Embedding")
        config = model.config
        softcap = getattr(config, "final_logit_softcapping", None)
        if getattr(config, "tie_word_embeddings", False):
            return cls(embedding.weight, softcap)
        revision = None if location else getattr(config, "_commit_hash", None)
        where = location or model.name_or_path
        if not where:
            raise ValueError(
                f"{type(model).__name__} was not loaded from a checkpoint and does not tie its "
                "LM head: pass the location of the checkpoint that holds the head"
            )
        weight = _untied_weight(where, revision)
        if weight.shape[1] != embedding.embedding_dim:
            raise ValueError(
                f"the LM head weight {tuple(weight.shape)} does not match the hidden size "
                f"{embedding.embedding_dim}"
            )
        return cls(weight.to(device=embedding.weight.device, dtype=embedding.weight.dtype), softcap)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary for the final hidden states ``(batch, length, hidden)``."""
        logits = F.linear(hidden, self.weight)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _untied_weight(model: str, revision: str | None) -> torch.Tensor:
    """``lm_head.weight`` of a safetensors checkpoint, or ``output.weight`` of a GGUF file."""
    location = resolve_model(model)
    if location.gguf_file is not None:
        return _gguf_tensor(Path(location.name_or_path) / location.gguf_file, "output.weight")
    return _safetensors_tensor(location.name_or_path, "lm_head.weight", revision)


def _safetensors_tensor(name_or_path: str, key: str, revision: str | None) -> torch.Tensor:
    """Tensor ``key`` of a folder's or hub model's safetensors files (sharded or single)."""
    found = {"_raise_exceptions_for_missing_entries": False, "revision": revision}
    index = cached_file(name_or_path, "model.safetensors.index.json", **found)
    if index is not None:
        shard = json.loads(Path(index).read_text())["weight_map"].get(key)
        file = None if shard is None else cached_file(name_or_path, shard, **found)
    else:
        file = cached_file(name_or_path, "model.safetensors", **found)
    if file is not None:
        with safe_open(file, framework="pt") as handle:
            names = handle.keys()
            if key in names:
                tensor: torch.Tensor = handle.get_tensor(key)
                return tensor
    raise ValueError(
        f"{name_or_path!r} holds no {key!r} in safetensors files, and its config does not tie the "
        "LM head to the input embeddings; pass the checkpoint with the head (or its GGUF file)"
    )


def _gguf_tensor(path: Path, name: str) -> torch.Tensor:
    """Tensor ``name`` of a GGUF file, de-quantized to float32."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    for tensor in GGUFReader(path).tensors:
        if tensor.name == name:
            return torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).copy())
    raise ValueError(
        f"the GGUF file {str(path)!r} holds no {name!r} tensor, and its config does not tie the "
        "LM head to the input embeddings"
    )
