"""Hugging Face transformers backend: the base model (no LM head), run up to one layer."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoTokenizer,
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from llmvec.backends import QUANTIZATION_MODES
from llmvec.backends.adapters import adapters_revision, merge_adapters, resolve_adapters
from llmvec.backends.base import PrefixState
from llmvec.backends.bidirectional import check_bidirectional, forward_kwargs
from llmvec.backends.devices import resolve_device, resolve_dtype
from llmvec.backends.grouped_sdpa import use_grouped_sdpa
from llmvec.backends.int8 import quantize_linear_layers
from llmvec.models import fingerprint, gguf_as_folder, hub_errors, resolve_model

logger = logging.getLogger(__name__)


class _StopForward(Exception):
    """Raised from a forward pre-hook once the requested layer's input has been captured."""


def default_attention(device: torch.device, dtype: torch.dtype) -> str | None:
    """``flash_attention_2`` on a CUDA device in half precision when the ``flash-attn``
    package is installed (it skips the padding of a batch instead of computing it); otherwise
    ``None``: transformers' own default, SDPA."""
    half = dtype in (torch.float16, torch.bfloat16)
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None


def quantization_config(mode: str | None, compute_dtype: torch.dtype = torch.bfloat16) -> Any:
    """A ``BitsAndBytesConfig`` for ``4bit`` (NF4, computing in ``compute_dtype``) / ``8bit``
    (LLM.int8); ``None`` for no quantization."""
    if mode is None or mode == "int8":
        return None
    if mode not in QUANTIZATION_MODES:
        raise ValueError(
            f"unknown quantization {mode!r}; allowed: {list(QUANTIZATION_MODES)} or None"
        )
    from transformers import BitsAndBytesConfig

    if mode == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype
        )
    return BitsAndBytesConfig(load_in_8bit=True)


#: Files that hold a tokenizer's vocabulary, one of which a local model folder needs.
TOKENIZER_VOCABULARY_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.txt",
    "vocab.json",
)


def check_tokenizer_files(source: str) -> None:
    """Refuse a local model folder without a tokenizer: transformers would quietly build an
    empty one whose every text is one unknown token."""
    folder = Path(source)
    if folder.is_dir() and not any(
        (folder / name).is_file() for name in TOKENIZER_VOCABULARY_FILES
    ):
        raise FileNotFoundError(
            f"model folder {source!r} has no tokenizer (none of "
            f"{list(TOKENIZER_VOCABULARY_FILES)}); save it beside the weights "
            "(tokenizer.save_pretrained(folder))"
        )


def _layer_list(model: nn.Module, num_layers: int) -> nn.ModuleList:
    """The model's stack of transformer blocks: the ModuleList with one entry per layer."""
    candidates = [
        module
        for module in model.modules()
        if isinstance(module, nn.ModuleList) and len(module) == num_layers
    ]
    if not candidates:
        raise ValueError(
            f"cannot find the {num_layers} transformer layers of {type(model).__name__}"
        )
    return candidates[0]


def _cast_floating(model: PreTrainedModel, dtype: torch.dtype) -> None:
    """Cast floating-point weights to ``dtype`` where ``from_pretrained`` left them otherwise
    (transformers keeps a checkpoint whose config names a quantization, e.g. a GGUF conversion,
    in float32 whatever ``dtype`` says). Buffers (rotary frequencies) and the modules the model
    keeps in float32 stay as they are, as in a regular ``from_pretrained(dtype=...)``."""
    kept = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    wrong = [
        (name, parameter)
        for name, parameter in model.named_parameters()
        if parameter.is_floating_point()
        and parameter.dtype != dtype
        and not any(module in name for module in kept)
    ]
    if wrong:
        logger.debug(
            "casting %d weights to %s, which from_pretrained did not apply", len(wrong), dtype
        )
        for _, parameter in wrong:
            parameter.data = parameter.data.to(dtype)


def compile_blocks(layers: nn.ModuleList) -> None:
    """``torch.compile`` the parts of every transformer block (attention, MLP, norms), fusing
    their elementwise work (norm upcasts, rotary embeddings, the gated activation).

    The blocks share code, so each part compiles once for all layers (regional compilation),
    with dynamic batch and sequence sizes. The parts are compiled and the blocks are not, so
    llmvec's hooks on a block and on its MLP run outside the compiled code. An attention module
    indexes the key/value cache by its layer number, which would compile once per layer, so it
    runs compiled only when no cache is passed (a cached shared prefix runs it eagerly).
    """
    for block in layers:
        for part in block.children():
            eager = part.forward
            compiled = torch.compile(eager, dynamic=True)
            if hasattr(part, "layer_idx"):
                part.forward = _compiled_without_cache(compiled, eager)
            else:
                part.forward = compiled


def _compiled_without_cache(
    compiled: Callable[..., Any], eager: Callable[..., Any]
) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        run = compiled if kwargs.get("past_key_values") is None else eager
        return run(*args, **kwargs)

    return forward


def _load_model(name_or_path: str, attention: str | None, **kwargs: Any) -> Any:
    """``AutoModel.from_pretrained``, with ``attention`` as the attention implementation unless
    the caller chose one; where the model or the installed kernel cannot run it, the default."""
    if attention is None or "attn_implementation" in kwargs:
        return AutoModel.from_pretrained(name_or_path, **kwargs)
    try:
        return AutoModel.from_pretrained(name_or_path, attn_implementation=attention, **kwargs)
    except (ValueError, ImportError) as error:
        logger.info("%s unavailable here (%s); using the default attention", attention, error)
        return AutoModel.from_pretrained(name_or_path, **kwargs)


def _probe_agrees(expected: torch.Tensor, got: torch.Tensor) -> bool:
    """Whether a shortcut's states on a probe equal the plain pass's: every state's cosine to
    its counterpart above 0.9999."""
    return bool((torch.cosine_similarity(expected.float(), got.float(), dim=-1) > 0.9999).all())


def is_decoder_config(model_type: str) -> bool:
    """True for decoder-only (causal) architectures, False for BERT-style encoders."""
    return (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


class TransformersBackend:
    """Loads ``AutoModel`` (the base model, never the LM head) from a hub id, folder or GGUF file.

    Extra keyword arguments (``attn_implementation``, ``quantization_config``, ``revision``, ...)
    and ``model_kwargs`` go to ``from_pretrained``. ``trust_remote_code`` stays off unless given.

    ``bidirectional=True`` runs decoders without their causal mask (LLM2Vec), checked on a probe
    at load time. ``adapters`` (PEFT folders or hub ids, e.g. LLM2Vec's MNTP then supervised
    LoRA) are merged into the weights in order. ``compile=True`` compiles the blocks' parts with
    ``torch.compile`` (see :func:`compile_blocks`): a one-time cost of seconds to a minute on
    first use, then faster passes; worth it for large corpora.
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "auto",
        quantization: str | None = None,
        bidirectional: bool = False,
        adapters: Sequence[str | os.PathLike[str]] | None = None,
        trust_remote_code: bool = False,
        compile: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        **from_pretrained_kwargs: Any,
    ) -> None:
        self.device = resolve_device(device)
        location = resolve_model(model)
        int8 = quantization == "int8"
        quantized = quantization is not None or "quantization_config" in from_pretrained_kwargs
        quantized = quantized and not int8  # int8 quantizes the loaded float32 weights
        if quantized and location.gguf_file is not None:
            raise ValueError(
                f"quantization cannot be combined with the GGUF file {location.gguf_file!r} "
                "(transformers de-quantizes GGUF on load); load a safetensors folder instead"
            )
        if adapters and quantized:
            raise ValueError(
                "adapters cannot be merged into a bitsandbytes-quantized model; merge them at "
                "full precision, save the merged model, then load that folder with quantization"
            )
        adapter_directories = resolve_adapters(adapters or [])
        kwargs: dict[str, Any] = {**(model_kwargs or {}), **from_pretrained_kwargs}
        if "torch_dtype" in kwargs:
            dtype = kwargs.pop("torch_dtype")
        dtype = kwargs.pop("dtype", dtype)
        self.dtype = resolve_dtype(dtype, self.device)
        bnb_config = quantization_config(quantization, compute_dtype=self.dtype)
        if bnb_config is not None:
            kwargs["quantization_config"] = bnb_config
            kwargs.setdefault("device_map", {"": str(self.device)})
        # bitsandbytes or the caller's own quantization: its weights keep their storage dtype.
        quantized_weights = "quantization_config" in kwargs
        source = location.name_or_path
        if location.gguf_file is not None:
            # transformers de-quantizes a GGUF file on every load (half a minute for SmolLM2);
            # its dense copy, written once beside llmvec's cache, loads in seconds.
            source = str(gguf_as_folder(location))
        revision = kwargs.get("revision")
        tokenizer_kwargs = {key: kwargs[key] for key in ("revision", "token") if key in kwargs}
        check_tokenizer_files(source)
        with hub_errors(model, location):
            self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
                source, trust_remote_code=trust_remote_code, **tokenizer_kwargs
            )
        if not self.tokenizer.is_fast:
            raise ValueError(
                f"{model!r} has no fast tokenizer; llmvec needs character offsets to keep "
                "instructions out of pooling"
            )
        with hub_errors(model, location):
            loaded = _load_model(
                source,
                dtype=self.dtype,
                trust_remote_code=trust_remote_code,
                attention=default_attention(self.device, self.dtype),
                **kwargs,
            )
        if adapter_directories:
            loaded = merge_adapters(loaded, adapter_directories)
        if self.device.type == "cpu" and "attn_implementation" not in kwargs:
            use_grouped_sdpa(loaded)
        self.model: PreTrainedModel = loaded
        if bnb_config is None and "device_map" not in kwargs:
            self.model.to(self.device)
        if not quantized_weights:
            _cast_floating(self.model, self.dtype)
        if int8:
            quantize_linear_layers(self.model, self.device, self.dtype, self.tokenizer)
        self.model.eval()
        self.model.requires_grad_(False)
        config = self.model.config
        self.num_layers: int = int(config.num_hidden_layers)
        self.hidden_size: int = int(config.hidden_size)
        decoder = is_decoder_config(config.model_type)
        self.causal = decoder and not bidirectional
        self.pool_prefix_specials = not decoder
        self.special_tokens = True
        self.layers = _layer_list(self.model, self.num_layers)
        #: Whether the blocks run compiled (their first passes over new shapes compile).
        self.compiled = compile
        if compile:
            compile_blocks(self.layers)
        commit = getattr(config, "_commit_hash", None)
        self.model_revision = adapters_revision(
            fingerprint(location, revision or commit), adapter_directories
        )
        self._forward_kwargs = forward_kwargs(bidirectional, decoder)
        #: Per layer: whether the last block's MLP may run on the pooled tokens alone.
        self._narrowing: dict[int, bool] = {}
        #: Whether right-padded causal batches may run without the padding mask (probed once).
        self._unmasked: bool | None = None
        if bidirectional:
            check_bidirectional(
                lambda ids, mask: self.hidden_states(ids, mask, self.num_layers),
                int(self.model.get_input_embeddings().num_embeddings),
                self.device,
                model,
            )
        logger.debug(
            "loaded %s (%s, %d layers, hidden %d, %s) on %s",
            model,
            config.model_type,
            self.num_layers,
            self.hidden_size,
            self.dtype,
            self.device,
        )

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layer: int,
        prefix: PrefixState | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """States after ``layer`` for the tokens of ``input_ids``.

        With ``prefix``, the inputs continue a cached shared prefix: its keys and values are
        reused, ``attention_mask`` covers only the new tokens, and only their states return.
        With ``positions`` (one column per row), only those states return, ``(batch, 1,
        hidden)``, and the last block's MLP runs for those tokens alone.
        """
        batch = input_ids.shape[0]
        # Checked where the encoder built the mask (the CPU): reading it there never waits.
        unmasked = prefix is None and self._runs_unmasked(attention_mask)
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        if positions is not None:
            positions = positions.to(self.device)
        cache = None
        full_mask = attention_mask
        if prefix is not None:
            cache = DynamicCache(
                ddp_cache_data=[
                    (keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1))
                    for keys, values in prefix.keys_values
                ],
                config=self.model.config,
            )
            ones = attention_mask.new_ones((batch, len(prefix.ids)))
            full_mask = torch.cat([ones, attention_mask], dim=1)
        if unmasked:
            # Right padding, causal attention: no real token sees the padding after it.
            model_mask = None
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)
            position_ids = position_ids.expand(batch, -1)
        else:
            model_mask = full_mask
            # Position ids follow the mask, so left and right padding give the same states.
            position_ids = (full_mask.long().cumsum(dim=1) - 1).clamp(min=0)
            position_ids = position_ids[:, full_mask.shape[1] - input_ids.shape[1] :]
        states, _ = self._run(
            input_ids=input_ids,
            attention_mask=model_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=cache is not None,
            layer=layer,
            narrow_to=positions if positions is not None and self._can_narrow(layer) else None,
        )
        if positions is None:
            return states
        rows = torch.arange(states.shape[0], device=states.device)
        return states[rows, positions].unsqueeze(1)

    def _runs_unmasked(self, attention_mask: torch.Tensor) -> bool:
        """Whether this batch may run without its padding mask: causal attention, every row's
        padding after its tokens, and a model proved (once, on a probe) to give its real tokens
        the same states without the mask. Unmasked, attention takes the causal kernel path,
        which skips the masked half instead of computing it and masking it out."""
        if not self.causal:
            return False
        if not bool((attention_mask[:, :-1] >= attention_mask[:, 1:]).all()):
            return False
        if self._unmasked is None:
            self._unmasked = self._unmasked_holds()
            logger.debug("right-padded batches run without a padding mask: %s", self._unmasked)
        return self._unmasked

    def _unmasked_holds(self) -> bool:
        ids, mask, position_ids = self._probe_inputs()
        real = mask.bool()
        with self._probing():
            masked, _ = self._run(
                input_ids=ids, attention_mask=mask, position_ids=position_ids, layer=self.num_layers
            )
            unmasked, _ = self._run(
                input_ids=ids,
                position_ids=torch.arange(ids.shape[1], device=self.device).expand_as(ids),
                layer=self.num_layers,
            )
        return _probe_agrees(masked[real], unmasked[real])

    @contextlib.contextmanager
    def _probing(self) -> Iterator[None]:
        """Around a probe's passes: no graph, no dropout, and the random generators left as
        they were (a probe in the middle of training neither draws dropout masks nor moves the
        generator, so a resumed run draws what an uninterrupted one does)."""
        training = self.model.training
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            self.model.eval()
            try:
                yield
            finally:
                self.model.train(training)

    def _probe_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two rows of six token ids, the second right-padded after four; with position ids."""
        vocab = min(int(self.model.config.vocab_size), int(self.tokenizer.vocab_size))
        ids = (torch.arange(12, device=self.device).reshape(2, 6) * 7 + 3) % vocab
        mask = torch.ones_like(ids)
        mask[1, 4:] = 0
        return ids, mask, (mask.cumsum(1) - 1).clamp(min=0)

    def _can_narrow(self, layer: int) -> bool:
        """Whether block ``layer - 1``'s MLP can run on the pooled tokens alone, proved once per
        layer on a probe: the narrowed states at the probed positions equal the full ones. (A
        block whose residual does not broadcast a one-token MLP output fails the probe.)"""
        if layer not in self._narrowing:
            self._narrowing[layer] = layer >= 1 and self._narrowing_holds(layer)
            logger.debug("last-block narrowing at layer %d: %s", layer, self._narrowing[layer])
        return self._narrowing[layer]

    def _narrowing_holds(self, layer: int) -> bool:
        ids, mask, position_ids = self._probe_inputs()
        positions = torch.tensor([5, 3], device=self.device)
        rows = torch.arange(2, device=self.device)
        inputs = {"attention_mask": mask, "position_ids": position_ids}
        with self._probing():
            full, _ = self._run(input_ids=ids, layer=layer, **inputs)
            try:
                narrowed, _ = self._run(input_ids=ids, layer=layer, narrow_to=positions, **inputs)
            except (RuntimeError, IndexError, ValueError):
                return False
        if narrowed.shape != full.shape:
            return False
        return _probe_agrees(full[rows, positions], narrowed[rows, positions])

    def prefix_state(self, ids: list[int], layer: int) -> PrefixState:
        """Run a shared prefix once and keep its keys/values (for the layers before ``layer``)
        and its states at ``layer``."""
        input_ids = torch.tensor([ids], device=self.device)
        cache = DynamicCache(config=self.model.config)
        states, cache = self._run(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            position_ids=torch.arange(len(ids), device=self.device)[None],
            past_key_values=cache,
            use_cache=True,
            layer=layer,
        )
        keys_values = [
            (cached.keys, cached.values)
            for cached in cache.layers[: min(layer, self.num_layers)]  # type: ignore[union-attr]
        ]
        return PrefixState(tuple(ids), layer, keys_values, states[0])

    def _run(
        self, layer: int, narrow_to: torch.Tensor | None = None, **inputs: Any
    ) -> tuple[torch.Tensor, Any]:
        """Forward up to ``layer``: a pre-hook on the next block captures its input and stops.

        With ``narrow_to`` (a column per row), block ``layer - 1``'s MLP sees only those tokens;
        the block's residual broadcasts the result, so only those columns of the returned states
        are right (the caller reads no others).
        """
        inputs.update(self._forward_kwargs)
        handles = []
        mlp = getattr(self.layers[layer - 1], "mlp", None) if layer >= 1 else None
        if narrow_to is not None and isinstance(mlp, nn.Module):

            def narrow(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
                if not args:
                    return None
                rows = torch.arange(args[0].shape[0], device=args[0].device)
                return (args[0][rows, narrow_to].unsqueeze(1), *args[1:])

            handles.append(mlp.register_forward_pre_hook(narrow))
        captured: list[torch.Tensor] = []

        def capture(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured.append(args[0] if args else kwargs["hidden_states"])
            raise _StopForward

        try:
            if layer >= self.num_layers:
                output = self.model(**inputs)
                return output.last_hidden_state, output.past_key_values
            handles.append(self.layers[layer].register_forward_pre_hook(capture, with_kwargs=True))
            with contextlib.suppress(_StopForward):
                self.model(**inputs)
            return captured[0], inputs.get("past_key_values")
        finally:
            for handle in handles:
                handle.remove()
