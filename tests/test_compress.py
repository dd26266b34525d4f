"""llmvec.compress against plain numpy references and sentence-transformers' quantizer."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sentence_transformers.quantization import quantize_embeddings

import llmvec
from llmvec.compress import (
    PRECISIONS,
    bytes_per_vector,
    calibrate,
    cosine_similarity,
    dequantize,
    hamming_similarity,
    quantize,
    truncate,
)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 48)) + rng.standard_normal(48)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_public_names() -> None:
    assert llmvec.truncate is truncate
    assert llmvec.quantize is quantize


def test_truncate_keeps_prefix_then_renormalises(vectors: np.ndarray) -> None:
    out = truncate(vectors, 16)
    reference = vectors[:, :16] / np.linalg.norm(vectors[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(out, reference, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    assert truncate(vectors[0], 16).shape == (16,)
    np.testing.assert_allclose(truncate(vectors, 16, renormalize=False), vectors[:, :16])


@pytest.mark.parametrize("dim", [0, -3, 49, 2.5, True])
def test_truncate_rejects_bad_dims(vectors: np.ndarray, dim: object) -> None:
    with pytest.raises(ValueError, match="dim"):
        truncate(vectors, dim)  # type: ignore[arg-type]


def test_encoder_truncate_dim_matches_truncate(minilm: llmvec.Encoder) -> None:
    texts = ["Bees dance to share where flowers are.", "Tides follow the Moon."]
    full = minilm.encode(texts)
    small = llmvec.Encoder("all-minilm-l6-v2", pooling="mean", truncate_dim=64)
    assert small.dim == 64 and small.spec.truncate_dim == 64
    np.testing.assert_allclose(small.encode(texts), truncate(full, 64), atol=1e-5)


def test_float_precisions(vectors: np.ndarray) -> None:
    assert quantize(vectors, "float32").dtype == np.float32
    np.testing.assert_array_equal(quantize(vectors, "float16"), vectors.astype(np.float16))


def _reference_codes(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Plain statement of the scalar code: floor(255 * (x - low) / (high - low)), clipped."""
    out = np.empty(x.shape, dtype=np.int64)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            fraction = (float(x[i, j]) - float(low[j])) / (float(high[j]) - float(low[j]))
            out[i, j] = int(np.floor(min(max(fraction, 0.0), 1.0) * 255))
    return out


def test_int8_and_uint8_use_the_calibration_ranges(vectors: np.ndarray) -> None:
    calibration = calibrate(vectors[:48])
    low, high = (np.asarray(v, dtype=np.float32) for v in calibration)
    np.testing.assert_array_equal(low, vectors[:48].min(axis=0))
    np.testing.assert_array_equal(high, vectors[:48].max(axis=0))
    queries = vectors[48:]  # partly outside the calibration ranges: clipped
    reference = _reference_codes(queries, low, high)
    uint8 = quantize(queries, "uint8", calibration)
    int8 = quantize(queries, "int8", calibration)
    assert uint8.dtype == np.uint8 and int8.dtype == np.int8
    assert np.abs(uint8.astype(np.int64) - reference).max() <= 1  # float rounding at edges
    assert (uint8.astype(np.int64) == reference).mean() > 0.99
    np.testing.assert_array_equal(int8.astype(np.int64), uint8.astype(np.int64) - 128)


def test_scalar_codes_agree_with_sentence_transformers(vectors: np.ndarray) -> None:
    calibration = calibrate(vectors)  # every value inside the ranges: no clipping difference
    ours = quantize(vectors, "uint8", calibration).astype(np.int64)
    theirs = quantize_embeddings(vectors, "uint8", calibration_embeddings=vectors)
    assert np.abs(ours - theirs.astype(np.int64)).max() <= 1
    assert (ours == theirs).mean() > 0.99


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_codes_equal_sentence_transformers(vectors: np.ndarray, precision: str) -> None:
    ours = quantize(vectors, precision)
    np.testing.assert_array_equal(ours, quantize_embeddings(vectors, precision))
    assert ours.shape == (64, 6)


def test_ubinary_is_packed_sign_bits(vectors: np.ndarray) -> None:
    codes = quantize(vectors, "ubinary")
    bits = np.unpackbits(codes, axis=1)[:, :48]
    np.testing.assert_array_equal(bits, (vectors > 0).astype(np.uint8))
    odd = quantize(vectors[:, :45], "ubinary")  # 45 bits pad to 6 bytes with zeros
    assert odd.shape == (64, 6)
    assert not np.unpackbits(odd, axis=1)[:, 45:].any()


def test_dequantize_error_is_at_most_half_a_step(vectors: np.ndarray) -> None:
    calibration = calibrate(vectors)
    low, high = (np.asarray(v) for v in calibration)
    step = (high - low) / 255
    for precision in ("int8", "uint8"):
        restored = dequantize(quantize(vectors, precision, calibration), precision, calibration)
        assert (np.abs(restored - vectors) <= step / 2 + 1e-6).all()


def test_quantize_without_calibration_warns(
    vectors: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmvec.compress"):
        codes = quantize(vectors, "int8")
    assert "without a calibration" in caplog.text
    np.testing.assert_array_equal(codes, quantize(vectors, "int8", calibrate(vectors)))


def test_one_vector_in_one_vector_out(vectors: np.ndarray) -> None:
    for precision in PRECISIONS:
        calibration = calibrate(vectors) if precision in ("int8", "uint8") else None
        single = quantize(vectors[3], precision, calibration)
        np.testing.assert_array_equal(single, quantize(vectors, precision, calibration)[3])


def test_bad_input_is_named(vectors: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"'int4'.*allowed: \['float32', 'float16', 'int8'"):
        quantize(vectors, "int4")
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([[np.nan, 1.0]]), "binary")
    with pytest.raises(ValueError, match=r"shape \(2, 48\)"):
        quantize(vectors, "int8", calibration=calibrate(vectors[:, :8]))
    with pytest.raises(ValueError, match="empty"):
        calibrate(np.empty((0, 4)))


def _reference_hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    bits_a = np.unpackbits(a.view(np.uint8), axis=1).astype(int)
    bits_b = np.unpackbits(b.view(np.uint8), axis=1).astype(int)
    distance = np.array([[int((x != y).sum()) for y in bits_b] for x in bits_a])
    return 1 - distance / bits_a.shape[1]


def test_hamming_similarity(vectors: np.ndarray) -> None:
    codes = quantize(vectors, "ubinary")
    expected = _reference_hamming(codes[:5], codes)
    np.testing.assert_allclose(hamming_similarity(codes[:5], codes), expected, rtol=1e-6)
    signed = quantize(vectors, "binary")
    np.testing.assert_allclose(hamming_similarity(signed[:5], signed), expected, rtol=1e-6)
    np.testing.assert_allclose(np.diag(hamming_similarity(codes, codes)), 1.0)
    with pytest.raises(ValueError, match="two binary"):
        hamming_similarity(signed, codes)


def test_cosine_similarity(vectors: np.ndarray) -> None:
    raw = vectors * np.arange(1, 65)[:, None]  # unnormalised input
    expected = np.array(
        [[a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for b in raw] for a in raw[:3]]
    )
    np.testing.assert_allclose(cosine_similarity(raw[:3], raw), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        cosine_similarity(raw[:3].astype(np.float16), raw), expected, atol=2e-3
    )


def test_bytes_per_vector() -> None:
    assert [bytes_per_vector(576, p) for p in PRECISIONS] == [2304, 1152, 576, 576, 72, 72]
    assert bytes_per_vector(45, "binary") == 6


def test_encoder_precision_goes_through_quantize(minilm: llmvec.Encoder) -> None:
    texts = ["Compound interest grows savings.", "Sourdough needs feeding."]
    full = minilm.encode(texts)
    binary = minilm.encode(texts, precision="ubinary")
    np.testing.assert_array_equal(binary, quantize(full, "ubinary"))
    assert minilm.encode(texts, precision="int8").dtype == np.int8
