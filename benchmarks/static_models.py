"""Static models: llmvec's lean static path against wordllama and model2vec (speed, memory, equal
vectors), and static models distilled (and trained) here against model2vec's own ``distill`` of
the same teacher (quality on STS-B test and SciFact test, time to distil).

Parts (``--parts``, default all):

- ``speed``: 10,000 training sentences. ``Encoder(..., backend="static")`` against
  ``wordllama``'s own ``embed`` on WordLlama's 256-d weights, and against model2vec's
  ``StaticModel.encode`` on a model2vec folder (model2vec's distillation of all-MiniLM-L6-v2,
  made in the ``quality`` part or here). Warm: the best of ``--repeats`` calls in this process,
  the libraries taking turns. Cold: a fresh process that imports the library, loads the model
  and encodes the texts once (wall time and peak RSS). The largest difference between the
  libraries' vectors is reported, and again with model2vec's arithmetic in float32 (a
  model2vec folder stores float16 and ``encode`` averages in float16).
- ``quality``: all-MiniLM-L6-v2 distilled to 256-d by ``llmvec.static.distill`` and by
  ``model2vec.distill`` (PCA 256, SIF 1e-4 both; each one's time), WordLlama 256-d, and any
  ``--trained`` static folders, scored on STS-B test (Spearman) and SciFact test (nDCG@10) at
  256 and 64 dimensions and binary (SciFact: FaissIndex binary, Hamming candidates rescored
  with the float vectors, as the index serves users).

Writes benchmarks/results/static_models.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from _report import DATA, RESULTS, ROOT, STS_TEST, machine, versions, write_report

from llmvec import Encoder
from llmvec.evaluation import evaluate_retrieval, evaluate_sts
from llmvec.models import resolve_model

SENTENCES = DATA / "train" / "sentences_ccby_pd.txt.gz"
SCIFACT = DATA / "scifact"
WORDLLAMA_TOKENIZER = "l2_supercat_tokenizer_config.json"


def sentences(count: int) -> list[str]:
    """The first ``count`` training sentences (4-80 words each)."""
    with gzip.open(SENTENCES, "rt", encoding="utf-8") as handle:
        lines = [line.strip() for _, line in zip(range(count), handle, strict=False)]
    return [line for line in lines if line]


def wordllama_cache(work: Path) -> Path:
    """A cache folder from which wordllama's loader finds its shipped tokenizer offline (it
    looks in ``<package>/tokenizer/``, the file is in ``<package>/tokenizers/``)."""
    import wordllama

    package = Path(wordllama.__file__).parent
    folder = work / "wordllama-cache"
    (folder / "tokenizers").mkdir(parents=True, exist_ok=True)
    link = folder / "tokenizers" / WORDLLAMA_TOKENIZER
    if not link.exists():
        link.symlink_to(package / "tokenizers" / WORDLLAMA_TOKENIZER)
    return folder


def seconds(encode: Callable[[list[str]], Any], texts: list[str]) -> float:
    start = time.perf_counter()
    encode(texts)
    return time.perf_counter() - start


#: Cold runs: import, load and encode once in a fresh process; prints seconds and peak RSS.
_COLD = """
import json, sys, time
start = time.perf_counter()
texts = json.load(open(sys.argv[2]))
library = sys.argv[1]
if library == "llmvec":
    from llmvec import Encoder
    encode = Encoder(sys.argv[3], backend="static").encode
elif library == "wordllama":
    from wordllama import WordLlama
    model = WordLlama.load(cache_dir=sys.argv[3], disable_download=True)
    encode = lambda texts: model.embed(texts, norm=True)
else:
    from model2vec import StaticModel
    encode = StaticModel.from_pretrained(sys.argv[3]).encode
encode(texts)
seconds = time.perf_counter() - start
# The high-water mark of this process's own memory (ru_maxrss would include the parent's,
# inherited across fork and exec).
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(json.dumps({"seconds": seconds, "peak_rss_mb": int(status[0]) / 1024}))
"""


def cold(library: str, model: str, texts_file: Path) -> dict[str, float]:
    """Wall time and peak RSS of a fresh process that imports, loads and encodes once."""
    command = [sys.executable, "-c", _COLD, library, str(texts_file), model]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return {key: round(value, 3) for key, value in result.items()}


def speed(texts: list[str], model2vec_folder: Path, work: Path, repeats: int) -> dict[str, Any]:
    """llmvec's lean path against each library on its own weights, warm and cold."""
    from model2vec import StaticModel
    from wordllama import WordLlama

    cache = wordllama_cache(work)
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    pairs = {
        "wordllama": (
            Encoder("wordllama", backend="static").encode,
            WordLlama.load(cache_dir=cache, disable_download=True),
            "wordllama",
            str(cache),
        ),
        "model2vec": (
            Encoder(str(model2vec_folder), backend="static").encode,
            StaticModel.from_pretrained(model2vec_folder),
            str(model2vec_folder),
            str(model2vec_folder),
        ),
    }
    results: dict[str, Any] = {}
    for peer, (ours, theirs, our_model, their_model) in pairs.items():

        def peer_encode(batch: list[str], model: Any = theirs, name: str = peer) -> Any:
            if name == "wordllama":
                return model.embed(batch, norm=True)
            return model.encode(batch)

        ours(texts[:64])
        peer_encode(texts[:64])
        ours_s = theirs_s = float("inf")
        for _ in range(repeats):  # taking turns: a load spike slows both alike
            ours_s = min(ours_s, seconds(ours, texts))
            theirs_s = min(theirs_s, seconds(peer_encode, texts))
        difference = float(np.abs(ours(texts) - peer_encode(texts)).max())
        exact = theirs
        if peer == "model2vec":  # its own arithmetic is in the stored float16; redo it in float32
            exact = StaticModel.from_pretrained(model2vec_folder)
            exact.embedding = exact.embedding.astype(np.float32)
        float32_difference = float(np.abs(ours(texts) - peer_encode(texts, exact)).max())
        cold_ours = cold("llmvec", our_model, texts_file)
        cold_theirs = cold(peer, their_model, texts_file)
        results[peer] = {
            "texts": len(texts),
            "warm_sentences_per_s": {
                "llmvec": round(len(texts) / ours_s),
                peer: round(len(texts) / theirs_s),
            },
            "warm_speed_ratio": round(theirs_s / ours_s, 2),
            "cold": {"llmvec": cold_ours, peer: cold_theirs},
            "cold_speed_ratio": round(cold_theirs["seconds"] / cold_ours["seconds"], 2),
            "max_abs_difference": difference,
            "max_abs_difference_float32_peer": float32_difference,
        }
        print(peer, json.dumps(results[peer]), flush=True)
    return results


def distil_llmvec(teacher: str, folder: Path, dim: int) -> float:
    from llmvec.static import distill

    start = time.perf_counter()
    distill(teacher, folder, dim=dim, sif_coefficient=1e-4)
    return time.perf_counter() - start


#: model2vec's distillation pins an older transformers (through skeletoken): it runs in its
#: own environment, ``.venv-model2vec`` (see benchmarks/README.md).
MODEL2VEC_PYTHON = ROOT / ".venv-model2vec" / "bin" / "python"
_MODEL2VEC_DISTILL = """
import sys, time
start = time.perf_counter()
from model2vec.distill import distill
model = distill(sys.argv[1], pca_dims=int(sys.argv[3]), sif_coefficient=1e-4, device="cpu")
model.save_pretrained(sys.argv[2])
print(time.perf_counter() - start)
"""


def distil_model2vec(teacher: str, folder: Path, dim: int) -> float:
    """model2vec's own ``distill`` of the same teacher folder, timed inside its process."""
    if not MODEL2VEC_PYTHON.exists():
        raise SystemExit(f"{MODEL2VEC_PYTHON} is missing; make it as benchmarks/README.md says")
    source = resolve_model(teacher).name_or_path
    command = [str(MODEL2VEC_PYTHON), "-c", _MODEL2VEC_DISTILL, source, str(folder), str(dim)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(output.strip().splitlines()[-1])


def scores(model: str) -> dict[str, Any]:
    """STS-B test and SciFact test at full size, 64 dimensions and binary."""
    row: dict[str, Any] = {}
    encoder = Encoder(model, backend="static")
    row["dim"] = encoder.dim
    row["sts_test"] = round(evaluate_sts(encoder, STS_TEST)["spearman"], 2)
    truncated = Encoder(model, backend="static", truncate_dim=64)
    row["sts_test_64"] = round(evaluate_sts(truncated, STS_TEST)["spearman"], 2)
    for name, options in (
        ("scifact_ndcg10", {}),
        ("scifact_ndcg10_64", {"truncate_dim": 64}),
        ("scifact_ndcg10_binary", {"precision": "binary"}),
    ):
        result = evaluate_retrieval(encoder, SCIFACT, **options)  # type: ignore[arg-type]
        row[name] = round(result["ndcg@10"], 2)
    row["spec"] = encoder.spec.to_dict()
    print(model, {k: v for k, v in row.items() if k != "spec"}, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="speed,quality", help="speed, quality (both)")
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--teacher", default="all-minilm-l6-v2")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--trained", nargs="*", default=[], help="static folders to score too")
    parser.add_argument("--work", type=Path, help="keep the distilled folders here")
    parser.add_argument("--output", type=Path, default=RESULTS / "static_models.json")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    report: dict[str, Any] = {
        "benchmark": "static_models",
        "versions": versions("wordllama", "model2vec"),
        "machine": machine(),
        "teacher": args.teacher,
    }
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        ours, theirs = work / "llmvec-distilled", work / "model2vec-distilled"
        if "quality" in parts or not theirs.exists():
            report["distill_seconds"] = {
                "llmvec": round(distil_llmvec(args.teacher, ours, args.dim), 1),
                "model2vec": round(distil_model2vec(args.teacher, theirs, args.dim), 1),
            }
            print("distill seconds", report["distill_seconds"], flush=True)
        if "speed" in parts:
            report["speed"] = speed(sentences(args.texts), theirs, work, args.repeats)
        if "quality" in parts:
            models = {
                "wordllama": "wordllama",
                "llmvec-distill": str(ours),
                "model2vec-distill": str(theirs),
                **{Path(folder).name: folder for folder in args.trained},
            }
            report["quality"] = {name: scores(model) for name, model in models.items()}
    write_report(args.output, report)


if __name__ == "__main__":
    main()
