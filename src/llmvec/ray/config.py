"""EncoderConfig: what each Ray actor needs to build the same :class:`~llmvec.Encoder`.

An Encoder holds a model and cannot travel to a Ray worker; its recipe can. A config is the
Encoder's keyword arguments (``{"model": "all-minilm-l6-v2", "batch_size": 64}``), or an
:class:`~llmvec.EmbeddingSpec` (as stored with an index) plus the keyword arguments that do not
change the vectors (``device``, ``dtype``, ``batch_size`` and backend arguments such as vLLM's
``tensor_parallel_size`` and ``distributed_executor_backend``, which reach the backend as they are),
or the URL of an ``llmvec serve`` server that every actor calls instead of loading a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from llmvec.spec import EmbeddingSpec

if TYPE_CHECKING:
    from llmvec.text_encoder import TextEncoder

#: What the Ray helpers accept as an encoder configuration (see :meth:`EncoderConfig.of`).
EncoderLike: TypeAlias = "EncoderConfig | Mapping[str, Any] | EmbeddingSpec | str"

#: Ray options that reserve resources: the probe task runs with the same ones as the actors.
RESOURCE_OPTIONS = (
    "num_cpus",
    "num_gpus",
    "memory",
    "resources",
    "accelerator_type",
    "runtime_env",
    "label_selector",
)


def actor_resources(
    num_gpus: float | None, num_cpus: float | None, ray_options: Mapping[str, Any]
) -> dict[str, Any]:
    """The Ray options of a job's actors: ``num_gpus``, ``num_cpus`` and the other options."""
    return {"num_gpus": num_gpus, "num_cpus": num_cpus, **ray_options}


@dataclass(frozen=True)
class EncoderConfig:
    """How to build an Encoder, in a form that pickles.

    Attributes:
        kwargs: keyword arguments of :class:`~llmvec.Encoder` (with ``model``); or, with ``spec``
            and no ``model``, the extra arguments of :meth:`~llmvec.Encoder.from_spec`.
        spec: when set, the built encoder must produce vectors of this spec, else
            :meth:`build` raises a ``ValueError`` naming the differing fields.
        server: the URL of an ``llmvec serve`` server: :meth:`build` gives a
            :class:`~llmvec.serving.RemoteEncoder` (``kwargs``: its ``api_key``,
            ``batch_size``, ``timeout``).
    """

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    spec: EmbeddingSpec | None = None
    server: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise TypeError(f"Encoder keyword arguments must be a dict, got {self.kwargs!r}")
        if self.spec is not None and not isinstance(self.spec, EmbeddingSpec):
            raise TypeError(f"spec must be an EmbeddingSpec, got {type(self.spec).__name__}")
        if self.spec is None and self.server is None and "model" not in self.kwargs:
            raise ValueError(
                f"an encoder config needs a model: {{'model': NAME, ...}} or a spec; got "
                f"{dict(self.kwargs)!r}"
            )

    @classmethod
    def of(cls, value: EncoderLike) -> EncoderConfig:
        """A config from an :class:`EncoderConfig`, a dict of Encoder keyword arguments, an
        :class:`~llmvec.EmbeddingSpec`, a spec's JSON, a server's ``http(s)://`` URL, or a model
        name."""
        if isinstance(value, EncoderConfig):
            return value
        if isinstance(value, EmbeddingSpec):
            return cls(spec=value)
        if isinstance(value, Mapping):
            return cls(dict(value))
        if isinstance(value, str):
            if value.lstrip().startswith("{"):
                try:
                    return cls(spec=EmbeddingSpec.from_json(value))
                except (json.JSONDecodeError, TypeError) as error:
                    raise ValueError(f"invalid EmbeddingSpec JSON: {error}") from None
            if value.startswith(("http://", "https://")):
                return cls(server=value)
            return cls({"model": value})
        raise TypeError(
            "encoder must be a dict of Encoder keyword arguments, an EmbeddingSpec, its JSON, a "
            f"model name or an EncoderConfig; got {type(value).__name__}"
        )

    def describe(self) -> str:
        """A short description for messages."""
        parts = [f"server {self.server}"] if self.server is not None else []
        if self.kwargs and self.server is None:
            parts.append(repr(dict(self.kwargs)))
        if self.spec is not None:
            parts.append(f"spec of {self.spec.model!r} (dim {self.spec.dim})")
        return " with ".join(parts)

    def build(self) -> TextEncoder:
        """Build the encoder (loads the model, or connects to the server), checked against
        :attr:`spec` when there is one."""
        from llmvec.encoder import Encoder
        from llmvec.index.specs import check_spec, encoder_for
        from llmvec.serving import RemoteEncoder

        encoder: TextEncoder
        if self.server is not None:
            encoder = RemoteEncoder(self.server, **self.kwargs)
        elif self.spec is not None and "model" not in self.kwargs:
            return encoder_for(self.spec, what="Ray job", **self.kwargs)
        else:
            encoder = Encoder(**self.kwargs)
        if self.spec is not None:
            check_spec(self.spec, encoder.spec, what="Ray job")
        return encoder

    def probe(self, **ray_options: Any) -> EncoderConfig:
        """Build the encoder once in a Ray task (with the resource options of ``ray_options``,
        as the actors will) and return this config with the spec it produces.

        Run before a job, so that a config that cannot build an Encoder fails with a
        ``ValueError`` naming the cause before any vector is computed or written; the actors then
        check that they all produce that spec.
        """
        import ray

        options = {k: v for k, v in ray_options.items() if k in RESOURCE_OPTIONS and v is not None}
        task = ray.remote(_spec_json).options(**options)
        try:
            spec = EmbeddingSpec.from_json(ray.get(task.remote(self)))
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, BaseException) else error
            raise ValueError(
                f"cannot build an Encoder from {self.describe()}: {type(cause).__name__}: {cause}"
            ) from cause
        return EncoderConfig(self.kwargs, spec, self.server)


def _spec_json(config: EncoderConfig) -> str:
    """The spec of ``config``'s encoder, as JSON (runs in a Ray task)."""
    return config.build().spec.to_json()
