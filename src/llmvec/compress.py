"""Vector compression: Matryoshka truncation, scalar quantization and packed binary codes.

Precisions and what one vector of dimension ``d`` costs:

=============  ==============================================  ===============
precision      encoding                                        bytes / vector
=============  ==============================================  ===============
``float32``    unchanged                                       ``4 * d``
``float16``    half precision                                  ``2 * d``
``int8``       per-dimension range mapped onto -128..127       ``d``
``uint8``      per-dimension range mapped onto 0..255          ``d``
``binary``     sign bits packed 8 per byte, minus 128, int8    ``ceil(d / 8)``
``ubinary``    sign bits packed 8 per byte, stored as uint8    ``ceil(d / 8)``
=============  ==============================================  ===============

``int8`` and ``uint8`` need per-dimension ranges (a *calibration*). Compute them once with
:func:`calibrate` on a sample of documents and pass the same ranges for every later batch and
every query: an index keeps them in its :class:`~llmvec.spec.EmbeddingSpec`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from llmvec.validation import check_positive

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")
SCALAR_PRECISIONS = ("int8", "uint8")
BINARY_PRECISIONS = ("binary", "ubinary")

#: Per-dimension (low, high) ranges, the form an :class:`~llmvec.spec.EmbeddingSpec` stores.
Calibration: TypeAlias = tuple[tuple[float, ...], tuple[float, ...]]

_LEVELS = 255  # steps between the lowest and the highest code of an 8-bit scalar quantizer
_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)


def check_precision(precision: str, allowed: Sequence[str] = PRECISIONS) -> str:
    """Return ``precision`` if it is one of ``allowed``, else raise naming the allowed ones."""
    if precision not in allowed:
        raise ValueError(f"unknown precision {precision!r}; allowed: {list(allowed)}")
    return precision


def as_matrix(emb: npt.ArrayLike, what: str = "embeddings") -> np.ndarray:
    """A 2-D float32 view of ``emb`` (one vector becomes one row); rejects NaN and inf."""
    array = np.asarray(emb, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{what} must be a vector or a 2-D matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return array


def normalize(emb: npt.ArrayLike) -> np.ndarray:
    """L2-normalise each row (zero rows stay zero)."""
    matrix = as_matrix(emb)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out: np.ndarray = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return out


def truncate(emb: npt.ArrayLike, dim: int, renormalize: bool = True) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dim`` dimensions, then L2-normalise again.

    A 1-D input gives a 1-D output. ``dim`` may not exceed the vectors' dimension.
    """
    array = np.asarray(emb, dtype=np.float32)
    check_positive("dim", dim)
    if array.shape[-1] < dim:
        raise ValueError(f"cannot truncate {array.shape[-1]}-dimensional vectors to dim={dim}")
    matrix = as_matrix(array)[:, :dim]
    if renormalize:
        matrix = normalize(matrix)
    return matrix[0] if array.ndim == 1 else matrix


def calibrate(emb: npt.ArrayLike) -> Calibration:
    """Per-dimension (min, max) ranges of a calibration sample, for ``int8``/``uint8``."""
    matrix = as_matrix(emb)
    if len(matrix) == 0:
        raise ValueError("cannot calibrate on an empty set of embeddings")
    low = matrix.min(axis=0)
    high = matrix.max(axis=0)
    return tuple(float(v) for v in low), tuple(float(v) for v in high)


def calibration_arrays(calibration: Calibration | npt.ArrayLike, dim: int) -> tuple[Any, Any]:
    """``(low, width)`` float32 arrays of a calibration; a zero-width range gets width 1."""
    ranges = np.asarray(calibration, dtype=np.float32)
    if ranges.shape != (2, dim):
        raise ValueError(
            f"calibration must hold a low and a high value per dimension, shape (2, {dim}); "
            f"got shape {ranges.shape}"
        )
    low, high = ranges
    if (high < low).any():
        raise ValueError("calibration has a dimension whose high value is below its low value")
    width = np.where(high > low, high - low, np.float32(1.0)).astype(np.float32)
    return low, width


def scalar_codes(emb: npt.ArrayLike, calibration: Calibration | npt.ArrayLike) -> np.ndarray:
    """Unsigned 8-bit codes 0..255: each dimension's range split into 255 equal steps."""
    matrix = as_matrix(emb)
    low, width = calibration_arrays(calibration, matrix.shape[1])
    scaled = np.clip((matrix - low) / width, 0.0, 1.0) * _LEVELS
    codes: np.ndarray = np.floor(scaled).astype(np.uint8)
    return codes


def dequantize(
    codes: npt.ArrayLike, precision: str, calibration: Calibration | npt.ArrayLike
) -> np.ndarray:
    """Approximate float32 vectors back from ``int8``/``uint8`` codes (the middle of each step)."""
    check_precision(precision, SCALAR_PRECISIONS)
    array = np.asarray(codes)
    unsigned = array.astype(np.float32) + (128.0 if precision == "int8" else 0.0)
    low, width = calibration_arrays(calibration, array.shape[-1])
    vectors: np.ndarray = (low + (unsigned + 0.5) / _LEVELS * width).astype(np.float32)
    return vectors


def pack_bits(emb: npt.ArrayLike) -> np.ndarray:
    """Sign bits (``x > 0``) packed 8 per byte, most significant bit first, as uint8."""
    return np.packbits(as_matrix(emb) > 0, axis=-1)


def quantize(
    emb: npt.ArrayLike,
    precision: str,
    calibration: Calibration | npt.ArrayLike | None = None,
) -> np.ndarray:
    """Compress float vectors to ``precision`` (see the module docstring for the encodings).

    ``calibration`` gives the per-dimension ranges for ``int8``/``uint8``; without it the
    ranges of ``emb`` itself are used (a warning is logged, since queries quantized alone then
    get different ranges than the documents). It is ignored for the other precisions.
    A 1-D input gives a 1-D output.
    """
    check_precision(precision)
    array = np.asarray(emb, dtype=np.float32)
    matrix = as_matrix(array)
    if precision == "float32":
        out = matrix
    elif precision == "float16":
        out = matrix.astype(np.float16)
    elif precision in SCALAR_PRECISIONS:
        if calibration is None:
            logger.warning(
                "quantizing to %s without a calibration: using the ranges of these %d vectors; "
                "pass calibration=llmvec.compress.calibrate(sample) to keep ranges stable",
                precision,
                len(matrix),
            )
            calibration = calibrate(matrix)
        codes = scalar_codes(matrix, calibration)
        out = (codes.astype(np.int16) - 128).astype(np.int8) if precision == "int8" else codes
    else:
        packed = pack_bits(matrix)
        # sentence-transformers' convention: ``binary`` is the packed byte shifted by -128.
        out = (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    return out[0] if array.ndim == 1 else out


def bytes_per_vector(dim: int, precision: str) -> int:
    """Storage cost of one ``dim``-dimensional vector at ``precision``."""
    check_precision(precision)
    if precision in BINARY_PRECISIONS:
        return -(-dim // 8)
    return dim * {"float32": 4, "float16": 2}.get(precision, 1)


def hamming_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """Similarity of packed binary codes: ``1 - hamming_distance / bits``, a ``(len(a), len(b))``
    matrix in [0, 1]. Both sides must be ``binary`` (int8) or both ``ubinary`` (uint8) codes."""
    left = np.atleast_2d(np.asarray(a))
    right = np.atleast_2d(np.asarray(b))
    if left.dtype != right.dtype or left.dtype not in (np.int8, np.uint8):
        raise ValueError(
            f"hamming_similarity needs two binary (int8) or two ubinary (uint8) code arrays, "
            f"got {left.dtype} and {right.dtype}"
        )
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"codes of different lengths: {left.shape[1]} and {right.shape[1]} bytes")
    xor = left.view(np.uint8)[:, None, :] ^ right.view(np.uint8)[None, :, :]
    distance = _POPCOUNT[xor].sum(axis=-1, dtype=np.int64)
    similarity: np.ndarray = (1.0 - distance / (8 * left.shape[1])).astype(np.float32)
    return similarity


def cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """Cosine similarity matrix ``(len(a), len(b))`` of float vectors (any float dtype)."""
    left, right = normalize(a), normalize(b)
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"vectors of different dimensions: {left.shape[1]} and {right.shape[1]}")
    similarity: np.ndarray = left @ right.T
    return similarity
