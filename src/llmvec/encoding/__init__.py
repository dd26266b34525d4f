"""The encoding path, from text to a pooled vector: templates and instructions
(:mod:`~llmvec.encoding.templates`), token ids (:mod:`~llmvec.encoding.inputs`), the recipe's
defaults (:mod:`~llmvec.encoding.recipe`), batches (:mod:`~llmvec.encoding.batching`), the
shared-prefix cache (:mod:`~llmvec.encoding.prefix_cache`) and pooling
(:mod:`~llmvec.encoding.pooling`, :mod:`~llmvec.encoding.latent_attention`).
:class:`llmvec.Encoder` runs them in order."""
