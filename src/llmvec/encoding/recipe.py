"""The recipe of a vector: pooling, template and layer after llemb's smart defaults."""

from __future__ import annotations

from dataclasses import dataclass

from llmvec.encoding.pooling import validate_pooling
from llmvec.encoding.templates import PENULTIMATE_LAYER_TEMPLATES, resolve_template, template_name


@dataclass(frozen=True)
class Recipe:
    """Pooling, template and (absolute) layer after llemb's smart defaults."""

    pooling: str
    template: str | None
    layer: int

    def for_call(
        self, pooling: str | None, template: str | None, layer: int | None, num_layers: int
    ) -> Recipe:
        """This recipe with one call's values: they win, and the template (the call's, else
        this one's) decides what they leave to the defaults."""
        if pooling is None and template is None and layer is None:
            return self
        template = self.template if template is None else template
        return resolve_recipe(pooling, template, layer, num_layers)


def resolve_recipe(
    pooling: str | None, template: str | None, layer: int | None, num_layers: int
) -> Recipe:
    """Apply the smart defaults: a template implies ``last_token`` (else ``mean``); ``pcoteol``
    and ``ke`` imply layer -2 (else -1). Explicit values win. Layers count from 0 (the embedding
    output) to ``num_layers``; negative values count back from the last (-1)."""
    resolved_template = resolve_template(template)
    if pooling is None:
        pooling = "last_token" if resolved_template is not None else "mean"
    validate_pooling(pooling)
    if layer is None:
        layer = -2 if template_name(resolved_template) in PENULTIMATE_LAYER_TEMPLATES else -1
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, got {layer!r}")
    if not -(num_layers + 1) <= layer <= num_layers:
        raise ValueError(
            f"layer {layer} is out of range for a model with {num_layers} layers: allowed "
            f"{-(num_layers + 1)} to {num_layers} (0 = embeddings, -1 = last layer)"
        )
    absolute = layer if layer >= 0 else num_layers + 1 + layer
    return Recipe(pooling, resolved_template, absolute)
