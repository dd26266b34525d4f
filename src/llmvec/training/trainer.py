"""transformers' ``Trainer`` for an :class:`~llmvec.training.model.EmbeddingModel`: the loss is
the model's, checkpoints hold the trained weights only (safetensors), the evaluation is a dev
STS or retrieval score, and a time budget can end a run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from llmvec.training.model import EmbeddingModel

logger = logging.getLogger(__name__)

DevScore = Callable[[], dict[str, float]]


class EmbeddingTrainer(Trainer):
    """A ``Trainer`` whose model computes its own loss and whose evaluation is ``dev_score``
    (``{"score": ..., ...}``, higher is better) on the live encoder."""

    def __init__(self, *args: Any, dev_score: DevScore | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dev_score = dev_score

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        dataset: Any = self.train_dataset if train_dataset is None else train_dataset
        return SeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            lengths=list(dataset[self.args.length_column_name]),
            seed=self.args.seed,
        )

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        outputs = model(**inputs)
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def _embedding_model(self) -> EmbeddingModel:
        model = self.accelerator.unwrap_model(self.model)
        assert isinstance(model, EmbeddingModel)
        return model

    def _save(
        self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None
    ) -> None:
        # A checkpoint holds what is trained; the frozen base weights stay where they are.
        super()._save(output_dir, state_dict=self._embedding_model().trainable_state())

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        trained = set(self._embedding_model().trainable_state())
        missing = sorted(trained.intersection(load_result.missing_keys))
        if missing:
            raise ValueError(f"the checkpoint lacks trained weights {missing[:5]}")

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        if self.dev_score is None:
            return {}
        self._embedding_model().eval()
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in self.dev_score().items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order (batches of similar lengths, shuffled), drawn from a
    generator seeded by the run's seed and the epoch instead of the global one, so a resumed run
    skips exactly the batches the interrupted run trained on."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()  # type: ignore[no-any-return]


class TimeBudget(TrainerCallback):
    """Stop (with a checkpoint) once a run has trained for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self.started = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        if time.monotonic() - self.started >= self.seconds:
            logger.info("time budget of %.0f s spent at step %d", self.seconds, state.global_step)
            control.should_training_stop = True
            control.should_save = True
