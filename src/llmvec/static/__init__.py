"""Static embedding models (WordLlama, model2vec style): made from an LLM's codebook
(:func:`extract`), distilled from any encoder and recipe (:func:`distill`), and trained
(:mod:`llmvec.static.training`). The file format the static backend reads is
:mod:`llmvec.backends.static_files`."""

from llmvec.static.codebook import principal_components, zipf_sif_weights
from llmvec.static.distill import distill
from llmvec.static.extract import extract

__all__ = ["distill", "extract", "principal_components", "zipf_sif_weights"]
