"""Encoder: texts -> token ids -> length-sorted batches -> backend -> pooling -> vectors."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from llmvec.backends import Backend, PooledBackend, load_backend
from llmvec.backends.base import (
    PrefixCachingBackend,
    PrefixState,
    TextMeanBackend,
    TokenizedText,
)
from llmvec.backends.cpu_memory import reuse_freed_memory
from llmvec.compress import normalize as normalize_rows
from llmvec.encoding import pooling as pooling_functions
from llmvec.encoding.batching import batch_overhead_tokens, pad_batch, plan_batches
from llmvec.encoding.inputs import InputBuilder
from llmvec.encoding.latent_attention import LatentAttentionPooling, build_head
from llmvec.encoding.prefix_cache import (
    MIN_CACHED_PREFIX,
    PrefixCache,
    can_cache_prefix,
    common_prefix,
    default_prefix_caching,
)
from llmvec.encoding.recipe import Recipe, resolve_recipe
from llmvec.encoding.templates import (
    instruction_prefix,
    resolve_instruction_format,
    template_name,
    template_wrapper,
)
from llmvec.models import DEFAULT_MODEL
from llmvec.spec import EmbeddingSpec, SpecExtra
from llmvec.trained_folder import is_trained_folder, read_trained_folder
from llmvec.validation import as_text_list, check_positive

ConvertTo = Literal["numpy", "torch"]
CONVERT_TO = ("numpy", "torch")


class Encoder:
    """Sentence and document vectors from any decoder LLM (or BERT-style encoder).

    Args:
        model: a packaged-model name (``smollm2``, ``all-minilm-l6-v2``), a hub id, a local
            directory, a ``.gguf`` file, or a folder written by ``llmvec train`` (its base
            model, adapters, head and recipe; explicit arguments override its recipe).
        backend: ``transformers``, ``static`` (averages of a token-vector codebook, e.g.
            ``Encoder("wordllama", backend="static")``) or ``vllm`` (vLLM's pooling runner:
            last layer, ``last_token`` / ``eos_token`` / ``mean`` / ``first_token``; see
            :mod:`llmvec.backends.vllm`).
        device: ``None`` picks cuda, then mps, then cpu; a named one (``cpu``, ``cuda:1``...)
            must be present here (see :func:`~llmvec.backends.devices.resolve_device`).
        dtype: ``auto`` (float32 on CPU, bfloat16 on GPU) or a dtype name.
        quantization: ``4bit`` / ``8bit`` (bitsandbytes), ``int8`` (torch's dynamic int8
            linear layers, on the CPU) or ``None``; recorded in the spec.
        pooling: ``mean``, ``weighted_mean``, ``last_token``, ``eos_token``, ``first_token``,
            ``latent_attention`` (NV-Embed's head, see ``latent_attention_weights``);
            ``None`` follows the template (``last_token`` with one, ``mean`` without).
        template: ``prompteol``, ``pcoteol``, ``ke`` or a custom string with one ``{text}`` slot.
        layer: hidden layer to pool (0 = embeddings, -1 = last); ``None`` follows the template.
        query_instruction / document_instruction: task descriptions for
            :meth:`encode_queries` / :meth:`encode_documents`.
        instruction_format: ``e5``, ``gte-qwen2``, ``qwen3``, ``nv-embed``, ``llm2vec`` or a
            custom string with ``{task}`` and ``{text}`` slots (``None``: e5's).
        max_length: tokens per input, everything included; longer texts are cut, templates not.
        normalize: L2-normalise the vectors (after Matryoshka truncation).
        truncate_dim: keep the first dimensions only (Matryoshka).
        batch_size / max_tokens_per_batch: batching limits; inputs are sorted by length.
        padding_side: ``right`` or ``left``; vectors do not depend on it.
        add_bos: ``None`` follows the tokenizer's convention; ``True``/``False`` force it.
        prefix_caching: run the part every input shares (BOS, instruction, template preamble)
            once and reuse its key/value cache; causal models only, same vectors. ``None``:
            on a CPU, off on a GPU (see
            :func:`~llmvec.encoding.prefix_cache.default_prefix_caching`).
        bidirectional: LLM2Vec-style attention: decoder tokens also see later tokens
            (``None``: as a trained folder says, else off). LLM2Vec
            checkpoints load with ``adapters=[mntp, supervised]`` (PEFT folders or hub ids,
            merged in order), ``bidirectional=True`` and ``pooling="mean"``.
        latent_attention_weights: safetensors weights of the latent-attention head (saved by
            :class:`~llmvec.encoding.latent_attention.LatentAttentionPooling` or NV-Embed's);
            without them the head is random (seed 0) and a warning is logged.
        **backend_kwargs: passed to the backend (for transformers: ``compile=True`` to run the
            blocks through ``torch.compile``, ``attn_implementation``, ``model_kwargs``,
            ``quantization_config``, ``revision``, ``trust_remote_code``...;
            for vLLM: ``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``...).

    An encoder is safe to share between threads (and the LangChain / LlamaIndex wrappers around
    it): one lock runs its calls one at a time, each with the vectors it would get alone (the
    backend's forward hooks and lazy state belong to the call that holds it).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        backend: str = "transformers",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "auto",
        quantization: str | None = None,
        pooling: str | None = None,
        template: str | None = None,
        layer: int | None = None,
        bidirectional: bool | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        instruction_format: str | None = None,
        max_length: int = 512,
        normalize: bool = True,
        truncate_dim: int | None = None,
        batch_size: int = 32,
        max_tokens_per_batch: int | None = None,
        padding_side: Literal["right", "left"] = "right",
        add_bos: bool | None = None,
        prefix_caching: bool | None = None,
        latent_attention_weights: str | Path | None = None,
        **backend_kwargs: Any,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        check_positive("max_length", max_length)
        check_positive("batch_size", batch_size)
        if max_tokens_per_batch is not None:
            check_positive("max_tokens_per_batch", max_tokens_per_batch)
        if truncate_dim is not None:
            check_positive("truncate_dim", truncate_dim)
        resolve_instruction_format(instruction_format)
        for name, instruction in (
            ("query_instruction", query_instruction),
            ("document_instruction", document_instruction),
        ):
            if instruction is not None and not isinstance(instruction, str):
                raise TypeError(f"{name} must be a string or None, got {instruction!r}")
        #: Held from building a call's inputs to its pooled output: the model's forward hooks,
        #: the lazy caches and probes, and the tokenizer serve one call at a time.
        self._lock = threading.RLock()
        #: Where LoRA adapters came from (absolute where local), kept in the spec for from_spec;
        #: a trained folder's own adapters and head are implied by its name.
        self.adapters = [_location(adapter) for adapter in backend_kwargs.get("adapters") or []]
        self.model_name = model
        base = model
        folder_head = False
        if is_trained_folder(model):
            trained = read_trained_folder(model)
            self.model_name, base = str(trained.folder), trained.base_model
            backend_kwargs["adapters"] = [*trained.adapters, *self.adapters]
            stored = trained.recipe
            pooling = stored.get("pooling") if pooling is None else pooling
            template = stored.get("template") if template is None else template
            layer = stored.get("layer") if layer is None else layer
            query_instruction = query_instruction or stored.get("query_instruction")
            document_instruction = document_instruction or stored.get("document_instruction")
            instruction_format = instruction_format or stored.get("instruction_format")
            add_bos = stored.get("add_bos") if add_bos is None else add_bos
            if bidirectional is None:
                bidirectional = bool(stored.get("bidirectional", False))
            if latent_attention_weights is None and trained.latent_attention_weights:
                latent_attention_weights = trained.latent_attention_weights
                folder_head = True
        bidirectional = bool(bidirectional)
        #: The weights' quantization, part of the spec.
        self.quantization = quantization
        self.backend: Backend | PooledBackend = load_backend(
            backend,
            base,
            device=device,
            dtype=dtype,
            quantization=quantization,
            bidirectional=bidirectional,
            **backend_kwargs,
        )
        if truncate_dim is not None and truncate_dim > self.backend.hidden_size:
            raise ValueError(
                f"truncate_dim={truncate_dim} exceeds the model's dimension "
                f"{self.backend.hidden_size}"
            )
        self.recipe = resolve_recipe(pooling, template, layer, self.backend.num_layers)
        self.bidirectional = bidirectional
        self.query_instruction = query_instruction
        self.document_instruction = document_instruction
        self.instruction_format = instruction_format
        self.max_length = max_length
        self.normalize = normalize
        self.truncate_dim = truncate_dim
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch
        self.padding_side = padding_side
        self.add_bos = add_bos
        self.latent_attention_weights = latent_attention_weights
        self._folder_head = folder_head
        self._latent_head: LatentAttentionPooling | None = None
        if self.recipe.pooling == "latent_attention":
            self._latent_attention()
        if prefix_caching is None:
            prefix_caching = default_prefix_caching(self.backend.device)
        self.prefix_caching = prefix_caching
        self._prefix_cache = PrefixCache()
        self.inputs = InputBuilder(
            self.backend.tokenizer,
            max_length=max_length,
            add_bos=add_bos,
            pool_prefix_specials=self.backend.pool_prefix_specials,
            special_tokens=self.backend.special_tokens,
        )
        if isinstance(self.backend, PooledBackend):
            # Unsupported recipes fail here, before the engine starts.
            self.backend.check(self.tokenize("probe"), self.recipe.pooling, self.recipe.layer)

    # ------------------------------------------------------------------ description
    @property
    def dim(self) -> int:
        """Dimension of the output vectors (after Matryoshka truncation)."""
        return self.truncate_dim or self.backend.hidden_size

    @property
    def tokenizer(self) -> Any:
        """The backend's (fast) tokenizer."""
        return self.backend.tokenizer

    @property
    def document_token_budget(self) -> int:
        """How many tokens of a document's text fit before the encoder cuts it: ``max_length``
        less the special tokens, the document instruction and the template."""
        empty = self.tokenize([""], instruction=self.document_instruction)[0]
        return max(0, self.max_length - len(empty.ids))

    @property
    def latent_head(self) -> LatentAttentionPooling | None:
        """The latent-attention head (built on first use) when the recipe pools with it."""
        return self._latent_attention() if self.recipe.pooling == "latent_attention" else None

    @property
    def spec(self) -> EmbeddingSpec:
        """The :class:`EmbeddingSpec` of the vectors this encoder produces by default."""
        has_instruction = bool(self.query_instruction or self.document_instruction)
        latent = self.recipe.pooling == "latent_attention"
        weights = self.latent_attention_weights
        extra = SpecExtra(
            add_bos=self.add_bos,
            adapters=tuple(self.adapters),
            latent_attention=self._latent_attention().identity if latent else None,
            latent_attention_weights=(
                _location(weights)
                if latent and weights is not None and not self._folder_head
                else None
            ),
            quantization=self.quantization,
        )
        return EmbeddingSpec(
            model=self.model_name,
            model_revision=self.backend.model_revision,
            backend=self.backend.name,
            pooling=self.recipe.pooling,
            template=self.recipe.template,
            layer=self.recipe.layer,
            query_instruction=self.query_instruction,
            document_instruction=self.document_instruction,
            instruction_format=(
                resolve_instruction_format(self.instruction_format) if has_instruction else None
            ),
            bidirectional=self.bidirectional,
            max_length=self.max_length,
            normalize=self.normalize,
            dim=self.dim,
            truncate_dim=self.truncate_dim,
            extra=extra.entries(),
        )

    @classmethod
    def from_spec(cls, spec: EmbeddingSpec, **kwargs: Any) -> Encoder:
        """An encoder that produces vectors of ``spec`` (as stored with an index); ``kwargs``
        (device, dtype, batch_size...) set what does not change the vectors, or say where the
        spec's adapters or latent-attention head lie now (``adapters=``,
        ``latent_attention_weights=``) when they moved."""
        extra = SpecExtra.read(spec.extra)
        if extra.adapters:
            kwargs.setdefault("adapters", list(extra.adapters))
        if extra.latent_attention_weights is not None:
            kwargs.setdefault("latent_attention_weights", extra.latent_attention_weights)
        if extra.quantization is not None:
            kwargs.setdefault("quantization", extra.quantization)
        return cls(
            spec.model,
            backend=spec.backend,
            pooling=spec.pooling,
            template=spec.template,
            layer=spec.layer,
            bidirectional=spec.bidirectional,
            query_instruction=spec.query_instruction,
            document_instruction=spec.document_instruction,
            instruction_format=spec.instruction_format,
            max_length=spec.max_length,
            normalize=spec.normalize,
            truncate_dim=spec.truncate_dim,
            add_bos=extra.add_bos,
            **kwargs,
        )

    def __repr__(self) -> str:
        r = self.recipe
        return (
            f"Encoder(model={self.model_name!r}, backend={self.backend.name!r}, "
            f"pooling={r.pooling!r}, template={template_name(r.template) or r.template!r}, "
            f"layer={r.layer}, dim={self.dim})"
        )

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int | None = None,
        pooling_method: str | None = None,
        prompt_template: str | None = None,
        layer_index: int | None = None,
        show_progress: bool | None = None,
        normalize: bool | None = None,
        precision: str = "float32",
        convert_to: ConvertTo = "numpy",
        instruction: str | None = None,
    ) -> Any:
        """Encode texts as they are (no query/document instruction unless ``instruction``).

        Returns a float32 array of shape ``(n, dim)`` (a single string gives ``(1, dim)``), or a
        torch tensor with ``convert_to="torch"``; ``precision`` other than ``float32`` returns
        :func:`llmvec.quantize` output.
        """
        items = as_text_list(texts)
        if convert_to not in CONVERT_TO:
            raise ValueError(f"unknown convert_to {convert_to!r}; allowed: {list(CONVERT_TO)}")
        batch_size = self.batch_size if batch_size is None else batch_size
        check_positive("batch_size", batch_size)
        recipe = self.recipe.for_call(
            pooling_method, prompt_template, layer_index, self.backend.num_layers
        )
        prefix = instruction_prefix(instruction, self.instruction_format)
        normalize = self.normalize if normalize is None else normalize
        with self._lock:
            lean = self._text_means(recipe)
            if lean is not None:
                # An instruction changes nothing here: it is never pooled, and nothing attends.
                array = self._finish_array(lean.mean_vectors(items, self.max_length), normalize)
            else:
                tokenized = self._build(items, recipe, prefix)
                array = self._encode(
                    tokenized, recipe, prefix, batch_size, normalize, show_progress
                ).numpy()
        if precision != "float32":
            from llmvec.compress import quantize

            return quantize(array, precision)
        return torch.from_numpy(array) if convert_to == "torch" else array

    def encode_inputs(
        self,
        inputs: Sequence[TokenizedText],
        instruction: str | None = None,
        normalize: bool | None = None,
    ) -> np.ndarray:
        """Float32 vectors ``(len(inputs), dim)`` of inputs built by
        ``tokenize(texts, instruction=instruction)``: what :meth:`encode` returns for those
        texts, without tokenizing them again (a server tokenizes once to count and check)."""
        recipe = self.recipe.for_call(None, None, None, self.backend.num_layers)
        prefix = instruction_prefix(instruction, self.instruction_format)
        normalize = self.normalize if normalize is None else normalize
        with self._lock:
            lean = self._text_means(recipe)
            if lean is not None:
                # The pooled ids only, as encode's lean path pools them.
                pooled = [[] if item.no_text else item.ids[item.pool_start :] for item in inputs]
                return self._finish_array(lean.mean_vectors_of_ids(pooled), normalize)
            vectors = self._encode(list(inputs), recipe, prefix, self.batch_size, normalize, False)
        return vectors.numpy()

    def encode_queries(
        self, texts: str | Sequence[str], instruction: str | None = None, **kwargs: Any
    ) -> Any:
        """Encode search queries with the query instruction (``instruction`` overrides it)."""
        chosen = self.query_instruction if instruction is None else instruction
        return self.encode(texts, instruction=chosen, **kwargs)

    def encode_documents(self, texts: str | Sequence[str], **kwargs: Any) -> Any:
        """Encode documents with the document instruction (usually none)."""
        return self.encode(texts, instruction=self.document_instruction, **kwargs)

    def tokenize(
        self,
        texts: str | Sequence[str],
        prompt_template: str | None = None,
        instruction: str | None = None,
        pooling_method: str | None = None,
    ) -> list[TokenizedText]:
        """The token ids (and pooling start) the encoder would feed the model for ``texts``."""
        recipe = self.recipe.for_call(
            pooling_method, prompt_template, None, self.backend.num_layers
        )
        prefix = instruction_prefix(instruction, self.instruction_format)
        with self._lock:
            return self._build(as_text_list(texts), recipe, prefix)

    def pool(
        self,
        inputs: Sequence[TokenizedText],
        pooling_method: str | None = None,
        layer_index: int | None = None,
        share_prefix: bool = False,
    ) -> torch.Tensor:
        """Pooled states ``(len(inputs), hidden)`` of inputs built by :meth:`tokenize` (with the
        same ``pooling_method``), as one batch, neither truncated nor normalised: the step that
        :meth:`encode` runs for each of its batches.

        Called outside ``torch.inference_mode`` the result keeps its autograd graph, so training
        runs exactly the forward that inference runs. With ``share_prefix`` (causal models), the
        tokens every input starts with (BOS, instruction, template preamble) run once for the
        batch, their states keeping the graph too: the same vectors and gradients for a fraction
        of a template's cost (under dropout, the inputs share the prefix's masks).
        """
        if isinstance(self.backend, PooledBackend):
            raise ValueError(
                f"the {self.backend.name} backend pools inside its engine and exposes no states; "
                "use backend='transformers'"
            )
        if not inputs:
            raise ValueError("pool needs at least one input")
        recipe = self.recipe.for_call(pooling_method, None, layer_index, self.backend.num_layers)
        with self._lock:
            shared = None
            if share_prefix and can_cache_prefix(self.backend, recipe.layer):
                common = common_prefix(inputs)
                if len(common) >= MIN_CACHED_PREFIX:
                    shared = self.backend.prefix_state(common, recipe.layer)
            return self._encode_batch(list(inputs), recipe, shared)

    def _build(self, texts: list[str], recipe: Recipe, prefix: str) -> list[TokenizedText]:
        """The inputs of ``texts`` under ``recipe``'s template, after ``prefix``."""
        return self.inputs.build(
            texts,
            prefix=prefix,
            template=template_wrapper(recipe.template),
            append_eos=recipe.pooling == "eos_token",
        )

    def _encode(
        self,
        tokenized: list[TokenizedText],
        recipe: Recipe,
        prefix: str,
        batch_size: int,
        normalize: bool,
        show_progress: bool | None,
    ) -> torch.Tensor:
        if not tokenized:
            return torch.empty((0, self.dim), dtype=torch.float32)
        if show_progress is None:
            show_progress = sys.stderr.isatty() and len(tokenized) > batch_size
        if isinstance(self.backend, PooledBackend):
            # The engine batches and pools by itself.
            pooled = self.backend.embed(tokenized, recipe.pooling, recipe.layer, show_progress)
            return self._finish(pooled, normalize)
        batches = plan_batches(
            [len(t.ids) for t in tokenized],
            batch_size,
            self.max_tokens_per_batch,
            batch_overhead_tokens(self.backend.device),
        )
        output = torch.empty((len(tokenized), self.dim), dtype=torch.float32)
        with (
            torch.inference_mode(),
            reuse_freed_memory() if self.backend.device.type == "cpu" else nullcontext(),
            tqdm(
                total=len(tokenized), disable=not show_progress, desc="llmvec encode", unit="text"
            ) as progress,
        ):
            shared = self._shared_prefix(tokenized, recipe, prefix)
            for positions in batches:
                pooled = self._encode_batch([tokenized[i] for i in positions], recipe, shared)
                output[positions] = self._finish(pooled, normalize)
                progress.update(len(positions))
        return output

    def _text_means(self, recipe: Recipe) -> TextMeanBackend | None:
        """The backend, where ``recipe`` is a plain mean that it takes straight from texts."""
        if (
            isinstance(self.backend, TextMeanBackend)
            and recipe.pooling == "mean"
            and recipe.template is None
        ):
            return self.backend
        return None

    def _finish_array(self, pooled: np.ndarray, normalize: bool) -> np.ndarray:
        """The lean path's float32 means as :meth:`_finish` finishes tensors: Matryoshka
        truncation (a contiguous array), then L2 normalisation."""
        if self.truncate_dim is not None:
            pooled = np.ascontiguousarray(pooled[:, : self.truncate_dim])
        return normalize_rows(pooled) if normalize else pooled

    def _finish(self, pooled: torch.Tensor, normalize: bool) -> torch.Tensor:
        """Matryoshka truncation, then L2 normalisation; float32 on the CPU."""
        if self.truncate_dim is not None:
            pooled = pooled[:, : self.truncate_dim]
        if normalize:
            pooled = F.normalize(pooled, p=2.0, dim=-1)
        return pooled.to("cpu", torch.float32)

    def _shared_prefix(
        self, tokenized: list[TokenizedText], recipe: Recipe, prefix: str
    ) -> PrefixState | None:
        """The cached state of the tokens every input starts with, or ``None`` where a cache
        cannot hold or would not help."""
        backend = self.backend
        if not self.prefix_caching or not can_cache_prefix(backend, recipe.layer):
            return None
        head = self.inputs.head_ids(prefix, template_wrapper(recipe.template))
        return self._prefix_cache.state_for(tokenized, head, recipe.layer, backend)

    def _encode_batch(
        self, batch: list[TokenizedText], recipe: Recipe, shared: PrefixState | None
    ) -> torch.Tensor:
        backend = self.backend
        assert isinstance(backend, Backend), "a pooled backend has no hidden states"
        skip = 0 if shared is None else len(shared.ids)
        input_ids, attention_mask, pool_mask = pad_batch(
            batch, skip, self.inputs.pad_token_id, self.padding_side
        )
        new_ids, new_mask = input_ids[:, skip:], attention_mask[:, skip:]
        pooler = pooling_functions.POOLERS[recipe.pooling]
        index = None
        if isinstance(pooler, pooling_functions.PositionPooler):
            index = pooler.index(pool_mask, input_ids, self.inputs.eos_token_id)
        if not isinstance(backend, PrefixCachingBackend):
            hidden = backend.hidden_states(new_ids, new_mask, recipe.layer)
        elif index is not None and bool((index >= skip).all()):
            # One state per input is read: the backend runs the last block's MLP for it alone.
            states = backend.hidden_states(
                new_ids, new_mask, recipe.layer, prefix=shared, positions=index - skip
            )
            return states[:, 0].to(torch.float32)
        else:
            hidden = backend.hidden_states(new_ids, new_mask, recipe.layer, prefix=shared)
        if shared is not None:
            prefix_hidden = shared.hidden.to(hidden.dtype).expand(len(batch), -1, -1)
            hidden = torch.cat([prefix_hidden, hidden], dim=1)
        if index is not None:
            return pooling_functions.at_positions(hidden, index.to(hidden.device))
        assert isinstance(pooler, pooling_functions.MaskPooler)
        head = self._latent_attention() if pooler.needs_head else None
        return pooler(hidden, pool_mask.to(hidden.device), head)

    def _latent_attention(self) -> LatentAttentionPooling:
        """The latent-attention head, built on first use, on the backend's device."""
        with self._lock:
            if self._latent_head is None:
                head = build_head(self.backend.hidden_size, self.latent_attention_weights)
                self._latent_head = head.to(self.backend.device)
            return self._latent_head


def _location(path_or_id: str | os.PathLike[str]) -> str:
    """A local path made absolute (a spec must name it from any working directory); a hub id
    as given."""
    path = Path(path_or_id).expanduser()
    return str(path.resolve()) if path.exists() else str(path_or_id)
