"""``llmvec serve``: an OpenAI-compatible embeddings server with dynamic batching, and
:class:`RemoteEncoder`, its client where an encoder is expected.

Its dependencies (the ``serve`` extra: Starlette, uvicorn, httpx) are imported only when used,
so that the ``llmvec`` command runs without them.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmvec.serving.client import RemoteEncoder

__all__ = ["API_KEY_ENV", "RemoteEncoder"]

#: The environment variable holding the server's API key (server and client).
API_KEY_ENV = "LLMVEC_API_KEY"


def __getattr__(name: str) -> object:
    if name == "RemoteEncoder":
        from llmvec.serving.client import RemoteEncoder

        return RemoteEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
