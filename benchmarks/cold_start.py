"""Cold start: a fresh process imports the library, loads the model and encodes 1,000 texts
once (every batch shape new, no warm-up pass), llmvec against its peer on the same model,
recipe, texts, batch size and threads.

Cases and the issue's targets (the peer's cold seconds over llmvec's):

- ``minilm-mean``: all-MiniLM-L6-v2, mean pooling, vs sentence-transformers (1.0x);
- ``smollm2-ke``: SmolLM2-135M-Instruct, KE template, vs llemb 0.3.0 (1.5x);
- ``smollm2-mean``: SmolLM2-135M-Instruct, mean pooling, vs llemb 0.3.0 (1.5x).

Each library runs ``--repeats`` fresh processes, the two taking turns; the median is reported
with its phases (import, model load, the encode) and the process's peak RSS. Both load the same
files, already in the page cache (SmolLM2: llmvec's dense copy of the GGUF for both, written
before the first timed run). Writes benchmarks/results/cold_start.json, keeping the cases an
earlier run measured and this one did not (each case records its own repeats and machine: the
SmolLM2 cases take minutes per llemb run, so they may run with fewer repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _report import RESULTS, machine, sts_sentences, versions, write_report

#: case -> (Encoder arguments, peer, the cold speed ratio the issue asks for).
CASES: dict[str, tuple[dict[str, Any], str, float]] = {
    "minilm-mean": ({"model": "all-minilm-l6-v2", "pooling": "mean"}, "sentence-transformers", 1.0),
    "smollm2-ke": ({"model": "smollm2", "template": "ke"}, "llemb", 1.5),
    "smollm2-mean": ({"model": "smollm2", "pooling": "mean"}, "llemb", 1.5),
}

#: One cold run: argv = library, texts file, job file; prints its phases and peak RSS as JSON.
_COLD = """
import json, sys, time
start = time.perf_counter()
library, texts_file, job_file = sys.argv[1:4]
texts = json.load(open(texts_file))
job = json.load(open(job_file))
if library == "llmvec":
    from llmvec import Encoder
    imported = time.perf_counter()
    model = Encoder(**job["llmvec"])
    encode = lambda: model.encode(texts)
elif library == "llemb":
    import llemb
    import torch
    imported = time.perf_counter()
    model = llemb.Encoder(job["peer_model"], device="cpu", dtype=torch.float32)
    encode = lambda: model.encode(texts, **job["peer_arguments"])
else:
    from sentence_transformers import SentenceTransformer
    imported = time.perf_counter()
    model = SentenceTransformer(job["peer_model"], device="cpu")
    model.max_seq_length = job["max_length"]
    encode = lambda: model.encode(texts, show_progress_bar=False, **job["peer_arguments"])
loaded = time.perf_counter()
encode()
done = time.perf_counter()
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported,
                  "encode_s": done - loaded, "peak_rss_mb": int(status[0]) / 1024}))
"""


def cold_run(library: str, texts_file: Path, job_file: Path) -> dict[str, float]:
    """One fresh process: the parent's wall time from spawn to exit, and the child's phases."""
    command = [sys.executable, "-c", _COLD, library, str(texts_file), str(job_file)]
    start = time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - start
    phases: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return {"wall_s": round(wall, 3), **{k: round(v, 3) for k, v in phases.items()}}


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the runs."""
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


def job(arguments: dict[str, Any], peer: str, batch_size: int) -> dict[str, Any]:
    """What both children need: llmvec's Encoder arguments, the peer's model and call (set up
    here, in the parent, by :data:`llmvec.bench.PEERS`, which also writes any dense copy)."""
    from llmvec import Encoder
    from llmvec.bench import PEERS

    encoder = Encoder(**arguments, batch_size=batch_size, dtype="float32", device="cpu")
    setup = PEERS[peer](encoder, batch_size)
    return {
        "llmvec": {**arguments, "batch_size": batch_size, "dtype": "float32", "device": "cpu"},
        "peer_model": setup.model,
        "peer_arguments": setup.arguments,
        "max_length": encoder.max_length,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--output", type=Path, default=RESULTS / "cold_start.json")
    args = parser.parse_args()
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    results: dict[str, Any] = previous.get("cases", {})
    with tempfile.TemporaryDirectory(prefix="llmvec-cold-") as work:
        texts_file = Path(work) / "texts.json"
        texts_file.write_text(json.dumps(sts_sentences(args.sentences)), encoding="utf-8")
        for name in args.cases:
            arguments, peer, target = CASES[name]
            job_file = Path(work) / f"{name}.json"
            job_file.write_text(json.dumps(job(arguments, peer, args.batch_size)))
            started = machine()
            runs: dict[str, list[dict[str, float]]] = {"llmvec": [], peer: []}
            for _ in range(args.repeats):
                for library in runs:
                    runs[library].append(cold_run(library, texts_file, job_file))
            ours, theirs = median_run(runs["llmvec"]), median_run(runs[peer])
            ratio = round(theirs["wall_s"] / ours["wall_s"], 2)
            results[name] = {
                "peer": peer,
                "llmvec": ours,
                peer: theirs,
                "runs": runs,
                "sentences": args.sentences,
                "batch_size": args.batch_size,
                "repeats": args.repeats,
                "versions": versions(peer),
                "machine": {"start": started, "end": machine()},
                "cold_ratio": ratio,
                "target_ratio": target,
                "meets_target": ratio >= target,
            }
            print(
                f"{name:13s} llmvec {ours['wall_s']:6.2f} s (load {ours['load_s']:.2f}, encode "
                f"{ours['encode_s']:.2f})  {peer} {theirs['wall_s']:6.2f} s (load "
                f"{theirs['load_s']:.2f}, encode {theirs['encode_s']:.2f})  ratio {ratio}x "
                f"(target {target}x)",
                flush=True,
            )
    write_report(
        args.output,
        {
            "benchmark": "cold_start",
            "data": "STS-B test sentence1, first distinct values",
            "cases": results,
        },
    )


if __name__ == "__main__":
    main()
