"""The module the Trainer trains: the encoder's network (with a LoRA adapter or every weight
trainable), its latent-attention head, and the stage's loss, run through the encoder's own
pooling step (:meth:`llmvec.Encoder.pool`) so that training sees inference's vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmvec.backends.base import TokenizedText
from llmvec.backends.transformers import TransformersBackend
from llmvec.encoder import Encoder
from llmvec.encoding.batching import batch_overhead_tokens, plan_batches
from llmvec.encoding.prefix_cache import common_prefix
from llmvec.training.config import DEFAULT_LORA_TARGETS, TrainingConfig
from llmvec.training.grad_cache import cached_loss
from llmvec.training.losses import ContrastiveLoss, CoSENTLoss, split_documents
from llmvec.training.mntp import LMHead

#: A training pass (forward and backward) costs this many times an inference pass in fixed
#: per-pass work, in padded tokens: at 8, all-MiniLM-L6-v2 steps ran 1.29x faster than at 1 and
#: SmolLM2's 1.06x (benchmarks/training_speed.py, CPU).
TRAINING_PASS_COST = 8


def transformers_backend(encoder: Encoder) -> TransformersBackend:
    """The encoder's transformers backend; training needs its states and weights."""
    if not isinstance(encoder.backend, TransformersBackend):
        raise ValueError(f"training needs the transformers backend, not {encoder.backend.name!r}")
    return encoder.backend


def lora_targets(model: nn.Module, wanted: Sequence[str] | None) -> list[str]:
    """The linear layers a LoRA adapter wraps: ``wanted`` (each must exist in ``model``) or
    LLM2Vec's (the attention and MLP projections the model has)."""
    names = {
        name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    if wanted is not None:
        missing = sorted(set(wanted) - names)
        if missing:
            raise ValueError(
                f"LoRA targets {missing} are not linear layers of {type(model).__name__}; "
                f"its linear layers: {sorted(names)}"
            )
        return list(wanted)
    found = [name for name in DEFAULT_LORA_TARGETS if name in names]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has none of LLM2Vec's LoRA targets "
            f"{list(DEFAULT_LORA_TARGETS)}; name some of its linear layers {sorted(names)} with "
            "lora_targets"
        )
    return found


def add_lora(backend: TransformersBackend, config: TrainingConfig, layer: int) -> Any:
    """Wrap the backbone's chosen linear layers in the blocks before ``layer`` (later blocks
    never run) in a trainable LoRA adapter (peft); the backend's model runs through it in
    place. Returns the PeftModel, whose ``save_pretrained`` writes the adapter."""
    from peft import LoraConfig, get_peft_model

    kinds = set(lora_targets(backend.model, config.lora_targets))
    names = {id(module): name for name, module in backend.model.named_modules()}
    targets = [
        f"{names[id(block)]}.{name}"
        for block in backend.layers[: min(layer, backend.num_layers)]
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in kinds
    ]
    if not targets:
        raise ValueError(f"no LoRA target lies in the {layer} blocks that run before the pooling")
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    return get_peft_model(backend.model, lora)


def set_attention_dropout(model: nn.Module, probability: float) -> None:
    """SimCSE's noise: dropout on the attention probabilities of every attention module (the
    attribute transformers' decoders read in training mode)."""
    found = False
    for module in model.modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            setattr(module, "attention_dropout", probability)  # noqa: B010 - not a declared field
            found = True
    if not found:
        raise ValueError(f"{type(model).__name__} has no attention dropout to set")


def group_by_shared_head(inputs: Sequence[TokenizedText], overhead: float) -> list[list[int]]:
    """Positions of ``inputs`` by unpooled head (BOS and instruction), where running a head's
    common prefix once saves more tokens than a pass of its own costs; the others together."""
    heads: dict[tuple[int, ...], list[int]] = {}
    for position, item in enumerate(inputs):
        heads.setdefault(tuple(item.ids[: item.pool_start]), []).append(position)
    classes: list[list[int]] = []
    rest: list[int] = []
    for members in heads.values():
        saved = (len(members) - 1) * len(common_prefix([inputs[i] for i in members]))
        if len(heads) == 1 or saved >= overhead:
            classes.append(members)
        else:
            rest.extend(members)
    return [*classes, sorted(rest)] if rest else classes


class EmbeddingModel(nn.Module):
    """The encoder's trainable network and the stage's loss.

    ``forward`` takes what the stage's collator builds: token inputs of queries, positives and
    hard negatives (contrastive stages), of both sentences of scored pairs and their scores
    (CoSENT), or masked ids and labels (MNTP).
    """

    def __init__(
        self,
        encoder: Encoder,
        config: TrainingConfig,
        loss: ContrastiveLoss | CoSENTLoss | None = None,
        lm_head: LMHead | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.backbone = transformers_backend(encoder).model
        self.head = encoder.latent_head
        self.lm_head = lm_head
        self.loss = loss
        self.cache_chunk_size = config.cache_chunk_size

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights being trained (adapter, head), by name: what a checkpoint holds."""
        return {
            name: parameter.detach().contiguous()
            for name, parameter in self.named_parameters()
            if parameter.requires_grad
        }

    def embed(self, inputs: Sequence[TokenizedText]) -> torch.Tensor:
        """Pooled states of ``inputs``, with gradients: inference's own batch step, run on
        groups of rows with the same unpooled head (BOS and instruction), split by length where
        that saves more padding than a pass costs (queries, positives and negatives differ in
        length); the prefix every row of a group starts with (its instruction, a template's
        preamble) runs once for the group."""
        device = transformers_backend(self.encoder).device
        overhead = TRAINING_PASS_COST * batch_overhead_tokens(device)
        groups = [
            [members[i] for i in group]
            for members in group_by_shared_head(inputs, overhead)
            for group in plan_batches(
                [len(inputs[i].ids) for i in members], len(members), None, overhead
            )
        ]
        if len(groups) == 1:
            return self.encoder.pool(inputs, share_prefix=True)
        pooled = torch.cat(
            [self.encoder.pool([inputs[i] for i in group], share_prefix=True) for group in groups]
        )
        order = torch.tensor([i for group in groups for i in group], device=pooled.device)
        return pooled[torch.argsort(order)]

    def forward(
        self,
        queries: Sequence[TokenizedText] = (),
        positives: Sequence[TokenizedText] = (),
        negatives: Sequence[TokenizedText] = (),
        scores: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mntp_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if mntp_labels is not None:
            assert input_ids is not None and attention_mask is not None
            return {"loss": self._mntp(input_ids, attention_mask, mntp_labels)}
        loss = self.loss
        sizes = (len(queries), len(positives), len(negatives))
        rows = [*queries, *positives, *negatives]

        def batch_loss(pooled: torch.Tensor) -> torch.Tensor:
            first, second, hard = split_documents(pooled, sizes)
            if isinstance(loss, CoSENTLoss):
                assert scores is not None
                return loss(first, second, scores.to(pooled.device))
            assert loss is not None
            return loss(first, second, hard)

        if self.cache_chunk_size is not None:
            return {"loss": cached_loss(self.embed, rows, batch_loss, self.cache_chunk_size)}
        return {"loss": batch_loss(self.embed(rows))}

    def _mntp(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """LLM2Vec's masked next-token prediction: the masked token at ``i`` is predicted from
        the state at ``i - 1``; only those states go through the LM head."""
        assert self.lm_head is not None
        backend = transformers_backend(self.encoder)
        hidden = backend.hidden_states(input_ids, attention_mask, backend.num_layers)
        targets = labels[:, 1:].to(hidden.device)
        predicted = targets != -100
        logits = self.lm_head(hidden[:, :-1][predicted])
        return F.cross_entropy(logits.float(), targets[predicted])
