"""Answers from evidence: select the spans that answer a question, compose an extractive answer
from them, or prompt a model with them and verify what it writes."""
