"""Training a static model (WordLlama, tokenlearn style): per-token weights and a projection
(optionally the table rows too) learned with a contrastive loss on pairs, CoSENT on scored
pairs, a distillation loss to any teacher encoder, or any mix of them; then folded into one
table that the static backend serves.

Texts are tokenized once, up front, by :class:`~llmvec.backends.static_means.TokenMeans`, so
training pools exactly the tokens inference pools. The teacher's sentence vectors are computed
once, up front too; the loop is transformers' ``Trainer`` on a small module.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase, TrainingArguments, set_seed

from llmvec.backends.static_files import StaticModelFiles, load_static_model
from llmvec.backends.static_means import TokenMeans
from llmvec.encoder import Encoder
from llmvec.evaluation import retrieval_metrics
from llmvec.static.codebook import principal_components, write_static_model
from llmvec.static.common_components import common_directions, without_directions
from llmvec.static.embedder import DISTILLATION_LOSSES, StaticEmbedder, StaticObjective
from llmvec.static.training_config import StaticTrainingConfig
from llmvec.training.data import dev_split, load_scored_pairs, load_texts, load_triplets
from llmvec.training.dev import retrieval_data
from llmvec.training.losses import ContrastiveLoss, CoSENTLoss
from llmvec.training.trainer import EmbeddingTrainer

#: What a trained folder records its run in (beside the codebook and the tokenizer).
TRAINING_FILE = "training.json"
#: Documents each dev query is scored against, for nDCG@k.
DEV_K = 10


@dataclass(frozen=True)
class TokenizedTexts:
    """Distinct texts tokenized once: their pooled ids, concatenated, and each one's run."""

    index: dict[str, int]
    flat: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    @classmethod
    def build(cls, means: TokenMeans, texts: Sequence[str], max_tokens: int) -> TokenizedTexts:
        """Tokenize the distinct ``texts`` as inference does."""
        index = {text: number for number, text in enumerate(dict.fromkeys(texts))}
        flat, counts = means.token_ids(list(index), max_tokens)
        starts = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        return cls(index, flat, starts, counts)

    def numbers(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's number."""
        return np.fromiter((self.index[text] for text in texts), dtype=np.int64, count=len(texts))

    def batch(self, numbers: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The ids and counts of the texts ``numbers``, in that order."""
        counts = self.counts[numbers]
        runs = [
            self.flat[start : start + count]
            for start, count in zip(self.starts[numbers], counts, strict=True)
        ]
        flat = np.concatenate(runs) if runs else np.zeros(0, dtype=np.int64)
        return torch.from_numpy(flat), torch.from_numpy(counts)


@dataclass(frozen=True)
class Pairs:
    """Text numbers of (query, positive[, negative]) rows; ``negatives`` is ``None`` when no row
    has one."""

    queries: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray | None

    @classmethod
    def of(cls, rows: datasets.Dataset, texts: TokenizedTexts) -> Pairs:
        """The numbers of the texts of triplet ``rows`` (every text tokenized in ``texts``)."""
        negatives = list(rows["negative"])
        return cls(
            texts.numbers(list(rows["query"])),
            texts.numbers(list(rows["positive"])),
            texts.numbers(negatives) if negatives[0] else None,
        )

    def __len__(self) -> int:
        return len(self.queries)


@dataclass(frozen=True)
class ScoredPairs:
    """Text numbers of (sentence1, sentence2) rows and their gold scores."""

    first: np.ndarray
    second: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, rows: datasets.Dataset, texts: TokenizedTexts) -> ScoredPairs:
        """The numbers of the texts of scored ``rows`` (every text tokenized in ``texts``)."""
        return cls(
            texts.numbers(list(rows["sentence1"])),
            texts.numbers(list(rows["sentence2"])),
            np.asarray(rows["score"], dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class StaticCollator:
    """Dataset rows ``{"row": i}`` to one batch: pair ``i``, scored pair ``i`` and distillation
    text ``i`` (each cycling over its own list, the longest making the epoch) as ids and counts,
    with the teacher's vectors of every text of the batch when there is a teacher."""

    texts: TokenizedTexts
    pairs: Pairs | None
    extra: np.ndarray
    teacher: torch.Tensor | None
    scored: ScoredPairs | None = None

    @property
    def epoch_rows(self) -> int:
        """Rows in one epoch: the longest of the pairs, the scored pairs and the texts."""
        return max(
            len(part) if part is not None else 0 for part in (self.pairs, self.scored, self.extra)
        )

    def __call__(self, rows: list[dict[str, int]]) -> dict[str, Any]:
        positions = np.fromiter((row["row"] for row in rows), dtype=np.int64, count=len(rows))
        parts = []
        pairs = negatives = 0
        if self.pairs is not None:
            chosen = positions % len(self.pairs)
            parts += [self.pairs.queries[chosen], self.pairs.positives[chosen]]
            pairs = len(chosen)
            if self.pairs.negatives is not None:
                parts.append(self.pairs.negatives[chosen])
                negatives = len(chosen)
        scores = None
        if self.scored is not None:
            chosen = positions % len(self.scored)
            parts += [self.scored.first[chosen], self.scored.second[chosen]]
            scores = torch.from_numpy(self.scored.scores[chosen])
        if len(self.extra):
            parts.append(self.extra[positions % len(self.extra)])
        return self.batch(np.concatenate(parts), pairs, negatives, scores)

    def batch(
        self, numbers: np.ndarray, pairs: int, negatives: int, scores: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """The objective's inputs for the texts ``numbers``: ``pairs`` pairs first, then the two
        sides of the pairs ``scores`` scores, then texts to distil on."""
        ids, counts = self.texts.batch(numbers)
        teacher = None if self.teacher is None else self.teacher[torch.from_numpy(numbers)]
        return {
            "ids": ids,
            "counts": counts,
            "pairs": pairs,
            "negatives": negatives,
            "teacher": teacher,
            "scores": scores,
        }


@dataclass
class StaticRun:
    """A static model ready to train: its module, loss, data, and what the folder records."""

    config: StaticTrainingConfig
    files: StaticModelFiles
    tokenizer: PreTrainedTokenizerBase
    means: TokenMeans
    embedder: StaticEmbedder
    objective: StaticObjective
    collator: StaticCollator
    dev_rows: datasets.Dataset | None
    record: dict[str, Any] = field(default_factory=dict)

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The module's float32 vectors of ``texts`` (tokenized as inference does)."""
        flat, counts = self.means.token_ids(texts, self.config.max_tokens)
        device = self.embedder.projection.device
        with torch.no_grad():
            vectors: torch.Tensor = self.embedder(
                torch.from_numpy(flat).to(device), torch.from_numpy(counts).to(device)
            )
        return vectors.cpu().numpy()

    def dev_score(self) -> dict[str, float]:
        """On the dev rows: the training loss (the whole split as one batch) and nDCG@10 /
        recall@10 of each query against every dev positive and negative (x100)."""
        assert self.dev_rows is not None
        pairs = Pairs.of(self.dev_rows, self.collator.texts)
        parts = [pairs.queries, pairs.positives]
        if pairs.negatives is not None:
            parts.append(pairs.negatives)
        batch = self.collator.batch(
            np.concatenate(parts), len(pairs), 0 if pairs.negatives is None else len(pairs)
        )
        device = self.embedder.projection.device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        self.objective.eval()
        with torch.no_grad():
            loss = float(self.objective(**batch)["loss"])
        data = retrieval_data(self.dev_rows)
        queries = F.normalize(torch.from_numpy(self.vectors(list(data.queries.values()))), dim=-1)
        documents = F.normalize(torch.from_numpy(self.vectors(list(data.corpus.values()))), dim=-1)
        scores, best = (queries @ documents.T).topk(min(DEV_K, len(documents)), dim=-1)
        doc_ids = list(data.corpus)
        run = {
            query_id: {doc_ids[d]: float(s) for d, s in zip(top, row, strict=True)}
            for query_id, top, row in zip(data.queries, best.tolist(), scores.tolist(), strict=True)
        }
        return {"loss": loss, **retrieval_metrics(run, data.qrels, k=DEV_K)}

    def remove_common_components(self) -> None:
        """Project the configured number of common directions (SIF) of every training text's
        vector out of the module's projection: every vector loses them, and so does the folded
        table written at the end."""
        count = self.config.common_components
        texts = list(self.collator.texts.index)
        directions = common_directions(self.vectors(texts), count)
        # Each input dimension's column of the projection loses its part along the directions.
        projection = self.embedder.projection
        columns = without_directions(projection.detach().cpu().numpy().T, directions)
        with torch.no_grad():
            projection.copy_(torch.from_numpy(columns.T.copy()).to(projection.device))
        self.record["common_components"] = {"count": count, "texts": len(texts)}

    def train(self) -> Path:
        """Train, fold the module into one table and write the folder (with ``training.json``)."""
        config = self.config
        started = time.monotonic()
        if self.dev_rows is not None:
            self.record["dev_before"] = self.dev_score()
        rows = [{"row": row} for row in range(self.collator.epoch_rows)]
        with tempfile.TemporaryDirectory(prefix="llmvec-static-") as scratch:
            trainer = EmbeddingTrainer(
                model=self.objective,
                args=_arguments(config, scratch),
                train_dataset=rows,
                data_collator=self.collator,
            )
            result = trainer.train()
        self.objective.eval()
        self.record["steps"] = trainer.state.global_step
        self.record["final_loss"] = float(result.training_loss)
        if config.common_components:
            self.remove_common_components()
        if self.dev_rows is not None:
            self.record["dev_after"] = self.dev_score()
        self.record["seconds"] = round(time.monotonic() - started, 3)
        metadata = {
            "source_model": config.model,
            "source_revision": self.files.revision or "",
            "teacher": config.teacher or "",
            "options": json.dumps(asdict(config), sort_keys=True),
        }
        for key in ("dev_before", "dev_after"):
            if key in self.record:
                metadata[key] = json.dumps(self.record[key], sort_keys=True)
        return write_static_model(
            config.output,
            self.embedder.folded_rows().cpu(),
            self.tokenizer,
            metadata=metadata,
            extra_files={TRAINING_FILE: json.dumps(self.record, indent=2, sort_keys=True) + "\n"},
        )


def _arguments(config: StaticTrainingConfig, scratch: str) -> TrainingArguments:
    """The Trainer's loop: nothing saved (the folder is written at the end), no autocast."""
    return TrainingArguments(
        output_dir=scratch,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=0.0,
        warmup_steps=0.1,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type="linear",
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=not config.show_progress,
    )


def prepare_static(config: StaticTrainingConfig) -> StaticRun:
    """Load the model and the data, tokenize every text and compute the teacher's vectors;
    every problem is raised here, before a step and before anything is written."""
    set_seed(config.seed)
    files, tokenizer, codebook = load_static_model(config.model)
    table = codebook.table()
    means = TokenMeans(tokenizer, table)
    pair_rows = dev_rows = None
    if config.data is not None:
        pair_rows = load_triplets(config.data)
        with_negative = sum(1 for negative in pair_rows["negative"] if negative)
        if 0 < with_negative < len(pair_rows):
            raise ValueError(
                f"{with_negative} of {len(pair_rows)} rows of {config.data} have a negative: "
                "give every row one (llmvec mine) or none"
            )
        if config.dev_fraction:
            pair_rows, dev_rows = dev_split(pair_rows, config.dev_fraction, config.seed)
    scored_rows = load_scored_pairs(config.scored_pairs) if config.scored_pairs else None
    extra = list(load_texts(config.texts)["text"]) if config.texts is not None else []
    text_rows = len(extra)
    every = [*extra]
    for rows in (pair_rows, dev_rows):
        if rows is not None:
            every += [*rows["query"], *rows["positive"], *(t for t in rows["negative"] if t)]
    if scored_rows is not None:
        every += [*scored_rows["sentence1"], *scored_rows["sentence2"]]
    texts = TokenizedTexts.build(means, every, config.max_tokens)
    if config.common_components > len(texts.index):
        raise ValueError(
            f"common_components {config.common_components} exceeds the {len(texts.index)} "
            "distinct training texts it is fitted on"
        )
    teacher = _teacher_vectors(config, list(texts.index)) if config.distils else None
    embedder = StaticEmbedder(
        torch.from_numpy(table),
        None if codebook.token_weights is None else torch.from_numpy(codebook.token_weights),
        config.dim,
        train_table=config.train_table,
    )
    contrastive = None
    if config.contrasts:
        contrastive = ContrastiveLoss(
            temperature=config.temperature,
            matryoshka_dims=config.matryoshka_dims,
            binary=config.binary,
        )
    distillation = None
    if config.distils:
        loss = DISTILLATION_LOSSES[config.distill_loss]
        distillation = loss(config.matryoshka_dims, config.binary)
        if config.distill_loss == "vectors":
            assert teacher is not None
            teacher = _pca_targets(teacher, embedder.dim, config.teacher)
    cosent = None
    if config.scores:
        cosent = CoSENTLoss(config.temperature, config.matryoshka_dims, config.binary)
    objective = StaticObjective(
        embedder,
        contrastive,
        distillation,
        config.contrastive_weight,
        config.distill_weight,
        cosent,
        config.cosent_weight,
    )
    pairs = None
    if pair_rows is not None and config.contrasts:
        pairs = Pairs.of(pair_rows, texts)
    elif pair_rows is not None:  # distillation only: the pairs' texts are texts to distil on
        extra += [*pair_rows["query"], *pair_rows["positive"]]
        extra += [t for t in pair_rows["negative"] if t]
    scored = None
    if scored_rows is not None and config.scores:
        scored = ScoredPairs.of(scored_rows, texts)
    elif scored_rows is not None:  # likewise
        extra += [*scored_rows["sentence1"], *scored_rows["sentence2"]]
    collator = StaticCollator(texts, pairs, texts.numbers(extra), teacher, scored)
    record: dict[str, Any] = {
        "source_model": config.model,
        "source_revision": files.revision,
        "teacher": config.teacher,
        "options": asdict(config),
        "rows": {
            "pairs": 0 if pair_rows is None else len(pair_rows),
            "dev": 0 if dev_rows is None else len(dev_rows),
            "scored_pairs": 0 if scored_rows is None else len(scored_rows),
            "texts": text_rows,
        },
    }
    return StaticRun(
        config, files, tokenizer, means, embedder, objective, collator, dev_rows, record
    )


def _teacher_vectors(config: StaticTrainingConfig, texts: list[str]) -> torch.Tensor:
    """The teacher's unit vectors of ``texts`` (the teacher is released afterwards)."""
    assert config.teacher is not None
    teacher = Encoder(config.teacher)
    vectors = teacher.encode(texts, normalize=True, show_progress=config.show_progress)
    return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))


def _pca_targets(teacher: torch.Tensor, dim: int, name: str | None) -> torch.Tensor:
    """The teacher's vectors on their first ``dim`` principal components (tokenlearn's targets)."""
    if teacher.shape[1] < dim:
        raise ValueError(
            f"distill_loss='vectors' needs a teacher at least as wide as the student: {name!r} "
            f"gives {teacher.shape[1]} dimensions, the student {dim}; use distill_loss="
            "'similarity' or a smaller dim"
        )
    return principal_components(teacher, dim)


def train_static(config: StaticTrainingConfig | None = None, /, **options: Any) -> Path:
    """Train a static model and return its folder (load it with
    ``Encoder(folder, backend="static")``). Give a :class:`StaticTrainingConfig`, or its
    options as keywords: ``train_static(output="out", data="pairs.jsonl")``."""
    if config is not None and options:
        raise TypeError("give a StaticTrainingConfig or keyword options, not both")
    if config is None:
        config = StaticTrainingConfig.from_dict(options)
    return prepare_static(config).train()
