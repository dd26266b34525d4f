"""What one training stage runs with: the recipe, the adapter, the loss, the loop. Checked
before a model loads; written as ``training_config.json`` next to the stage's output."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from llmvec.encoding.pooling import POOLERS
from llmvec.encoding.templates import resolve_instruction_format
from llmvec.training.losses import DEFAULT_TEMPERATURE
from llmvec.training.mntp import DEFAULT_MASK_PROBABILITY, MASK_TOKEN_CHOICES
from llmvec.validation import known_options

STAGES = ("mntp", "simcse", "contrastive", "cosent")
#: LLM2Vec's LoRA targets: every linear layer of the attention and the MLP.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Phase:
    """One part of a multi-phase contrastive schedule (NV-Embed: retrieval data with in-batch
    negatives, then mixed tasks without): its data, negatives and length."""

    data: tuple[str, ...]
    in_batch_negatives: bool = True
    max_steps: int | None = None
    epochs: float = 1.0

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("a phase needs at least one data file")
        if self.max_steps is not None:
            _positive("max_steps", self.max_steps)
        if not self.epochs > 0:
            raise ValueError(f"a phase's epochs must be positive, got {self.epochs}")


@dataclass(frozen=True)
class TrainingConfig:
    """One stage of ``llmvec train``.

    The recipe fields are the :class:`~llmvec.Encoder`'s; the trained folder keeps them, so
    ``Encoder(output)`` encodes as the trainer did. ``lora_rank=0`` trains every weight instead
    of an adapter (BERT-style encoders such as all-MiniLM-L6-v2).
    """

    stage: str
    model: str
    data: tuple[str, ...]
    output: str
    # the recipe
    pooling: str | None = None
    template: str | None = None
    layer: int | None = None
    bidirectional: bool | None = None
    query_instruction: str | None = None
    instruction_format: str | None = None
    max_length: int = 128
    # the adapter
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | None = None
    #: Dropout on the attention probabilities (SimCSE's noise; LLM2Vec uses 0.3); ``None``:
    #: 0.1 for ``simcse``, the model's own otherwise.
    attention_dropout: float | None = None
    # the loss
    temperature: float = DEFAULT_TEMPERATURE
    in_batch_negatives: bool = True
    matryoshka_dims: tuple[int, ...] = ()
    binary: bool = False
    #: GradCache chunk size: embed the batch this many rows at a time (``None``: all at once).
    cache_chunk_size: int | None = None
    mask_probability: float = DEFAULT_MASK_PROBABILITY
    mask_token: str = "blank"
    phases: tuple[Phase, ...] = ()
    # the loop
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    epochs: float = 1.0
    max_steps: int | None = None
    gradient_accumulation: int = 1
    #: Stop (with a checkpoint) after this many seconds of training. The learning-rate
    #: schedule spans ``max_steps`` (or the epochs): set ``max_steps`` to what the budget holds.
    time_budget_s: float | None = None
    seed: int = 42
    #: bfloat16 autocast; ``None``: on where the CPU has bf16 matrix units, or on a GPU.
    bf16: bool | None = None
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    eval_sts: str | None = None
    eval_fraction: float = 0.0
    eval_steps: int | None = None
    save_steps: int = 100
    save_total_limit: int | None = 2
    resume: bool = False
    device: str | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown training stage {self.stage!r}; allowed: {list(STAGES)}")
        if not self.data and not self.phases:
            raise ValueError(f"the {self.stage} stage needs at least one data file")
        for path in [*self.data, *(p for phase in self.phases for p in phase.data)]:
            if not Path(path).is_file():
                raise FileNotFoundError(f"training data {path!r} does not exist")
        if self.pooling is not None and self.pooling not in POOLERS:
            raise ValueError(f"unknown pooling {self.pooling!r}; allowed: {sorted(POOLERS)}")
        resolve_instruction_format(self.instruction_format)
        if self.mask_token not in MASK_TOKEN_CHOICES:
            raise ValueError(
                f"unknown mask token {self.mask_token!r}; allowed: {list(MASK_TOKEN_CHOICES)}"
            )
        for name in ("max_length", "batch_size", "gradient_accumulation", "save_steps"):
            _positive(name, getattr(self, name))
        for name in ("max_steps", "eval_steps", "cache_chunk_size", "save_total_limit"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be 0 (no adapter) or positive, got {self.lora_rank}")
        for name in ("lora_dropout", "mask_probability", "eval_fraction", "warmup_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.stage == "mntp" and not self.mask_probability > 0.0:
            raise ValueError("mask_probability must be positive for the mntp stage")
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be in [0, 1), got {self.attention_dropout}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not self.epochs > 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be positive, got {self.time_budget_s}")
        if self.eval_sts is not None and not Path(self.eval_sts).is_file():
            raise FileNotFoundError(f"STS evaluation file {self.eval_sts!r} does not exist")
        if self.stage == "mntp" and (self.pooling or self.template or self.matryoshka_dims):
            raise ValueError(
                "the mntp stage trains token predictions: no pooling, template or loss"
            )
        if self.phases and self.stage != "contrastive":
            raise ValueError("phases are a contrastive-stage schedule")
        if self.stage == "cosent":
            self._check_cosent()

    def _check_cosent(self) -> None:
        """CoSENT scores sentence pairs as STS does: both sides documents, no retrieval split."""
        if self.query_instruction is not None:
            raise ValueError(
                "the cosent stage encodes both sentences of a pair as documents: no "
                "query_instruction"
            )
        if self.eval_fraction:
            raise ValueError(
                "the cosent stage has no queries to cut a retrieval dev split by: score it with "
                "eval_sts"
            )

    @property
    def trains_adapter(self) -> bool:
        return self.lora_rank > 0

    def recipe(self) -> dict[str, Any]:
        """The Encoder arguments of this stage's recipe."""
        bidirectional = True if self.stage == "mntp" else self.bidirectional
        return {
            "pooling": self.pooling,
            "template": self.template,
            "layer": self.layer,
            "bidirectional": bidirectional,
            "query_instruction": self.query_instruction,
            "instruction_format": self.instruction_format,
        }

    def for_phase(self, phase: Phase, output: str) -> TrainingConfig:
        """This configuration running one phase into ``output``."""
        return replace(
            self,
            data=phase.data,
            in_batch_negatives=phase.in_batch_negatives,
            max_steps=phase.max_steps,
            epochs=phase.epochs,
            phases=(),
            output=output,
        )

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """A configuration from JSON-like data; unknown keys are refused by name."""
        values = known_options(cls, data, "training options")
        for key in ("data", "matryoshka_dims", "lora_targets"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if "phases" in values:
            values["phases"] = tuple(_phase(p) for p in values["phases"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> TrainingConfig:
        """A configuration read from a JSON file, with ``overrides`` on top."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"training configuration {path} is not valid JSON: {error}") from None
        return cls.from_dict({**data, **overrides})


def _phase(data: Any) -> Phase:
    if not isinstance(data, dict):
        raise ValueError(f"a phase is an object with 'data', got {data!r}")
    values = known_options(Phase, data, "phase options")
    return Phase(**{**values, "data": tuple(values.get("data", ()))})


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
