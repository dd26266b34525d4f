"""A binary-quantized Qdrant index with rescoring, straight from llmvec (runs offline).

Documents are stored as 1-bit-per-dimension codes for the first pass and as original float
vectors for rescoring the ``k * oversample`` best candidates. This uses Qdrant Edge, the real
Qdrant engine running in-process, so the quantization is really applied; swap in
``location=":memory:"`` (qdrant-client's embedded emulation) or ``url="http://host:6333"``
(a server) without changing anything else.

    python examples/qdrant_binary_index.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import llmvec
from llmvec.documents import load_chunks

DATA = Path(__file__).resolve().parent / "data"
QUESTIONS = [
    "How do bees tell the hive where the flowers are?",
    "Why does the sea rise and fall twice a day?",
    "How long until my savings double?",
]


def main() -> None:
    encoder = llmvec.Encoder("all-minilm-l6-v2", pooling="mean")
    chunks = load_chunks(DATA, max_chars=400).chunks
    with (
        tempfile.TemporaryDirectory() as storage,
        llmvec.QdrantIndex(
            encoder,
            "examples",
            path=Path(storage) / "qdrant",
            engine="edge",
            quantization="binary",
            rescore=True,
            oversample=4.0,
        ) as index,
    ):
        index.add(
            [c.text for c in chunks],
            ids=[c.id for c in chunks],
            metadata=[c.metadata for c in chunks],
        )
        index.optimize()  # build the binary codes and the HNSW graph now
        print(f"{len(index)} chunks from {DATA.name}/, stored as {index.spec.precision}")
        for question in QUESTIONS:
            best = index.search(question, k=1)[0]
            snippet = " ".join((best.text or "").split())[:90]
            print(f"\n{question}\n  {best.score:.3f} {best.id}: {snippet}...")


if __name__ == "__main__":
    main()
