"""``llmvec serve``: an OpenAI-compatible embeddings server with dynamic batching, and
:class:`RemoteEncoder`, its client where an encoder is expected."""

from llmvec.serving.client import RemoteEncoder

__all__ = ["RemoteEncoder"]
