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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvec import __version__
from llmvec.choices import (
    BACKENDS,
    BENCH_PEERS,
    DEFAULT_EXCLUDED_TOKENS,
    DEFAULT_SIF_COEFFICIENT,
    QUANTIZATION_MODES,
    TOKEN_POOLING_METHODS,
)
from llmvec.compress import PRECISIONS
from llmvec.index.stores import (
    ALL_STORE_PRECISIONS,
    STORE_PRECISIONS,
    check_store_precision,
    finish_store,
    store_writer,
)
from llmvec.models import DEFAULT_INDEX_MODEL, DEFAULT_MODEL
from llmvec.serving.command import add_serve_arguments, serve_from_args
from llmvec.store_commands import (
    JSON_SCHEMA,
    describe,
    display_path,
    documents,
    hit_entry,
    matching_sources,
    parse_date,
    where_filter,
)
from llmvec.sync import Chunking, Writer
from llmvec.training.command import add_train_arguments, train_from_args
from llmvec.validation import check_positive

if TYPE_CHECKING:
    from llmvec.documents import Skipped
    from llmvec.encoder import Encoder
    from llmvec.index.base import BaseIndex
    from llmvec.index.records import Id
    from llmvec.index.stores import Store
    from llmvec.spec import EmbeddingSpec
    from llmvec.text_encoder import TextEncoder

logger = logging.getLogger("llmvec.cli")

#: The file types ``llmvec index`` reads (PDF and DOCX with the ``files`` extra).
_DOCUMENT_KINDS = ".txt, .md, .rst, .html, .pdf, .docx"
#: What ``llmvec search --mode`` ranks by.
SEARCH_MODES = ("dense", "sparse", "hybrid")
#: Encoder options that are part of the recipe: given to ``llmvec index`` on an existing store,
#: they are checked against its spec (else the store's own recipe is used).
_RECIPE_OPTIONS = (
    "model",
    "quantization",
    "pooling",
    "template",
    "layer",
    "truncate_dim",
    "query_instruction",
    "instruction_format",
)

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
  llmvec index examples/data                     # again: only what changed is encoded
  llmvec search "rule of 72" --mode hybrid --where ext=txt --json
  llmvec ls && llmvec info
  llmvec index examples/data --store faiss:/tmp/llmvec-demo
  llmvec index notes/ --model all-minilm-l6-v2 --precision binary --store qdrant:/tmp/notes
  llmvec encode "a sentence" "another one" --output vectors.npy
  llmvec bench sentences.txt --template ke --compare llemb
  llmvec distill all-minilm-l6-v2 minilm-static   # a static model, ~30,000 sentences/s
  llmvec index notes/ --backend static --model minilm-static --store faiss:/tmp/fast
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
def add_encoder_arguments(
    parser: argparse.ArgumentParser,
    default_model: str | None = DEFAULT_MODEL,
    model_option: bool = True,
) -> None:
    """The options that choose and configure the encoder (shared by the subcommands);
    ``default_model=None``: the command picks (``index``: the store's recipe, or
    :data:`~llmvec.models.DEFAULT_INDEX_MODEL` for a new store); ``model_option=False``: the
    command takes the model as a positional argument."""
    group = parser.add_argument_group("encoder")
    shown = default_model or f"the store's recipe; a new store: {DEFAULT_INDEX_MODEL}"
    if model_option:
        group.add_argument(
            "--model",
            default=default_model,
            help=f"packaged model name, hub id, local folder or .gguf file (default: {shown})",
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
        "--quantization",
        choices=QUANTIZATION_MODES,
        help="int8 (dynamic int8 linear layers on the CPU), 8bit / 4bit (bitsandbytes)",
    )
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


def encoder_kwargs(args: argparse.Namespace, default_model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The Encoder keyword arguments that :func:`add_encoder_arguments` describes
    (``default_model`` where ``--model`` is not given)."""
    # Only when asked for: other backends take no `compile` argument.
    compiled = {"compile": True} if args.compile else {}
    return {
        "model": args.model or default_model,
        "backend": args.backend,
        "device": args.device,
        "dtype": args.dtype,
        "quantization": args.quantization,
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


def encoder_from_args(args: argparse.Namespace, default_model: str = DEFAULT_MODEL) -> Encoder:
    """Build the encoder that :func:`add_encoder_arguments` describes."""
    from llmvec.encoder import Encoder

    return Encoder(**encoder_kwargs(args, default_model))


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
    parser.add_argument("source", type=Path, help=f"folder (or file) of {_DOCUMENT_KINDS} files")
    _store_arguments(parser)
    parser.add_argument(
        "--precision",
        choices=ALL_STORE_PRECISIONS,
        help="stored precision of a new store (default: float32); int8 and binary rescore with "
        "float vectors",
    )
    parser.add_argument(
        "--chunk-tokens",
        type=int,
        default=Chunking.max_tokens,
        help=f"tokens of the encoder per chunk ({Chunking.max_tokens}), capped at what it reads",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=Chunking.overlap,
        help=f"tokens shared by consecutive chunks ({Chunking.overlap})",
    )
    parser.add_argument(
        "--no-prune",
        dest="prune",
        action="store_false",
        help="keep the chunks of files that are gone from the folder",
    )
    parser.add_argument(
        "--encoding", default="utf-8", help="text encoding of the files (utf-8); others skipped"
    )
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="also read symlinks that lead out of the folder (default: skipped)",
    )
    _json_argument(parser)
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
    add_encoder_arguments(parser, default_model=None)
    _progress_arguments(parser)


def run_index(args: argparse.Namespace) -> int:
    """Bring a store in step with a folder: new and changed files are read, chunked and
    encoded, moved ones re-keyed, deleted ones removed (see :mod:`llmvec.sync`)."""
    from llmvec.documents import find_files
    from llmvec.sync import FolderSync

    chunking = Chunking(args.chunk_tokens, args.overlap)
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise ValueError(f"unknown --encoding {args.encoding!r}") from None
    store = store_from_args(args)
    # A new store needs documents: checked before anything is created (a store that exists is
    # walked once, by the sync, which prunes a folder emptied since).
    if not store.exists and not find_files(args.source, follow_symlinks=args.follow_symlinks)[0]:
        raise ValueError(f"no readable document ({_DOCUMENT_KINDS}) found in {str(args.source)!r}")
    if args.precision is not None:
        check_store_precision(store, args.precision)
    with store_writer(store):  # a second writer fails here, before any work
        if args.ray is not None:
            from llmvec.ray import connect

            connect(args.ray)
        index, encoder = _index_for(args, store)
        try:
            writer = _ray_writer(args, index) if args.ray is not None else None
            sync = FolderSync(
                index,
                chunking,
                encoder,
                writer=writer,
                prune=args.prune,
                follow_symlinks=args.follow_symlinks,
                encoding=args.encoding,
                batch_size=sys.maxsize if writer else args.batch_size * 4,
                checkpoint=_checkpoint(index, store),
            )
            with _progress_bar(args) as progress:
                report = sync.run(args.source, progress)
            finish_store(index, store)
        finally:
            index.close()
    if args.json:
        _print_json({"schema": JSON_SCHEMA, "store": str(store), **report.as_dict()})
        return 0
    model = _recipe(index.spec)
    print(
        f"{report.files} files: {report.added} new, {report.changed} changed, "
        f"{report.reused} moved or copied, {report.unchanged} unchanged, {report.removed} "
        f"removed; {report.chunks_encoded} chunks encoded, {report.chunks_reused} reused, "
        f"{report.chunks_removed} removed; {report.chunks_stored} in {store} ({model})"
    )
    _report_skipped(report.skipped)
    return 0


def _index_for(
    args: argparse.Namespace, store: Store
) -> tuple[BaseIndex, Callable[[], TextEncoder] | None]:
    """The store's index and the factory of its documents' encoder (called only when a file
    must be encoded). A store that exists keeps its recipe unless encoder options are given;
    a new one gets them, or the default recipe (:data:`~llmvec.models.DEFAULT_INDEX_MODEL`)."""
    from llmvec.index.specs import check_spec, encoder_for
    from llmvec.index.stores import create_store

    precision = args.precision or "float32"
    if args.server:
        encoder = remote_encoder(args)
        return create_store(store, encoder, precision), lambda: encoder
    index = None if _encoder_options_given(args) else _existing(store)
    if index is not None:
        if args.precision is not None and index.spec.precision != args.precision:
            raise ValueError(
                f"store {store} holds precision {index.spec.precision!r}, not "
                f"{args.precision!r}; use another store for another precision"
            )
        stored, what = index.spec, f"store {store}"
        options = {"device": args.device, "batch_size": args.batch_size}
        return index, lambda: encoder_for(stored, what=what, **options)
    if args.ray is not None:
        # The vectors come from Ray's actors: the store needs only their spec.
        from llmvec.ray import EncoderConfig

        kwargs = encoder_kwargs(args, default_model=DEFAULT_INDEX_MODEL)
        config = EncoderConfig(server=args.server) if args.server else EncoderConfig.of(kwargs)
        spec = config.probe().spec
        assert spec is not None
        index = create_store(store, None, precision, spec=spec)
        check_spec(index.spec, spec, what=f"store {store}")
        return index, None
    encoder = encoder_from_args(args, default_model=DEFAULT_INDEX_MODEL)
    return create_store(store, encoder, precision), lambda: encoder


def _checkpoint(index: BaseIndex, store: Store) -> Callable[[], None] | None:
    """A FAISS store's save, for the checkpoints of a long run (Qdrant writes as it goes)."""
    path = store.path
    if store.family != "faiss" or path is None:
        return None
    return lambda: index.save(path)


def _existing(store: Store) -> BaseIndex | None:
    """The store's index if it exists (a server is asked), else ``None``."""
    from llmvec.index.stores import open_store

    if store.url is None:
        return open_store(store) if store.exists else None
    try:
        return open_store(store)
    except FileNotFoundError:  # no such collection yet
        return None


def _encoder_options_given(args: argparse.Namespace) -> bool:
    """Whether the command line says how to encode (else an existing store's recipe holds)."""
    return any(getattr(args, name) is not None for name in _RECIPE_OPTIONS) or args.backend != (
        "transformers"
    )


def _ray_writer(args: argparse.Namespace, index: BaseIndex) -> Writer:
    """Chunks encoded by Ray Data actors (Ray reports the progress); their vectors stream back
    into ``index``, with each chunk's metadata, as they come."""
    import numpy as np
    import ray.data

    from llmvec.ray import EncoderConfig, embed

    if args.progress is not None:
        ray.data.DataContext.get_current().enable_progress_bars = args.progress

    def write(texts: list[str], ids: Sequence[Id], metadata: list[dict[str, Any]]) -> None:
        rows = [{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)]
        by_id = dict(zip(ids, zip(texts, metadata, strict=True), strict=True))
        vectors = embed(
            ray.data.from_items(rows),
            EncoderConfig(server=args.server) if args.server else EncoderConfig.of(index.spec),
            concurrency=args.actors,
            num_gpus=args.gpus_per_actor,
            batch_size=args.batch_size * 4,
        )
        for batch in vectors.iter_batches(batch_size=args.batch_size * 4, batch_format="numpy"):
            batch_ids = batch["id"].tolist()
            index.add_embeddings(
                np.stack(list(batch["vector"])).astype(np.float32),
                ids=batch_ids,
                texts=[by_id[i][0] for i in batch_ids],
                metadata=[by_id[i][1] for i in batch_ids],
            )

    return write


@contextmanager
def _progress_bar(args: argparse.Namespace) -> Iterator[Callable[[int, int, int], None]]:
    """One bar over the chunks stored, with the files done and the rate."""
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(desc="indexing", unit="chunk", disable=not show or args.json) as bar:

        def update(chunks: int, done: int, files: int) -> None:
            bar.update(chunks - bar.n)
            bar.set_postfix_str(f"{done}/{files} files", refresh=False)

        yield update


def _recipe(spec: EmbeddingSpec) -> str:
    """The model and recipe of stored vectors, in a few words."""
    parts = [f"model {spec.model}", f"{spec.pooling} pooling"]
    if spec.template:
        parts.append(f"template {spec.template}")
    if spec.layer is not None:
        parts.append(f"layer {spec.layer}")
    parts.append(spec.precision)
    return ", ".join(parts)


def _report_skipped(skipped: Sequence[Skipped]) -> None:
    """List the files that were not read, and why, on stderr."""
    if not skipped:
        return
    print(f"skipped {len(skipped)} files:", file=sys.stderr)
    for item in skipped:
        print(f"  {display_path(item.path)}: {item.reason}", file=sys.stderr)


def _json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON (a stable schema) instead of text"
    )


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


# ---------------------------------------------------------------------- search
def _search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="the search text")
    _store_arguments(parser)
    parser.add_argument("-k", type=int, default=5, metavar="N", help="number of hits (default: 5)")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep chunks whose metadata KEY is VALUE (repeatable: one key's values are any-of); "
        "source=PATH|FOLDER|GLOB, ext=pdf, chunks=3...",
    )
    parser.add_argument("--after", metavar="DATE", help="files modified at or after DATE (ISO)")
    parser.add_argument("--before", metavar="DATE", help="files modified before DATE (ISO)")
    parser.add_argument(
        "--mode",
        choices=SEARCH_MODES,
        default="dense",
        help="dense vectors, sparse BM25, or hybrid (both fused by reciprocal rank; default dense)",
    )
    parser.add_argument(
        "--weights",
        type=_weights,
        default=(1.0, 1.0),
        metavar="DENSE,SPARSE",
        help="hybrid fusion weights (default: 1,1)",
    )
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    _json_argument(parser)
    _server_arguments(parser)


def _weights(text: str) -> tuple[float, float]:
    dense, comma, sparse = text.partition(",")
    try:
        weights = (float(dense), float(sparse))
    except ValueError:
        weights = (-1.0, -1.0)
    if not comma or min(weights) < 0 or max(weights) == 0:
        raise argparse.ArgumentTypeError(
            f"expected two non-negative weights DENSE,SPARSE (not both 0), got {text!r}"
        )
    return weights


def run_search(args: argparse.Namespace) -> int:
    """Search a store with the encoder its spec describes; print one hit per line."""
    from llmvec.index.specs import check_spec, encoder_for
    from llmvec.index.stores import open_store

    check_positive("k", args.k)
    if args.after is not None:
        parse_date(args.after, "--after")
    if args.before is not None:
        parse_date(args.before, "--before")
    store = store_from_args(args)
    index = open_store(store)
    try:
        filter = where_filter(index, args.where, args.after, args.before)
        # A path or glob that names no stored file matches nothing.
        nothing = filter is not None and filter.get("source") == []
        encoder: TextEncoder | None = None
        if args.mode != "sparse" and not nothing:
            if args.server:
                encoder = remote_encoder(args)
                check_spec(index.spec, encoder.spec, what=f"store {store}")
            else:
                encoder = encoder_for(index.spec, what=f"store {store}", device=args.device)
            index.use_encoder(encoder)
        hits = (
            []
            if nothing
            else index.search(
                args.query, k=args.k, filter=filter, mode=args.mode, weights=args.weights
            )
        )
    finally:
        index.close()
    if args.json:
        entries = [hit_entry(rank, hit) for rank, hit in enumerate(hits, start=1)]
        _print_json(
            {"schema": JSON_SCHEMA, "query": args.query, "mode": args.mode, "hits": entries}
        )
        return 0
    for rank, hit in enumerate(hits, start=1):
        source = hit.metadata.get("source", hit.id)
        if isinstance(source, str):
            source = display_path(source)
        snippet = " ".join((hit.text or "").split())
        snippet = snippet if len(snippet) <= 70 else snippet[:69] + "…"
        print(f"{rank}. {hit.score:.4f}  {source}  {snippet}")
    return 0


# ---------------------------------------------------------------------- ls, rm, info
def _ls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", help="only these paths, folders or globs")
    _store_arguments(parser)
    _json_argument(parser)


def run_ls(args: argparse.Namespace) -> int:
    """List the stored documents with their chunk counts."""
    from llmvec.index.stores import open_store

    index = open_store(store_from_args(args))
    try:
        entries = documents(index)
        if args.paths:
            wanted = matching_sources(index, args.paths)
            entries = [e for e in entries if e["path"] in wanted]
    finally:
        index.close()
    if args.json:
        _print_json({"schema": JSON_SCHEMA, "documents": entries})
        return 0
    for entry in entries:
        state = "" if entry["complete"] else "  (incomplete: the next index run finishes it)"
        path = display_path(entry["path"])
        print(f"{entry['chunks']:6d}  {entry['modified'] or '-':25}  {path}{state}")
    print(f"{len(entries)} documents, {sum(e['chunks'] for e in entries)} chunks")
    return 0


def _rm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="paths, folders or globs of stored documents")
    _store_arguments(parser)
    _json_argument(parser)


def run_rm(args: argparse.Namespace) -> int:
    """Remove stored documents (all their chunks) by path, folder or glob."""
    from llmvec.index.stores import open_store

    store = store_from_args(args)
    with store_writer(store):
        index = open_store(store)
        try:
            matched = matching_sources(index, args.paths)
            index.delete([i for ids in matched.values() for i in ids])
            chunks = sum(len(ids) for ids in matched.values())
            if matched:
                finish_store(index, store)
        finally:
            index.close()
    if args.json:
        removed = sorted(matched)
        _print_json({"schema": JSON_SCHEMA, "removed": removed, "chunks": chunks})
    elif matched:
        print(f"removed {len(matched)} documents ({chunks} chunks) from {store}")
    if not matched:
        print(f"llmvec: no stored document matches {' '.join(args.paths)}", file=sys.stderr)
        return 1
    return 0


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    _store_arguments(parser)
    _json_argument(parser)


def run_info(args: argparse.Namespace) -> int:
    """Describe a store: spec, counts, dimensions, bytes per vector, compression."""
    from llmvec.index.stores import open_store

    store = store_from_args(args)
    index = open_store(store)
    try:
        info = describe(index, store)
    finally:
        index.close()
    if args.json:
        _print_json(info)
        return 0
    print(f"store      {info['store']}")
    print(f"recipe     {_recipe(index.spec)}")
    print(f"contents   {info['documents']} documents, {info['chunks']} chunks")
    rescore = info["rescore_bytes_per_vector"]
    extra = f" (+{rescore} B kept to rescore)" if rescore else ""
    print(f"vectors    {info['dim']} dimensions, {info['bytes_per_vector']} B each{extra}")
    print(f"sparse     {'BM25 beside the dense vectors' if info['sparse'] else 'none'}")
    print(f"chunking   {', '.join(info['chunking']) or '-'}")
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
    parser.add_argument("file", type=Path, help="text file, one text per line")
    parser.add_argument("--texts", type=int, metavar="N", help="use the first N texts (all)")
    parser.add_argument(
        "--compare",
        choices=sorted(BENCH_PEERS),
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
    for option in ("texts", "threads"):
        if getattr(args, option) is not None:
            check_positive(f"--{option}", getattr(args, option))
    import torch

    from llmvec.bench import read_texts
    from llmvec.bench import run_bench as measure

    texts = read_texts(args.file, args.texts)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
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
    # A row's own instruction stays with its query in the triplets.
    instructions = {q: i for q, i in zip(rows["query"], rows["instruction"], strict=True) if i}
    index = open_store(store)
    try:
        triplets, report = mine_hard_negatives(index, pairs, options, instructions=instructions)
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


def _distill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="the teacher: packaged name, folder, .gguf file or a trained folder"
    )
    parser.add_argument("output", type=Path, help="folder to write the static model into")
    parser.add_argument(
        "--dim", type=int, default=256, help="principal components kept (256; 0 keeps all)"
    )
    parser.add_argument(
        "--sif-coefficient",
        type=float,
        default=DEFAULT_SIF_COEFFICIENT,
        help=f"Zipf / SIF token weights a / (a + p) ({DEFAULT_SIF_COEFFICIENT}; 0: none)",
    )
    parser.add_argument(
        "--vocabulary",
        type=Path,
        help="file of the tokenizer's token strings to distil, one a line (default: all)",
    )
    parser.add_argument(
        "--exclude-tokens",
        default=DEFAULT_EXCLUDED_TOKENS,
        help=f"regular expression of tokens left out ({DEFAULT_EXCLUDED_TOKENS}; '' keeps all)",
    )
    parser.add_argument(
        "--distill-batch-size", type=int, default=256, help="tokens per forward pass (256)"
    )
    add_encoder_arguments(parser, model_option=False)
    _progress_arguments(parser)


def run_distill(args: argparse.Namespace) -> int:
    """Distil a static model from the encoder (model2vec's method) and say where it is."""
    from llmvec.static import distill

    vocabulary = None
    if args.vocabulary is not None:
        lines = args.vocabulary.read_text(encoding="utf-8").splitlines()
        vocabulary = [line for line in lines if line]
    options = encoder_kwargs(args)
    model = options.pop("model")
    folder = distill(
        model,
        args.output,
        dim=args.dim or None,
        vocabulary=vocabulary,
        exclude=args.exclude_tokens or None,
        sif_coefficient=args.sif_coefficient or None,
        tokens_per_batch=args.distill_batch_size,
        show_progress=args.progress,
        **options,
    )
    print(f"distilled a static model of {model} into {folder}")
    print(f"use it with: llmvec encode --backend static --model {folder} ...")
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
        "index",
        "index a folder into a vector store, then keep it in step (only changes are encoded)",
        _index_arguments,
        run_index,
    ),
    Command("search", "search a store built by `llmvec index`", _search_arguments, run_search),
    Command("ls", "list a store's documents with their chunk counts", _ls_arguments, run_ls),
    Command("rm", "remove documents from a store by path, folder or glob", _rm_arguments, run_rm),
    Command(
        "info",
        "a store's recipe, counts, dimensions, bytes per vector and compression",
        _info_arguments,
        run_info,
    ),
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
        "distill",
        "a static model from any encoder and recipe (model2vec's method): every token "
        "embedded alone, PCA, SIF weights",
        _distill_arguments,
        run_distill,
    ),
    Command(
        "train",
        "train an embedder: LLM2Vec's mntp, simcse, supervised contrastive, or a static model",
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


def _hide_transformers_bars() -> None:
    """No weight-loading bars from transformers (they would bury the command's output), without
    importing it: its own switch once it is loaded, else the environment switch it reads then."""
    transformers_logging = sys.modules.get("transformers.utils.logging")
    if transformers_logging is not None:
        transformers_logging.disable_progress_bar()
    else:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmvec`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        _hide_transformers_bars()
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
