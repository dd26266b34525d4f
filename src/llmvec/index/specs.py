"""How a stored spec and an encoder must agree: the same vectors, from weights found where the
stored spec says."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmvec.spec import EmbeddingSpec

if TYPE_CHECKING:
    from llmvec.encoder import Encoder
    from llmvec.text_encoder import TextEncoder


def check_spec(stored: EmbeddingSpec, encoder_spec: EmbeddingSpec, what: str) -> None:
    """Refuse an encoder whose vectors differ from the stored ones. ``precision`` and
    ``calibration`` belong to the index, so they are copied from ``stored`` before comparing.

    Where the stored model is named differently from the encoder's (the same weights at another
    location), the stored name must still lead to those weights (:func:`check_model_location`):
    searching builds its encoder from that name, so writing and searching accept the same stores.
    """
    expected = encoder_spec.replace(precision=stored.precision, calibration=stored.calibration)
    stored.check_compatible(expected, what=what)
    if stored.model != encoder_spec.model:
        check_model_location(stored, what)


def index_spec(encoder: TextEncoder | None, spec: EmbeddingSpec | None, what: str) -> EmbeddingSpec:
    """The spec a new index stores: ``spec``, checked against the encoder's, else the encoder's."""
    if spec is None:
        if encoder is None:
            raise ValueError(f"{what} needs an encoder or a spec")
        return encoder.spec
    if encoder is not None:
        check_spec(spec, encoder.spec, what="given spec")
    return spec


def check_model_location(stored: EmbeddingSpec, what: str) -> None:
    """Refuse a stored spec whose model cannot be found where it says, or whose weights there
    are not the ones it names (its ``model_revision`` fingerprint)."""
    if stored.backend == "static":
        return
    from llmvec.models import fingerprint, resolve_model
    from llmvec.trained_folder import is_trained_folder, trained_revision

    try:
        location = resolve_model(stored.model)
    except (OSError, ValueError) as error:
        message = f"the {what} names model {stored.model!r}, which is not here: {error}"
        raise ValueError(message) from None
    adapters = any(name == "adapters" for name, _ in stored.extra)
    if location.is_local and stored.model_revision is not None and not adapters:
        trained = is_trained_folder(stored.model)
        found = trained_revision(stored.model) if trained else fingerprint(location)
        if found != stored.model_revision:
            raise ValueError(
                f"the {what} names model {stored.model!r}, whose weights here ({found}) are not "
                f"the stored vectors' ({stored.model_revision})"
            )


def encoder_for(stored: EmbeddingSpec, what: str, **kwargs: Any) -> Encoder:
    """The encoder of a stored spec (``kwargs``: device, batch size...), checked against it."""
    from llmvec.encoder import Encoder

    check_model_location(stored, what)
    encoder = Encoder.from_spec(stored, **kwargs)
    check_spec(stored, encoder.spec, what=what)
    return encoder
