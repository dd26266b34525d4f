"""Rows of a training set to the inputs of one step, built by the encoder's own input builder:
queries with the instruction (kept out of pooling), documents without, the template around
both; scored sentence pairs as two documents and their score; for MNTP, padded ids with
LLM2Vec's masking."""

from __future__ import annotations

from typing import Any

import torch

from llmvec.backends.base import TokenizedText
from llmvec.encoder import Encoder
from llmvec.encoding.batching import pad_batch
from llmvec.training.mntp import mask_batch, mask_token_id


def query_instruction(row: dict[str, Any], default: str | None) -> str | None:
    """The instruction a row's query is encoded with: its own (several tasks in one run, as
    e5-mistral and NV-Embed train) or else the run's ``default``."""
    return row.get("instruction") or default


class ContrastiveCollator:
    """Triplet rows (``query``, ``positive``, ``negative``) or sentences (``text``: SimCSE, the
    sentence is its own positive under another dropout mask) to token inputs, each query with
    its :func:`query_instruction`."""

    def __init__(self, encoder: Encoder, query_instruction: str | None) -> None:
        self.encoder = encoder
        self.query_instruction = query_instruction

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if "text" in rows[0]:
            sentences = self.encoder.tokenize([row["text"] for row in rows])
            return {"queries": sentences, "positives": sentences, "negatives": []}
        # Every row of a training set has a negative, or none has (checked when it loads).
        negatives = [row["negative"] for row in rows] if rows[0].get("negative") else []
        return {
            "queries": self._queries(rows),
            "positives": self.encoder.tokenize([row["positive"] for row in rows]),
            "negatives": self.encoder.tokenize(negatives) if negatives else [],
        }

    def _queries(self, rows: list[dict[str, Any]]) -> list[TokenizedText]:
        """The queries tokenized with their instructions, in row order."""
        instructions = [query_instruction(row, self.query_instruction) for row in rows]
        by_position: dict[int, TokenizedText] = {}
        for instruction in dict.fromkeys(instructions):
            positions = [i for i, given in enumerate(instructions) if given == instruction]
            texts = [rows[i]["query"] for i in positions]
            tokenized = self.encoder.tokenize(texts, instruction=instruction)
            by_position.update(zip(positions, tokenized, strict=True))
        return [by_position[i] for i in range(len(rows))]


class ScoredPairCollator:
    """Scored rows (``sentence1``, ``sentence2``, ``score``) to both sentences tokenized as
    documents (as STS encodes them) and the scores, for CoSENT."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "queries": self.encoder.tokenize([row["sentence1"] for row in rows]),
            "positives": self.encoder.tokenize([row["sentence2"] for row in rows]),
            "scores": torch.tensor([row["score"] for row in rows], dtype=torch.float32),
        }


class MaskingCollator:
    """Sentences to padded ids with LLM2Vec's masking. A batch's masks are drawn from a
    generator seeded by the run's seed and the batch's first ``row`` number, so a resumed run
    (whose skipped batches are never collated) and a run on several processes mask each batch
    as an uninterrupted run on one does."""

    def __init__(self, encoder: Encoder, probability: float, mask_token: str, seed: int) -> None:
        self.encoder = encoder
        tokenizer = encoder.backend.tokenizer
        self.mask_id = mask_token_id(tokenizer, mask_token)
        self.probability = probability
        self.special_ids = set(tokenizer.all_special_ids)
        self.seed = seed

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        inputs = self.encoder.tokenize([row["text"] for row in rows])
        ids, attention, _ = pad_batch(inputs, 0, self.encoder.inputs.pad_token_id, "right")
        masked, labels = mask_batch(
            ids,
            attention,
            self.encoder.backend.tokenizer,
            mask_id=self.mask_id,
            probability=self.probability,
            generator=torch.Generator().manual_seed(
                (self.seed * 1_000_003 + int(rows[0]["row"])) % 2**63
            ),
            special_ids=self.special_ids,
        )
        return {"input_ids": masked, "attention_mask": attention, "mntp_labels": labels}
