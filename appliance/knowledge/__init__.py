"""The knowledge base: ingestion, embedder, vector and keyword indexes, hybrid retrieval."""
