"""EmbeddingSpec: everything that determines a vector, so stored vectors and queries can match."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

SPEC_VERSION = 1

# Fields that say *where* a model is loaded from rather than *what* it is. When both specs carry
# a model revision (a hub commit or a content fingerprint), the revision is the identity and the
# location may differ (the same GGUF file installed in two virtual environments).
_LOCATION_FIELDS = ("model",)
#: ``extra`` entries that say where further weights were loaded from (LoRA adapters, a latent-
#: attention head); their contents are identified elsewhere (the model revision, the head's
#: fingerprint), so like ``model`` they may differ when both specs carry a revision.
LOCATION_EXTRA = ("adapters", "latent_attention_weights")


@dataclass(frozen=True)
class SpecExtra:
    """The typed entries of a spec's ``extra``: what the encoder adds to the recipe."""

    #: ``None``: the tokenizer's convention.
    add_bos: bool | None = None
    #: LoRA adapter locations (absolute where local), merged in order.
    adapters: tuple[str, ...] = ()
    #: The latent-attention head's identity (see :mod:`llmvec.encoding.latent_attention`).
    latent_attention: str | None = None
    #: Where the latent-attention head's weights were loaded from.
    latent_attention_weights: str | None = None
    #: The weights' quantization (``int8``, ``8bit``, ``4bit``): it changes the vectors.
    quantization: str | None = None

    def entries(self) -> tuple[tuple[str, str], ...]:
        """The ``extra`` entries of the values that are set, in a fixed order."""
        entries: list[tuple[str, str]] = []
        if self.add_bos is not None:
            entries.append(("add_bos", str(self.add_bos).lower()))
        if self.adapters:
            entries.append(("adapters", json.dumps(list(self.adapters))))
        if self.latent_attention is not None:
            entries.append(("latent_attention", self.latent_attention))
        if self.latent_attention_weights is not None:
            entries.append(("latent_attention_weights", self.latent_attention_weights))
        if self.quantization is not None:
            entries.append(("quantization", self.quantization))
        return tuple(entries)

    @classmethod
    def read(cls, extra: tuple[tuple[str, str], ...]) -> SpecExtra:
        """The typed values of ``extra`` entries (others are ignored)."""
        entries = dict(extra)
        return cls(
            add_bos={"true": True, "false": False}.get(entries.get("add_bos", "")),
            adapters=tuple(json.loads(entries["adapters"])) if "adapters" in entries else (),
            latent_attention=entries.get("latent_attention"),
            latent_attention_weights=entries.get("latent_attention_weights"),
            quantization=entries.get("quantization"),
        )


@dataclass(frozen=True)
class EmbeddingSpec:
    """The full recipe of a vector: model, text preparation, pooling and post-processing.

    Two vectors are comparable only when their specs are equal (see :meth:`differences`).
    """

    model: str
    model_revision: str | None = None
    backend: str = "transformers"
    pooling: str = "mean"
    template: str | None = None
    layer: int = -1
    query_instruction: str | None = None
    document_instruction: str | None = None
    instruction_format: str | None = None
    bidirectional: bool = False
    max_length: int = 512
    normalize: bool = True
    dim: int = 0
    truncate_dim: int | None = None
    precision: str = "float32"
    calibration: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["spec_version"] = SPEC_VERSION
        return data

    def to_json(self) -> str:
        """Serialise to a JSON string that :meth:`from_json` turns back into an equal spec."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingSpec:
        """Build a spec from :meth:`to_dict` output; unknown keys are an error."""
        data = dict(data)
        version = data.pop("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValueError(
                f"unsupported EmbeddingSpec version {version!r}; this llmvec reads "
                f"version {SPEC_VERSION}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown EmbeddingSpec fields {unknown}; known fields: {sorted(names)}"
            )
        if data.get("calibration") is not None:
            low, high = data["calibration"]
            data["calibration"] = (tuple(float(v) for v in low), tuple(float(v) for v in high))
        if data.get("extra") is not None:
            data["extra"] = tuple((str(k), str(v)) for k, v in data["extra"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> EmbeddingSpec:
        """Parse a spec written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> EmbeddingSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: EmbeddingSpec) -> list[str]:
        """Names of the fields whose values make vectors of ``self`` and ``other`` incomparable."""
        locations_may_differ = self.model_revision is not None and other.model_revision is not None
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        if locations_may_differ:
            for values in (mine, theirs):
                for name in _LOCATION_FIELDS:
                    del values[name]
                values["extra"] = [
                    item for item in values["extra"] if item[0] not in LOCATION_EXTRA
                ]
        return [name for name in mine if mine[name] != theirs[name]]

    def check_compatible(self, other: EmbeddingSpec, *, what: str = "index") -> None:
        """Raise ``ValueError`` naming each differing field if ``other`` cannot query ``self``."""
        fields = self.differences(other)
        if fields:
            details = "; ".join(
                f"{name}: stored {getattr(self, name)!r} != encoder {getattr(other, name)!r}"
                for name in fields
            )
            raise ValueError(f"the encoder's EmbeddingSpec does not match the {what}'s: {details}")
