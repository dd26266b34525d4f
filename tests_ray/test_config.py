"""What needs no cluster: importing llmvec leaves Ray out, encoder configs travel intact (vLLM's
multi-GPU arguments included), a Ray address that does not answer fails fast, and FAISS shards
merge by id."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL, free_port

from llmvec import EmbeddingSpec, Encoder, FaissIndex
from llmvec.index.faiss import merge
from llmvec.ray import EncoderConfig


def test_importing_llmvec_never_imports_ray() -> None:
    code = (
        "import sys, llmvec, llmvec.ray, llmvec.cli, llmvec.index\n"
        "from llmvec.ray import EmbedBatch, embed, write_qdrant\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_llmvec_ray_reaches_the_real_ray() -> None:
    # llmvec.ray must not shadow the real package inside its own modules.
    import ray

    from llmvec.ray.config import EncoderConfig as Config

    assert Path(ray.__file__).parent.name == "ray" and "llmvec" not in ray.__file__
    assert Config.probe.__module__ == "llmvec.ray.config"


def test_vllm_multi_gpu_arguments_pass_through() -> None:
    kwargs = {
        "model": "Qwen/Qwen3-Embedding-8B",
        "backend": "vllm",
        "tensor_parallel_size": 4,
        "distributed_executor_backend": "ray",
        "gpu_memory_utilization": 0.85,
    }
    config = EncoderConfig.of(kwargs)
    travelled = pickle.loads(pickle.dumps(config))
    assert travelled == config and dict(travelled.kwargs) == kwargs


def test_config_forms(minilm: Encoder) -> None:
    spec = minilm.spec
    assert EncoderConfig.of(MODEL) == EncoderConfig({"model": MODEL})
    assert EncoderConfig.of(spec) == EncoderConfig(spec=spec)
    assert EncoderConfig.of(spec.to_json()) == EncoderConfig(spec=spec)
    built = EncoderConfig({"batch_size": 8}, spec).build()
    assert built.spec == spec and built.batch_size == 8
    with pytest.raises(ValueError, match="does not match the Ray job's"):
        EncoderConfig({"model": MODEL}, spec.replace(pooling="last_token")).build()
    with pytest.raises(ValueError, match="needs a model"):
        EncoderConfig({"batch_size": 8})
    with pytest.raises(ValueError, match="invalid EmbeddingSpec JSON"):
        EncoderConfig.of("{not json")
    with pytest.raises(TypeError, match="got int"):
        EncoderConfig.of(3)  # type: ignore[arg-type]


def test_cli_refuses_an_address_that_does_not_answer(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("A sentence.", encoding="utf-8")
    store = tmp_path / "index"
    address = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "llmvec.cli", "index", str(tmp_path / "docs")),
            *("--ray", address, "--store", f"faiss:{store}", "--model", MODEL),
        ],
        capture_output=True,
        text=True,
        timeout=120,  # Ray's own retries would take minutes
    )
    assert result.returncode == 2, result.stderr
    assert f"no Ray cluster answers at {address!r}" in result.stderr
    assert not store.exists()


def test_merge_keeps_the_last_copy_of_an_id_and_refuses_mixed_shards() -> None:
    spec = EmbeddingSpec(model="test-vectors", dim=8)
    vectors = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    first, second = FaissIndex(spec=spec), FaissIndex(spec=spec)
    first.add_embeddings(vectors[:4], ids=[0, 1, 2, 3], texts=["a", "b", "c", "d"])
    second.add_embeddings(vectors[3:], ids=[3, 4, 5], texts=["d again", "e", "f"])
    merged = merge([first, second], precision="binary")
    assert merged.ids == [0, 1, 2, 3, 4, 5] and merged.spec.precision == "binary"
    assert merged.search(vectors[3], k=1)[0].text == "d again"
    with pytest.raises(ValueError, match=r"shard 1's EmbeddingSpec differs .* in \['dim'"):
        merge([first, FaissIndex(spec=spec.replace(dim=4))])
    with pytest.raises(ValueError, match="shard 0 has precision 'int8'"):
        merge([FaissIndex(spec=spec, precision="int8")])
