"""Retrieval-augmented generation with LangChain, llmvec embeddings and an embedded Qdrant.

Loads the text files in ``examples/data``, splits them into chunks, embeds the chunks with
llmvec, stores them in Qdrant (embedded, in memory), retrieves the chunks for a question and
prints the prompt a chat model would get. With ``LLMVEC_CHAT_MODEL`` set to a LangChain model
id such as ``openai:gpt-4o-mini`` (needs ``pip install langchain langchain-openai`` and the
provider's key) the chain also calls the model; without it the LLM step is skipped.

Runs offline in seconds with the packaged all-MiniLM-L6-v2 (the default). A decoder LLM works
the same way: ``--model smollm2 --template prompteol`` (SmolLM2-135M, slower on a CPU).

    python examples/langchain_rag.py --question "How often should I water a cactus?"
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_llmvec import LLMVecEmbeddings
from langchain_qdrant import QdrantVectorStore
from langchain_text_splitters import RecursiveCharacterTextSplitter

DATA = Path(__file__).parent / "data"

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only this context:\n\n{context}"),
        ("human", "{question}"),
    ]
)


def load_documents(folder: Path) -> list[Document]:
    """One document per text file, with its file name as the source."""
    return [
        Document(page_content=path.read_text(encoding="utf-8"), metadata={"source": path.name})
        for path in sorted(folder.iterdir())
        if path.suffix in {".txt", ".md"}
    ]


def format_context(chunks: list[Document]) -> str:
    """The retrieved chunks as the prompt's context, each headed by its source file."""
    return "\n\n".join(f"[{chunk.metadata['source']}]\n{chunk.page_content}" for chunk in chunks)


def configured_chat_model() -> BaseChatModel | None:
    """The chat model named by ``LLMVEC_CHAT_MODEL``, or ``None`` when none is configured."""
    name = os.environ.get("LLMVEC_CHAT_MODEL")
    if not name:
        return None
    from langchain.chat_models import init_chat_model

    return init_chat_model(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="How often should I water a cactus?")
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--template", default=None, help="e.g. prompteol for a decoder LLM")
    parser.add_argument("-k", type=int, default=3, help="chunks to retrieve")
    args = parser.parse_args()

    splitter = RecursiveCharacterTextSplitter(chunk_size=400, chunk_overlap=40)
    chunks = splitter.split_documents(load_documents(DATA))
    embeddings = LLMVecEmbeddings(model=args.model, template=args.template)
    store = QdrantVectorStore.from_documents(
        chunks, embeddings, location=":memory:", collection_name="llmvec_rag"
    )
    print(f"Indexed {len(chunks)} chunks from {DATA} with {embeddings!r}")

    retriever = store.as_retriever(search_kwargs={"k": args.k})
    prepare = {"context": retriever | format_context, "question": RunnablePassthrough()} | PROMPT
    prompt = prepare.invoke(args.question)
    print(f"\nQuestion: {args.question}\n\nPrompt the chain gives the chat model:\n")
    for message in prompt.to_messages():
        print(f"--- {message.type}\n{message.content}")

    chat_model = configured_chat_model()
    if chat_model is None:
        print("\nNo chat model configured (set LLMVEC_CHAT_MODEL); LLM step skipped.")
        return
    answer = (chat_model | StrOutputParser()).invoke(prompt)
    print(f"\nAnswer:\n{answer}")


if __name__ == "__main__":
    main()
