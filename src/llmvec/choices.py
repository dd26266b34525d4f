"""The closed vocabularies and defaults that the library and the ``llmvec`` command share.

This module imports nothing: the command line builds its parser and refuses bad arguments from
these names before torch and transformers load (seconds on a small machine). The modules that
own each concept re-export its names.
"""

from __future__ import annotations

#: Engines behind an Encoder (see :func:`llmvec.backends.load_backend`).
BACKENDS = ("transformers", "static", "vllm")
#: The transformers backend's quantizations: bitsandbytes' 4-bit / 8-bit modes, and torch's
#: dynamic int8 linear layers on the CPU.
QUANTIZATION_MODES = ("4bit", "8bit", "int8")

#: Poolings of the token states alone, which need no learned weights (see
#: :mod:`llmvec.encoding.pooling`).
TOKEN_POOLING_METHODS = ("mean", "weighted_mean", "last_token", "eos_token", "first_token")
#: ``latent_attention`` is a learned head (NV-Embed) that the encoder owns; see
#: :mod:`llmvec.encoding.latent_attention`.
POOLING_METHODS = (*TOKEN_POOLING_METHODS, "latent_attention")

#: Static distillation's SIF coefficient (model2vec's default; see
#: :mod:`llmvec.static.distillation`).
DEFAULT_SIF_COEFFICIENT = 1e-4
#: Tokens that distillation leaves out by default (model2vec's default too): BERT's
#: never-trained ``[unusedN]`` placeholders, outliers that would skew the PCA.
DEFAULT_EXCLUDED_TOKENS = r"\[unused\d+\]"

#: The libraries ``llmvec bench --compare`` runs on the same texts (see :mod:`llmvec.bench`).
BENCH_PEERS = ("llemb", "sentence-transformers")
