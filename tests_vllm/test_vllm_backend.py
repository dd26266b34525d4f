"""backend="vllm" against backend="transformers" on SmolLM2-135M-Instruct, with a real vLLM engine.

Runs in the vLLM environment only (scripts/test_vllm.sh). vLLM fixes its pooler type when its
engine starts, so the module starts two engines, one after the other: LAST (last_token,
eos_token) and MEAN. They run eagerly (``enforce_eager=True``): on CPU, torch.compile adds
minutes to each start and barely changes the speed; the compiled path gives the same vectors.
Errors for recipes vLLM cannot serve are raised before any engine starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llmvec import Encoder

#: Short news, captions and forum lines in the style of STS-B, with near-paraphrases among them.
SENTENCES = [
    "A man is playing a guitar.",
    "A man plays the guitar on a stage.",
    "A woman is slicing an onion.",
    "Someone is cutting vegetables in the kitchen.",
    "Two dogs are running through a snowy field.",
    "A dog runs across the grass.",
    "The cat is sleeping on the windowsill.",
    "A kitten naps in the sun.",
    "A child is riding a bicycle down the street.",
    "A boy rides his bike on the road.",
    "Stocks fell sharply on Monday after the central bank raised rates.",
    "Markets dropped as interest rates went up.",
    "The president met with foreign leaders in Brussels on Thursday.",
    "Heads of state gathered for a summit in Belgium.",
    "Heavy rain caused flooding in several coastal towns.",
    "Floods hit villages along the coast after days of rain.",
    "How do I reset my password?",
    "What is the best way to learn a new language?",
    "The company reported a 12% rise in quarterly profit.",
    "Profits at the firm grew by twelve percent this quarter.",
    "A plane is taking off from the runway.",
    "An airplane departs from the airport.",
    "The orchestra performed Beethoven's ninth symphony last night.",
    "A group of people are dancing at a wedding.",
    "Scientists discovered a new species of frog in the rainforest.",
    "A new frog species was found by researchers in the jungle.",
    "The train to Chicago was delayed by two hours.",
    "She is reading a book in the library.",
    "A woman reads quietly among the shelves.",
    "The soccer team won the championship in overtime.",
    "Police arrested three suspects after the robbery.",
    "Tea is grown on the hills of Sri Lanka.",
]
MIN_COSINE = 0.999
ENGINE_ARGS = {
    "dtype": "float32",
    "max_model_len": 512,
    "gpu_memory_utilization": 0.3,
    "enforce_eager": True,
}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _assert_same_vectors(got: np.ndarray, expected: np.ndarray) -> None:
    """Same direction (cosine) and same length: vLLM's own normalisation is off."""
    assert got.shape == expected.shape == (len(SENTENCES), 576)
    cosines = _cosines(got, expected)
    assert cosines.min() > MIN_COSINE, f"cosines {np.round(cosines, 5)}"
    norms = np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)


@pytest.fixture(scope="module")
def reference() -> Encoder:
    """The transformers backend, from the same GGUF file, in float32."""
    return Encoder("smollm2", dtype="float32")


def _vllm_encoder(pooling: str) -> Iterator[Encoder]:
    encoder = Encoder("smollm2", backend="vllm", pooling=pooling, **ENGINE_ARGS)
    yield encoder
    encoder.backend.close()  # type: ignore[union-attr]


@pytest.fixture(scope="class")
def last_encoder() -> Iterator[Encoder]:
    yield from _vllm_encoder("last_token")


@pytest.fixture(scope="class")
def mean_encoder() -> Iterator[Encoder]:
    yield from _vllm_encoder("mean")


# ---------------------------------------------------------------- errors, before any engine
def test_llmvec_import_does_not_import_vllm() -> None:
    code = "import sys, llmvec, llmvec.backends; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": -2}, "layer -2"),
        ({"template": "ke"}, "pcoteol and ke templates default to layer -2"),
        ({"pooling": "weighted_mean"}, "pooling='weighted_mean'"),
        ({"pooling": "latent_attention"}, "pooling='latent_attention'"),
        # SmolLM2's tokenizer adds no BOS; forcing one makes mean skip it, which vLLM cannot.
        ({"pooling": "mean", "add_bos": True}, "BOS or instruction tokens"),
        ({"pooling": "first_token", "add_bos": True}, "BOS or instruction tokens"),
    ],
)
def test_unsupported_recipes_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="backend='transformers'") as error:
        Encoder("smollm2", backend="vllm", **kwargs)
    assert message in str(error.value)


def test_instruction_masked_mean_fails_before_the_engine_starts() -> None:
    encoder = Encoder(
        "smollm2", backend="vllm", pooling="mean", query_instruction="Find similar sentences"
    )
    with pytest.raises(ValueError, match="BOS or instruction tokens"):
        encoder.encode_queries(SENTENCES[:2])
    assert encoder.backend._engine is None  # type: ignore[union-attr]


def test_engine_arguments_are_checked_at_construction() -> None:
    with pytest.raises(TypeError, match="tensor_paralel_size"):
        Encoder("smollm2", backend="vllm", tensor_paralel_size=1)
    with pytest.raises(ValueError, match="runner"):
        Encoder("smollm2", backend="vllm", runner="generate")


# ---------------------------------------------------------------- LAST pooler engine
class TestLastPooler:
    def test_last_token_without_template(self, last_encoder: Encoder, reference: Encoder) -> None:
        got = last_encoder.encode(SENTENCES, normalize=False)
        expected = reference.encode(SENTENCES, pooling_method="last_token", normalize=False)
        _assert_same_vectors(got, expected)

    def test_last_token_with_prompteol(self, last_encoder: Encoder, reference: Encoder) -> None:
        got = last_encoder.encode(SENTENCES, prompt_template="prompteol", normalize=False)
        expected = reference.encode(SENTENCES, prompt_template="prompteol", normalize=False)
        _assert_same_vectors(got, expected)

    def test_eos_token_on_the_same_engine(self, last_encoder: Encoder, reference: Encoder) -> None:
        got = last_encoder.encode(SENTENCES, pooling_method="eos_token", normalize=False)
        expected = reference.encode(SENTENCES, pooling_method="eos_token", normalize=False)
        _assert_same_vectors(got, expected)
        plain = last_encoder.encode(SENTENCES, normalize=False)
        assert _cosines(got, plain).max() < MIN_COSINE  # really pooled at the appended EOS

    def test_encoder_normalises_and_is_batch_invariant(self, last_encoder: Encoder) -> None:
        batch = last_encoder.encode(SENTENCES)
        np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
        alone = last_encoder.encode(SENTENCES[3])
        assert _cosines(alone, batch[3:4])[0] > 0.99999

    def test_other_pooler_needs_another_engine(self, last_encoder: Encoder) -> None:
        last_encoder.encode(SENTENCES[:1])  # the engine runs with the LAST pooler
        with pytest.raises(ValueError, match=r"started with LAST.*close\(\)"):
            last_encoder.encode(SENTENCES, pooling_method="mean")


# ---------------------------------------------------------------- MEAN pooler engine
class TestMeanPooler:
    def test_mean_without_template(self, mean_encoder: Encoder, reference: Encoder) -> None:
        got = mean_encoder.encode(SENTENCES, normalize=False)
        _assert_same_vectors(got, reference.encode(SENTENCES, normalize=False))

    def test_mean_with_prompteol(self, mean_encoder: Encoder, reference: Encoder) -> None:
        # A template alone implies last_token: mean is asked for explicitly on both.
        recipe = {"prompt_template": "prompteol", "pooling_method": "mean", "normalize": False}
        got = mean_encoder.encode(SENTENCES, **recipe)
        _assert_same_vectors(got, reference.encode(SENTENCES, **recipe))
