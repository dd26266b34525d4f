"""EmbedBatch: a Ray Data callable class that adds a vector column, and :func:`embed`, which
checks a dataset and its encoder config before it maps EmbedBatch over it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvec.index.validation import check_id
from llmvec.ray.config import EncoderConfig, EncoderLike, actor_resources
from llmvec.spec import EmbeddingSpec

if TYPE_CHECKING:
    from ray.data import Dataset

logger = logging.getLogger(__name__)

#: Rows per batch handed to an actor: the encoder sorts each batch by length, so larger batches
#: pad less; the encoder's own ``batch_size`` still bounds one forward pass.
DEFAULT_BATCH_SIZE = 256
#: Problems listed in the error that a bad column raises.
_SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class Columns:
    """Column names: the texts to encode, the document ids, the vectors added, and the columns
    stored as each document's metadata when the vectors are written to an index."""

    text: str = "text"
    id: str = "id"
    vector: str = "vector"
    metadata: tuple[str, ...] = ()

    @property
    def read(self) -> list[str]:
        """The columns the job reads from the input dataset."""
        return list(dict.fromkeys([self.id, self.text, *self.metadata]))


class EmbedBatch:
    """Ray Data callable class: ``ds.map_batches(EmbedBatch, fn_constructor_kwargs={...})``.

    Each actor builds its :class:`~llmvec.Encoder` once, from ``encoder`` (see
    :meth:`EncoderConfig.of`), then encodes the ``text_column`` of every batch as documents and
    returns the batch with a ``vector_column`` of float32 vectors added; every other column, the
    ids included, passes through unchanged. Batches may be ``batch_format="numpy"`` (a dict of
    arrays) or ``"pandas"``.

    Args:
        encoder: Encoder keyword arguments (``{"model": ...}``), an EmbeddingSpec or its JSON, a
            model name, or an :class:`EncoderConfig`.
        text_column / id_column / vector_column: column names; ``id_column`` names the rows in
            error messages.
    """

    def __init__(
        self,
        encoder: EncoderLike,
        text_column: str = "text",
        id_column: str = "id",
        vector_column: str = "vector",
    ) -> None:
        self.config = EncoderConfig.of(encoder)
        self.columns = Columns(text_column, id_column, vector_column)
        self.encoder = self.config.build()
        logger.info("Ray actor built %r", self.encoder)

    def __call__(self, batch: Any) -> Any:
        """Add the vector column to a numpy (dict) or pandas batch."""
        texts = self._texts(batch)
        vectors = self.encoder.encode_documents(texts)
        if isinstance(batch, Mapping):
            return {**batch, self.columns.vector: vectors}
        return batch.assign(**{self.columns.vector: list(vectors)})

    def _texts(self, batch: Any) -> list[str]:
        names = list(batch.keys())
        if self.columns.text not in names:
            raise ValueError(f"no text column {self.columns.text!r} in the batch; columns: {names}")
        texts = list(batch[self.columns.text])
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                where = _row_name(batch, self.columns.id, row)
                raise TypeError(
                    f"{where}: column {self.columns.text!r} holds {type(text).__name__} "
                    f"({text!r:.60}); every text must be a str"
                )
        return [str(text) for text in texts]


def _row_name(batch: Any, id_column: str, row: int) -> str:
    if id_column in batch:
        return f"row {id_column}={batch[id_column].tolist()[row]!r}"
    return f"row {row} of a batch"


def embed(
    dataset: Dataset,
    encoder: EncoderLike,
    *,
    columns: Columns | None = None,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    **ray_options: Any,
) -> Dataset:
    """``dataset`` with a vector column, computed by ``concurrency`` :class:`EmbedBatch` actors.

    Before anything runs on the actors, the columns are checked (missing ones, non-string texts,
    invalid ids: ``ValueError`` / ``TypeError`` naming the rows) and the encoder is built once
    in a Ray task (a config that cannot build one raises ``ValueError``); every actor then
    checks that it produces that same :class:`~llmvec.EmbeddingSpec`.

    Args:
        dataset: a Ray Dataset with a text and an id column.
        encoder: see :meth:`EncoderConfig.of`.
        columns: column names (default ``text``, ``id``, ``vector``).
        concurrency: actors (a fixed number, or ``(min, max)`` for an autoscaling pool).
        batch_size: rows per actor call.
        num_gpus / num_cpus: resources of each actor (``num_gpus=1``: one engine per GPU).
        **ray_options: more ``map_batches`` options (``ray_remote_args_fn``, ``resources``,
            ``runtime_env``, ``max_restarts``...).
    """
    columns = columns or Columns()
    resources = actor_resources(num_gpus, num_cpus, ray_options)
    config, _ = prepare(dataset, encoder, columns, resources)
    return map_embed(dataset, config, columns, concurrency, batch_size, resources)


def prepare(
    dataset: Dataset, encoder: EncoderLike, columns: Columns, resources: Mapping[str, Any]
) -> tuple[EncoderConfig, EmbeddingSpec]:
    """Check the dataset's columns and build the encoder once; returns the config, which now
    carries the spec every actor must produce, and that spec.

    Raises before any actor starts: ``ValueError`` for a missing column, an invalid id or a
    config that cannot build an Encoder; ``TypeError`` for texts that are not strings.
    """
    config = EncoderConfig.of(encoder)
    check_columns(dataset, columns)
    probed = config.probe(**resources)
    assert probed.spec is not None
    return probed, probed.spec


def map_embed(
    dataset: Dataset,
    config: EncoderConfig,
    columns: Columns,
    concurrency: int | tuple[int, int],
    batch_size: int,
    resources: Mapping[str, Any],
) -> Dataset:
    """Map :class:`EmbedBatch` over ``dataset`` (no checks: see :func:`embed`)."""
    options = {name: value for name, value in resources.items() if value is not None}
    return dataset.map_batches(
        EmbedBatch,
        fn_constructor_kwargs={
            "encoder": config,
            "text_column": columns.text,
            "id_column": columns.id,
            "vector_column": columns.vector,
        },
        compute=actor_pool(concurrency),
        batch_size=batch_size,
        batch_format="numpy",
        **options,
    )


def actor_pool(concurrency: int | tuple[int, int]) -> Any:
    """Ray Data's actor pool of a fixed size, or autoscaling between ``(min, max)``."""
    from ray.data import ActorPoolStrategy

    if isinstance(concurrency, tuple):
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return ActorPoolStrategy(size=concurrency)


def check_columns(dataset: Dataset, columns: Columns) -> None:
    """Refuse a dataset without the needed columns, or whose texts or ids are invalid.

    The schema answers for missing columns and non-string column types; one pass over the id
    and text columns finds nulls, mixed types and invalid ids.
    """
    schema = dataset.schema()
    if schema is not None:
        missing = [name for name in columns.read if name not in schema.names]
        if missing:
            raise ValueError(f"the dataset has no column {missing}; its columns: {schema.names}")
    problems = (
        dataset.select_columns([columns.id, columns.text])
        .map_batches(
            partial(_find_problems, columns=columns),
            batch_format="numpy",
            batch_size=4096,
        )
        .take(_SHOWN_PROBLEMS)
    )
    if problems:
        listed = "; ".join(str(p["problem"]) for p in problems)
        error = TypeError if any(p["kind"] == "text" for p in problems) else ValueError
        raise error(f"invalid rows, nothing was written: {listed}")


def _find_problems(batch: dict[str, np.ndarray], columns: Columns) -> dict[str, np.ndarray]:
    """Rows whose text is not a string or whose id is invalid (runs in a Ray task)."""
    kinds: list[str] = []
    problems: list[str] = []
    for doc_id, text in zip(batch[columns.id].tolist(), batch[columns.text].tolist(), strict=True):
        if not isinstance(text, str):
            kinds.append("text")
            problems.append(
                f"{columns.id}={doc_id!r}: column {columns.text!r} holds "
                f"{type(text).__name__} ({text!r:.60}), not a str"
            )
        try:
            check_id(doc_id)
        except ValueError as error:
            kinds.append("id")
            problems.append(f"column {columns.id!r}: {error}")
    return {"kind": np.array(kinds, dtype=object), "problem": np.array(problems, dtype=object)}
