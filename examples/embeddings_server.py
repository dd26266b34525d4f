"""An OpenAI-compatible embeddings server, and three clients of it (runs offline).

The server is what ``llmvec serve all-minilm-l6-v2`` runs, started here in a thread on a free
loopback port so that the example is one file. The official ``openai`` client asks it for
vectors; ``RemoteEncoder`` gives them to a FAISS index (which stores the server's spec, so the
local encoder can search the same store later); raw HTTP shows the extensions (query side,
Matryoshka ``dimensions``, binary codes).

    python examples/embeddings_server.py
"""

from __future__ import annotations

from pathlib import Path

import httpx

import llmvec
from llmvec.documents import load_chunks
from llmvec.serving import RemoteEncoder
from llmvec.serving.app import build_app
from llmvec.serving.server import running

DATA = Path(__file__).resolve().parent / "data"
QUESTION = "How do bees tell the hive where the flowers are?"


def main() -> None:
    encoder = llmvec.Encoder("all-minilm-l6-v2", pooling="mean")
    with running(build_app(encoder)) as (url, _):
        print(f"serving {encoder.model_name} at {url}")

        from openai import OpenAI

        client = OpenAI(base_url=url + "/v1", api_key="unused")
        created = client.embeddings.create(input=[QUESTION], model=encoder.model_name)
        print(
            f"openai client: {len(created.data[0].embedding)} dimensions, "
            f"{created.usage.prompt_tokens} tokens"
        )

        index = llmvec.FaissIndex(RemoteEncoder(url))
        chunks = load_chunks(DATA, max_chars=400).chunks
        index.add([c.text for c in chunks], metadata=[c.metadata for c in chunks])
        best = index.search(QUESTION, k=1)[0]
        print(f"best chunk for the question: {Path(str(best.metadata['source'])).name}")

        extended = httpx.post(
            url + "/v1/embeddings",
            json={
                "input": [QUESTION],
                "input_type": "query",
                "dimensions": 128,
                "embedding_types": ["float", "ubinary"],
            },
        ).json()
        kinds = extended["data"][0]["embeddings"]
        print(f"128 dimensions: {len(kinds['float'])} floats, {len(kinds['ubinary'])} bytes")


if __name__ == "__main__":
    main()
