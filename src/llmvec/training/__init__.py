"""Training: make an LLM (or an encoder) a better embedder on the path inference runs."""
