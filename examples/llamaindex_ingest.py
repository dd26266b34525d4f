"""Ingest documents into an embedded Qdrant with LlamaIndex and llmvec, then retrieve.

Reads the text files in ``examples/data``, runs an ``IngestionPipeline`` (sentence splitter,
then llmvec embeddings) that writes the chunks into Qdrant (embedded, in memory), and opens a
retriever over the stored vectors for a few questions.

Runs offline in seconds with the packaged all-MiniLM-L6-v2 (the default). A decoder LLM works
the same way: ``--model smollm2 --template prompteol`` (SmolLM2-135M, slower on a CPU).

    python examples/llamaindex_ingest.py "How do I find the hole in an inner tube?"
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.llmvec import LLMVecEmbedding
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient

DATA = Path(__file__).parent / "data"

QUESTIONS = [
    "Why are there two high tides a day?",
    "How long does it take to double my savings?",
    "What makes sourdough bread taste sour?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="*", default=QUESTIONS)
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--template", default=None, help="e.g. prompteol for a decoder LLM")
    parser.add_argument("-k", type=int, default=2, help="chunks to retrieve per question")
    args = parser.parse_args()

    documents = SimpleDirectoryReader(str(DATA), required_exts=[".txt", ".md"]).load_data()
    embed_model = LLMVecEmbedding(model_name=args.model, template=args.template)
    # Embedded Qdrant: in memory, nothing to run. Payload indexes only matter on a server.
    warnings.filterwarnings("ignore", message="Payload indexes have no effect")
    store = QdrantVectorStore("llmvec_ingest", client=QdrantClient(":memory:"))
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=128, chunk_overlap=16), embed_model],
        vector_store=store,
    )
    nodes = pipeline.run(documents=documents)
    print(f"Ingested {len(documents)} files as {len(nodes)} chunks with {embed_model.encoder!r}")

    retriever = VectorStoreIndex.from_vector_store(store, embed_model=embed_model).as_retriever(
        similarity_top_k=args.k
    )
    for question in args.questions:
        print(f"\nQ: {question}")
        for hit in retriever.retrieve(question):
            text = " ".join(hit.node.get_content().split())
            print(f"  {hit.score:.3f} [{hit.node.metadata['file_name']}] {text[:100]}...")


if __name__ == "__main__":
    main()
