"""The ``llmvec`` command: encode texts, index a folder, search an index.

Each subcommand is a :class:`Command` in :data:`COMMANDS`: a name, a one-line help, a function
that adds its arguments and a function that runs it. Adding a subcommand is one entry there.
"""

from __future__ import annotations

import argparse
import codecs
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvec import __version__
from llmvec.backends import BACKENDS
from llmvec.compress import PRECISIONS
from llmvec.encoding.pooling import TOKEN_POOLING_METHODS
from llmvec.index.stores import ALL_STORE_PRECISIONS, STORE_PRECISIONS
from llmvec.models import DEFAULT_MODEL
from llmvec.serving.command import add_serve_arguments, serve_from_args
from llmvec.training.command import add_train_arguments, train_from_args
from llmvec.validation import check_positive

if TYPE_CHECKING:
    from llmvec.documents import Loaded
    from llmvec.encoder import Encoder
    from llmvec.index.base import BaseIndex
    from llmvec.index.records import Id
    from llmvec.index.stores import Store
    from llmvec.text_encoder import TextEncoder

logger = logging.getLogger("llmvec.cli")

#: Qdrant Edge (the real engine, in-process) in a folder of the working directory: no server,
#: nothing to set up, and no pickles (qdrant-client's embedded mode stores points as pickles).
DEFAULT_STORE = "qdrant-edge:llmvec-store"
_STORE_HELP = (
    "where the index lives: faiss:PATH, qdrant-edge:PATH (Qdrant Edge, in-process), "
    "qdrant:PATH (qdrant-client's embedded mode) or qdrant+http://HOST:PORT/COLLECTION (a "
    f"Qdrant server); default: {DEFAULT_STORE}"
)
_EPILOG = """\
examples:
  llmvec index examples/data
  llmvec search "how do bees communicate?" -k 3
  llmvec index examples/data --store faiss:/tmp/llmvec-demo
  llmvec index notes/ --model all-minilm-l6-v2 --precision binary --store qdrant:/tmp/notes
  llmvec encode "a sentence" "another one" --output vectors.npy
  llmvec bench sentences.txt --template ke --compare llemb
  llmvec serve all-minilm-l6-v2 --port 8080
  llmvec search "how do bees communicate?" --server http://127.0.0.1:8080
"""


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add_arguments`` fills its parser, ``run`` returns the exit code."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------- shared options
def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose and configure the encoder (shared by the subcommands)."""
    group = parser.add_argument_group("encoder")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"packaged model name, hub id, local folder or .gguf file (default: {DEFAULT_MODEL})",
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default="transformers",
        help="transformers (default), static (a codebook's averages) or vllm (vLLM's pooling "
        "runner, pip install vllm)",
    )
    group.add_argument(
        "--pooling",
        choices=TOKEN_POOLING_METHODS,
        help="pooling method (default: last_token with a template, else mean)",
    )
    group.add_argument(
        "--template", help="prompteol, pcoteol, ke, or a custom string with one {text} slot"
    )
    group.add_argument("--layer", type=int, help="hidden layer to pool (-1 = last)")
    group.add_argument("--max-length", type=int, default=512, help="tokens per input (512)")
    group.add_argument("--truncate-dim", type=int, help="keep the first N dimensions (Matryoshka)")
    group.add_argument("--query-instruction", help="task instruction put before queries")
    group.add_argument(
        "--instruction-format",
        help="how the instruction wraps a query: e5 (default), gte-qwen2, qwen3, nv-embed, "
        "llm2vec, or a custom string with {task} and {text} slots",
    )
    group.add_argument("--batch-size", type=int, default=32, help="texts per batch (32)")
    group.add_argument(
        "--max-tokens-per-batch",
        type=int,
        help="also cut batches at this many padded tokens (long documents, large GPU batches)",
    )
    group.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    group.add_argument(
        "--dtype",
        default="auto",
        help="float32, bfloat16, float16 (default auto: float32 on CPU, bfloat16 on GPU)",
    )
    group.add_argument(
        "--backend-option",
        action="append",
        default=[],
        type=_backend_option,
        metavar="KEY=VALUE",
        help="an argument of the backend, VALUE read as JSON where it parses (repeatable; "
        "vLLM: gpu_memory_utilization=0.3, max_model_len=512...)",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model's blocks: slower first batches, then faster ones "
        "(transformers backend; worth it for large inputs)",
    )


def _backend_option(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with a Python name as KEY, got {text!r}"
        )
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def encoder_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The Encoder keyword arguments that :func:`add_encoder_arguments` describes."""
    # Only when asked for: other backends take no `compile` argument.
    compiled = {"compile": True} if args.compile else {}
    return {
        "model": args.model,
        "backend": args.backend,
        "device": args.device,
        "dtype": args.dtype,
        "pooling": args.pooling,
        "template": args.template,
        "layer": args.layer,
        "max_length": args.max_length,
        "truncate_dim": args.truncate_dim,
        "query_instruction": args.query_instruction,
        "instruction_format": args.instruction_format,
        "batch_size": args.batch_size,
        "max_tokens_per_batch": args.max_tokens_per_batch,
        **compiled,
        **dict(args.backend_option),
    }


def encoder_from_args(args: argparse.Namespace) -> Encoder:
    """Build the encoder that :func:`add_encoder_arguments` describes."""
    from llmvec.encoder import Encoder

    return Encoder(**encoder_kwargs(args))


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server (llmvec serve)")
    group.add_argument(
        "--server",
        metavar="URL",
        help="take the vectors from an `llmvec serve` server (http://HOST:PORT) instead of "
        "loading a model; its spec is checked against the store's",
    )
    group.add_argument("--server-api-key", help="the server's API key (default: $LLMVEC_API_KEY)")


def remote_encoder(args: argparse.Namespace) -> TextEncoder:
    """The :class:`~llmvec.serving.RemoteEncoder` of ``--server``."""
    from llmvec.serving import RemoteEncoder

    return RemoteEncoder(args.server, api_key=args.server_api_key)


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("store")
    group.add_argument("--store", default=DEFAULT_STORE, help=_STORE_HELP)
    group.add_argument(
        "--api-key",
        help="API key of a Qdrant server store (default: the QDRANT_API_KEY environment "
        "variable); never put it in the store URL",
    )
    group.add_argument(
        "--trust-store",
        action="store_true",
        help="open a qdrant:PATH folder that llmvec did not sign: its points are pickles, "
        "which can run code, so only for folders you trust",
    )


def store_from_args(args: argparse.Namespace) -> Store:
    """The store that :func:`_store_arguments` describes."""
    from llmvec.index.stores import parse_store

    return parse_store(args.store, api_key=args.api_key, trust_store=args.trust_store)


def _progress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )


# ---------------------------------------------------------------------- encode
def _encode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="texts to encode (default: lines of stdin)")
    parser.add_argument("--query", action="store_true", help="encode as queries (instruction)")
    parser.add_argument(
        "--precision",
        default="float32",
        choices=PRECISIONS,
        help="output precision (default: float32)",
    )
    parser.add_argument(
        "--output", "-o", type=Path, help="write a .npy file instead of JSON lines on stdout"
    )
    add_encoder_arguments(parser)
    _progress_arguments(parser)


def run_encode(args: argparse.Namespace) -> int:
    """Encode texts and write the vectors as JSON lines or a .npy file."""
    import numpy as np

    from llmvec.compress import calibrate, quantize

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ValueError("no texts to encode: pass them as arguments or on stdin")
    encoder = encoder_from_args(args)
    encode = encoder.encode_queries if args.query else encoder.encode_documents
    vectors = encode(texts, show_progress=args.progress)
    calibration = calibrate(vectors) if args.precision in ("int8", "uint8") else None
    output = quantize(vectors, args.precision, calibration)
    if args.output is not None:
        np.save(args.output, output, allow_pickle=False)
        print(f"wrote {output.shape[0]} x {output.shape[1]} {output.dtype} to {args.output}")
    else:
        for row in output:
            print(json.dumps(row.tolist()))
    return 0


# ---------------------------------------------------------------------- index
def _index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="folder (or file) of .txt / .md documents")
    _store_arguments(parser)
    parser.add_argument(
        "--precision",
        default="float32",
        choices=ALL_STORE_PRECISIONS,
        help="stored precision (default: float32); int8 and binary rescore with float vectors",
    )
    parser.add_argument(
        "--chunk-chars",
        type=int,
        default=1000,
        help="cut documents into paragraph chunks of at most N characters (1000)",
    )
    parser.add_argument(
        "--whole-files", action="store_true", help="one document per file, no chunking"
    )
    parser.add_argument(
        "--encoding", default="utf-8", help="text encoding of the files (utf-8); others skipped"
    )
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="also read symlinks that lead out of the folder (default: skipped)",
    )
    ray = parser.add_argument_group("ray (pip install 'llmvec[ray]')")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="encode on a Ray cluster: its address (HOST:PORT, ray://HOST:PORT, auto), or none "
        "for a new local one; a Qdrant server store is written by the workers",
    )
    ray.add_argument("--actors", type=int, default=1, help="encoder actors on Ray (1)")
    ray.add_argument("--gpus-per-actor", type=float, help="GPUs each Ray actor reserves")
    _server_arguments(parser)
    add_encoder_arguments(parser)
    _progress_arguments(parser)


def run_index(args: argparse.Namespace) -> int:
    """Read, chunk, encode and store a folder of documents; the chunks of files that are gone
    or shorter now leave the store."""
    from llmvec.documents import load_chunks
    from llmvec.index.stores import check_store_precision, store_writer

    store = store_from_args(args)
    check_store_precision(store, args.precision)
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise ValueError(f"unknown --encoding {args.encoding!r}") from None
    with store_writer(store):  # a second writer fails here, before any work
        loaded = load_chunks(
            args.source,
            None if args.whole_files else args.chunk_chars,
            follow_symlinks=args.follow_symlinks,
            encoding=args.encoding,
        )
        if not loaded.files:
            _report_skipped(loaded)
            raise ValueError(f"no readable .txt or .md file found in {str(args.source)!r}")
        if args.ray is not None:
            written, removed, total = _index_on_ray(args, store, loaded)
        else:
            written, removed, total = _index_here(args, store, loaded)
    files = len(loaded.files)
    gone = f", removed {removed} stale chunks" if removed else ""
    print(f"indexed {written} chunks from {files} files into {store}{gone} ({total} in store)")
    _report_skipped(loaded)
    return 0


def _index_here(args: argparse.Namespace, store: Store, loaded: Loaded) -> tuple[int, int, int]:
    """Encode the chunks in this process; returns (written, removed, stored) counts."""
    from tqdm.auto import tqdm

    from llmvec.index.stores import create_store, finish_store

    chunks = loaded.chunks
    encoder = remote_encoder(args) if args.server else encoder_from_args(args)
    index = create_store(store, encoder, args.precision)
    try:
        show = sys.stderr.isatty() if args.progress is None else args.progress
        step = args.batch_size * 4
        with tqdm(total=len(chunks), desc="indexing", unit="chunk", disable=not show) as bar:
            for start in range(0, len(chunks), step):
                batch = chunks[start : start + step]
                index.add(
                    [c.text for c in batch],
                    ids=[c.id for c in batch],
                    metadata=[c.metadata for c in batch],
                )
                bar.update(len(batch))
        removed = _remove_stale(index, loaded, args.source)
        total = len(index)
        finish_store(index, store)
    finally:
        index.close()
    return len(chunks), removed, total


def _index_on_ray(args: argparse.Namespace, store: Store, loaded: Loaded) -> tuple[int, int, int]:
    """``llmvec index --ray``: the same chunks encoded by Ray Data actors (Ray reports the
    progress) and written by :func:`llmvec.ray.index_dataset`; returns the counts."""
    import ray.data

    from llmvec.index.stores import finish_store, open_store
    from llmvec.ray import Columns, EncoderConfig, connect, index_dataset

    connect(args.ray)
    if args.progress is not None:
        ray.data.DataContext.get_current().enable_progress_bars = args.progress
    chunks = loaded.chunks
    written = 0
    if chunks:
        dataset = ray.data.from_items([{"id": c.id, "text": c.text, **c.metadata} for c in chunks])
        written = index_dataset(
            dataset,
            store,
            EncoderConfig(server=args.server) if args.server else encoder_kwargs(args),
            precision=args.precision,
            columns=Columns(metadata=tuple(chunks[0].metadata)),
            concurrency=args.actors,
            num_gpus=args.gpus_per_actor,
            batch_size=args.batch_size * 4,
        )
    index = open_store(store)
    try:
        removed = _remove_stale(index, loaded, args.source)
        total = len(index)
        finish_store(index, store)
    finally:
        index.close()
    return written, removed, total


def _remove_stale(index: BaseIndex, loaded: Loaded, source: Path) -> int:
    """Delete the stored chunks of files read now that no longer have them (the file shrank),
    and of files under the indexed folder that are gone; returns how many."""
    current = {chunk.id for chunk in loaded.chunks}
    read = set(loaded.files)
    # A skipped file keeps its chunks, and so does every file under a skipped folder.
    skipped = tuple(item.path for item in loaded.skipped)
    folder = os.path.abspath(source) + os.sep if source.is_dir() else None
    stale: list[Id] = []
    for doc_id, metadata in index.metadata_items():
        origin = metadata.get("source")
        if doc_id in current or not isinstance(origin, str) or _under(origin, skipped):
            continue
        if origin in read or (folder is not None and origin.startswith(folder)):
            stale.append(doc_id)
    index.delete(stale)
    return len(stale)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies inside one."""
    return any(path == root or path.startswith(root + os.sep) for root in roots)


def _report_skipped(loaded: Loaded) -> None:
    """List the files that were not read, and why, on stderr."""
    if not loaded.skipped:
        return
    print(f"skipped {len(loaded.skipped)} files:", file=sys.stderr)
    for item in loaded.skipped:
        print(f"  {_display_path(item.path)}: {item.reason}", file=sys.stderr)


def _display_path(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


# ---------------------------------------------------------------------- search
def _search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="the search text")
    _store_arguments(parser)
    parser.add_argument("-k", type=int, default=5, metavar="N", help="number of hits (default: 5)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    _server_arguments(parser)


def run_search(args: argparse.Namespace) -> int:
    """Search a store with the encoder its spec describes; print one hit per line."""
    from llmvec.index.specs import check_spec, encoder_for
    from llmvec.index.stores import open_store

    check_positive("k", args.k)
    store = store_from_args(args)
    index = open_store(store)
    try:
        encoder: TextEncoder
        if args.server:
            encoder = remote_encoder(args)
            check_spec(index.spec, encoder.spec, what=f"store {store}")
        else:
            encoder = encoder_for(index.spec, what=f"store {store}", device=args.device)
        hits = index.search(encoder.encode_queries([args.query])[0], k=args.k)
    finally:
        index.close()
    for rank, hit in enumerate(hits, start=1):
        source = hit.metadata.get("source", hit.id)
        if isinstance(source, str):
            source = _display_path(source)
        snippet = " ".join((hit.text or "").split())
        snippet = snippet if len(snippet) <= 70 else snippet[:69] + "…"
        print(f"{rank}. {hit.score:.4f}  {source}  {snippet}")
    return 0


# ---------------------------------------------------------------------- eval
def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    tasks = parser.add_subparsers(title="tasks", dest="task", metavar="TASK", required=True)
    sts = tasks.add_parser(
        "sts",
        help="Spearman x100 on an STS-B-layout file",
        description="Spearman x100 of cosine similarities against gold scores on an STS-B file.",
    )
    sts.add_argument(
        "--data",
        type=Path,
        required=True,
        help="tab-separated file: genre, file, year, id, score, sentence1, sentence2",
    )
    retrieval = tasks.add_parser(
        "retrieval",
        help="nDCG@k and recall@k on a BEIR-layout folder",
        description="nDCG@k and recall@k on a BEIR-layout folder, searched in a FaissIndex.",
    )
    retrieval.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with corpus.jsonl[.gz], queries.jsonl and qrels/<split>.tsv",
    )
    retrieval.add_argument("--split", default="test", help="qrels file to score (test)")
    retrieval.add_argument("-k", type=int, default=10, help="cut-off of nDCG and recall (10)")
    retrieval.add_argument(
        "--precision",
        default="float32",
        choices=STORE_PRECISIONS["faiss"],
        help="index precision; int8 and binary rescore with kept float vectors (float32)",
    )
    for task in (sts, retrieval):
        task.add_argument("--json", type=Path, help="also write the result to this JSON file")
        add_encoder_arguments(task)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate the encoder on an STS or BEIR-layout data set; print a table, optionally JSON."""
    from llmvec.encoding.templates import template_name
    from llmvec.evaluation import evaluate_retrieval, evaluate_sts

    if not args.data.exists():
        raise FileNotFoundError(f"--data {str(args.data)!r} does not exist")
    encoder = encoder_from_args(args)
    if args.task == "sts":
        result = evaluate_sts(encoder, args.data)
        counts = f"{result['pairs']} pairs"
        metrics = ["spearman"]
    else:
        result = evaluate_retrieval(
            encoder, args.data, k=args.k, precision=args.precision, split=args.split
        )
        counts = f"{result['queries']} queries, {result['documents']} documents"
        metrics = [f"ndcg@{args.k}", f"recall@{args.k}"]
    spec = result["spec"]
    template = spec["template"]
    recipe = (
        f"pooling={spec['pooling']} template={template_name(template) or template} "
        f"layer={spec['layer']} dim={spec['dim']} precision={spec['precision']}"
    )
    backend = encoder.backend
    dtype = backend.dtype
    result["compute"] = {
        "backend": backend.name,
        "device": str(backend.device),
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
    }
    compute = ", ".join(value for value in result["compute"].values() if value)
    rows = [
        ("data", f"{args.data} ({counts})"),
        ("model", spec["model"]),
        ("recipe", recipe),
        ("compute", compute),
    ]
    if args.task == "retrieval" and spec["query_instruction"]:
        rows.append(("query instruction", spec["query_instruction"]))
    rows += [(name, f"{result[name]:.2f}") for name in metrics]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------------- bench
def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    from llmvec.bench import PEERS

    parser.add_argument("file", type=Path, help="text file, one text per line")
    parser.add_argument("--texts", type=int, metavar="N", help="use the first N texts (all)")
    parser.add_argument(
        "--compare",
        choices=sorted(PEERS),
        help="also run this library on the same texts and model, taking turns, and print the "
        "speed ratio and the cosine between the two libraries' vectors",
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over the texts (1)")
    parser.add_argument(
        "--chunks", type=int, default=4, help="parts the libraries take turns on (4)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    add_encoder_arguments(parser)


def run_bench(args: argparse.Namespace) -> int:
    """Time the encoder (and a peer) on a text file; print rates, memory and matmul fraction."""
    import torch

    from llmvec.bench import read_texts
    from llmvec.bench import run_bench as measure

    texts = read_texts(args.file, args.texts)
    if args.threads is not None:
        torch.set_num_threads(check_positive("--threads", args.threads))
    encoder = encoder_from_args(args)
    report = measure(
        encoder,
        texts,
        compare=args.compare,
        batch_size=args.batch_size,
        repeats=args.repeats,
        chunks=args.chunks,
    )
    print(
        f"{report['texts']} texts, {report['tokens']} tokens, {report['device']} "
        f"{report['dtype']}{', compiled' if report['compiled'] else ''}, "
        f"{report['threads']} threads, batch {report['batch_size']}"
    )
    print(f"encoder  {encoder!r}")
    for name, result in report["results"].items():
        memory = result["memory"]
        print(
            f"{name:<22} {result['sentences_per_s']:10.1f} sentences/s "
            f"{result['tokens_per_s']:10.0f} tokens/s   peak {memory['peak_mib']:.0f} MiB "
            f"(+{memory['added_mib']:.0f} MiB while encoding)"
        )
    ours = report["results"]["llmvec"]
    if "fraction_of_matmul_peak" in ours:
        print(
            f"matmul   {ours['gflop_per_s']:.1f} GFLOP/s = "
            f"{100 * ours['fraction_of_matmul_peak']:.1f}% of this machine's {report['dtype']} "
            f"matmul peak ({report['matmul_peak_gflop_per_s']:.1f} GFLOP/s)"
        )
    peer = report.get("peer")
    if peer is not None:
        print(
            f"ratio    llmvec is {peer['ratio']:.2f}x {peer['name']} {peer['version']}; "
            f"cosine between their vectors: min {peer['cosine_min']:.6f}, "
            f"mean {peer['cosine_mean']:.6f}"
        )
        if peer["work_ratio"] is not None:
            print(f"work     {peer['name']} does {peer['work_ratio']:.2f}x llmvec's FLOPs")
        for difference in peer["known_differences"]:
            print(f"         (vectors differ: {difference})")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------------- mine
def _mine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pairs", type=Path, help="JSONL or CSV file of training rows with query and positive"
    )
    parser.add_argument(
        "--output", "-o", type=Path, required=True, help="JSONL file of triplets to write"
    )
    _store_arguments(parser)
    mining = parser.add_argument_group("mining")
    mining.add_argument("--top-k", type=int, default=30, help="documents searched per query (30)")
    mining.add_argument(
        "--min-rank",
        type=int,
        default=1,
        help="best rank a negative may have, 1-based, counted before the positives are removed (1)",
    )
    mining.add_argument("--max-rank", type=int, help="worst rank a negative may have (top-k)")
    mining.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="a negative scores at most the positive's score minus this (0.0)",
    )
    mining.add_argument("--negatives", type=int, default=1, help="triplets per pair, at most (1)")


def run_mine(args: argparse.Namespace) -> int:
    """Mine hard negatives for (query, positive) pairs from a store; write triplets as JSONL."""
    from llmvec.index.stores import open_store
    from llmvec.training.data import load_triplets
    from llmvec.training.mining import MiningOptions, mine_hard_negatives, write_triplets

    options = MiningOptions(
        top_k=args.top_k,
        min_rank=args.min_rank,
        max_rank=args.max_rank,
        margin=args.margin,
        negatives=args.negatives,
    )
    if not args.output.parent.is_dir():
        raise FileNotFoundError(f"--output folder {str(args.output.parent)!r} does not exist")
    store = store_from_args(args)
    rows = load_triplets(args.pairs)
    # A triplet file repeats a pair once per negative: mine each pair once.
    pairs = list(dict.fromkeys(zip(rows["query"], rows["positive"], strict=True)))
    index = open_store(store)
    try:
        triplets, report = mine_hard_negatives(index, pairs, options)
    finally:
        index.close()
    write_triplets(triplets, args.output)
    print(f"wrote {report.rows_written} triplets for {report.queries} queries to {args.output}")
    if report.queries_without_negative:
        print(
            f"skipped {report.queries_without_negative} queries without a negative in ranks "
            f"{options.min_rank}..{options.last_rank} at margin {options.margin}",
            file=sys.stderr,
        )
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    add_serve_arguments(parser)
    add_encoder_arguments(parser)


def run_serve(args: argparse.Namespace) -> int:
    """Serve the encoder until SIGTERM or Ctrl-C drains the server."""
    if args.served:
        args.model = args.served
    serve_from_args(args, encoder_kwargs(args))
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Train one stage (see :mod:`llmvec.training.command`) and say where the model is."""
    folder = train_from_args(args)
    print(f"trained {args.stage} model in {folder}")
    return 0


COMMANDS: list[Command] = [
    Command(
        "encode", "encode texts into vectors (JSON lines or .npy)", _encode_arguments, run_encode
    ),
    Command(
        "index", "index a folder of .txt/.md files into a vector store", _index_arguments, run_index
    ),
    Command("search", "search a store built by `llmvec index`", _search_arguments, run_search),
    Command(
        "eval", "quality on STS (Spearman) or BEIR-layout retrieval data", _eval_arguments, run_eval
    ),
    Command(
        "bench",
        "speed, memory and matmul-peak fraction on a text file, optionally against a peer",
        _bench_arguments,
        run_bench,
    ),
    Command(
        "train",
        "train an embedder: LLM2Vec's mntp, simcse, or supervised contrastive",
        add_train_arguments,
        run_train,
    ),
    Command(
        "serve",
        "an OpenAI-compatible /v1/embeddings server with dynamic batching",
        _serve_arguments,
        run_serve,
    ),
    Command(
        "mine",
        "hard negatives for (query, positive) pairs from a store, as JSONL triplets",
        _mine_arguments,
        run_mine,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``llmvec`` parser with one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="llmvec",
        description="Decoder-only LLMs as embedding models: encode, index and search text.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llmvec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmvec`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # transformers' own weight-loading bars would bury the command's output.
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    try:
        return int(args.run(args))
    except (ValueError, TypeError, ImportError, OSError) as error:
        # OSError: missing files, a busy or untrusted store, an unreachable server.
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"llmvec: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmvec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
