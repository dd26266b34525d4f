"""The options of a static model's training run, every one checked before anything loads."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmvec.backends.static_files import codebook_dim, locate
from llmvec.static.codebook import check_static_output
from llmvec.static.embedder import DISTILLATION_LOSSES
from llmvec.training.losses import DEFAULT_TEMPERATURE
from llmvec.validation import known_options

DEFAULT_STATIC_MODEL = "wordllama"
#: Integer options for which 0 is a value, not a mistake.
_MAY_BE_ZERO = ("seed", "common_components")


@dataclass(frozen=True)
class StaticTrainingConfig:
    """What :func:`train_static` trains; every option is checked when the configuration is made,
    before any model or data loads.

    Args:
        output: the folder to write (missing, empty, or an earlier static model).
        model: the static model to start from: a packaged name (``wordllama``) or a folder.
        data: (query, positive[, negative]) rows for the contrastive loss (JSONL, CSV, TSV).
        scored_pairs: (sentence1, sentence2, score) rows for the CoSENT loss (JSONL, CSV, TSV),
            e.g. STS-B train.
        texts: plain texts to distil on (needs ``teacher``), on top of those of ``data``.
        teacher: any model :class:`~llmvec.Encoder` loads; its vectors of every text are computed
            once, up front.
        dim: the output dimension of the learned projection (``None``: the table's).
        train_table: also train the table rows (``False``: token weights and projection only).
        matryoshka_dims: train each prefix of the vector (empty: the full vector only).
        binary: add each loss on sign-binarised vectors (straight-through gradient).
        temperature: of the contrastive loss and of CoSENT (0.05: CoSENT's scale of 20).
        distill_loss: ``similarity`` (the student's and teacher's in-batch cosine-similarity
            matrices matched: any teacher width) or ``vectors`` (each text's teacher vector,
            PCA'd to the student's width, as tokenlearn trains).
        max_tokens: tokens pooled per text, as inference pools them (``Encoder(max_length=...)``).
        dev_fraction: share of the pairs' queries held out, scored before and after training.
        common_components: after training, this many common directions (SIF) of the vectors
            of every training text are projected out of the model (0: none; see
            :func:`~llmvec.static.remove_common_components`); the dev score after training is
            taken after it.
    """

    output: str
    model: str = DEFAULT_STATIC_MODEL
    data: str | None = None
    scored_pairs: str | None = None
    texts: str | None = None
    teacher: str | None = None
    dim: int | None = None
    train_table: bool = False
    matryoshka_dims: tuple[int, ...] = ()
    binary: bool = False
    temperature: float = DEFAULT_TEMPERATURE
    distill_loss: str = "similarity"
    distill_weight: float = 1.0
    contrastive_weight: float = 1.0
    cosent_weight: float = 1.0
    batch_size: int = 64
    learning_rate: float = 1e-3
    epochs: float = 1.0
    max_steps: int | None = None
    seed: int = 42
    max_tokens: int = 512
    dev_fraction: float = 0.0
    common_components: int = 0
    show_progress: bool = True

    def __post_init__(self) -> None:
        for name in ("output", "model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if self.teacher is not None and (not isinstance(self.teacher, str) or not self.teacher):
            raise ValueError(f"teacher must be a model name or folder, got {self.teacher!r}")
        if self.distill_loss not in DISTILLATION_LOSSES:
            raise ValueError(
                f"unknown distill_loss {self.distill_loss!r}; allowed: {list(DISTILLATION_LOSSES)}"
            )
        self._check_numbers()
        self._check_terms()
        for name in ("data", "scored_pairs", "texts"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{name} file {path!r} does not exist")
        check_static_output(self.output)
        table_dim = codebook_dim(locate(self.model))
        if self.dim is not None and self.dim > table_dim:
            raise ValueError(f"dim {self.dim} exceeds the dimension {table_dim} of {self.model!r}")
        output_dim = self.dim or table_dim
        if self.common_components >= output_dim:
            raise ValueError(
                f"common_components {self.common_components} must be less than the output "
                f"dimension {output_dim}"
            )
        too_large = [dim for dim in self.matryoshka_dims if dim > output_dim]
        if too_large:
            raise ValueError(
                f"matryoshka_dims {too_large} exceed the output dimension {output_dim}"
            )

    def _check_numbers(self) -> None:
        for name in ("batch_size", "max_tokens", "seed", "common_components"):
            _integer(name, getattr(self, name), minimum=0 if name in _MAY_BE_ZERO else 1)
        for name in ("dim", "max_steps"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), minimum=1)
        if not isinstance(self.matryoshka_dims, tuple):
            raise ValueError(f"matryoshka_dims must be a tuple, got {self.matryoshka_dims!r}")
        for dim in self.matryoshka_dims:
            _integer("matryoshka_dims", dim, minimum=1)
        for name in ("temperature", "learning_rate", "epochs"):
            if not _real(getattr(self, name)) or not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("distill_weight", "contrastive_weight", "cosent_weight"):
            if not _real(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be zero or positive, got {getattr(self, name)!r}")
        if not _real(self.dev_fraction) or not 0 <= self.dev_fraction < 1:
            raise ValueError(f"dev_fraction must be in [0, 1), got {self.dev_fraction!r}")

    def _check_terms(self) -> None:
        if self.texts is not None and self.teacher is None:
            raise ValueError("texts are distillation data: give a teacher too")
        if self.data is None and self.scored_pairs is None and self.teacher is None:
            raise ValueError(
                "give data (pairs for the contrastive loss), scored_pairs (for CoSENT) or a "
                "teacher to distil"
            )
        sources = (self.data, self.scored_pairs, self.texts)
        if self.teacher is not None and all(source is None for source in sources):
            raise ValueError("a teacher needs texts to distil on: give texts, data or scored_pairs")
        if self.dev_fraction and self.data is None:
            raise ValueError("dev_fraction splits the data's pairs: give data")
        if not (self.contrasts or self.scores or self.distils):
            raise ValueError(
                "nothing to train: contrastive_weight is 0 or there is no data, cosent_weight "
                "is 0 or there are no scored_pairs, and distill_weight is 0 or there is no "
                "teacher"
            )

    @property
    def contrasts(self) -> bool:
        """Whether the contrastive loss is trained."""
        return self.data is not None and self.contrastive_weight > 0

    @property
    def scores(self) -> bool:
        """Whether the CoSENT loss is trained."""
        return self.scored_pairs is not None and self.cosent_weight > 0

    @property
    def distils(self) -> bool:
        """Whether the distillation loss is trained."""
        return self.teacher is not None and self.distill_weight > 0

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> StaticTrainingConfig:
        """A configuration from JSON-like options; unknown ones are refused by name."""
        values = known_options(cls, options, "static training options")
        if values.get("matryoshka_dims") is not None:
            values["matryoshka_dims"] = tuple(values["matryoshka_dims"])
        return cls(**values)


def _integer(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive integer" if minimum else "an integer >= 0"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
