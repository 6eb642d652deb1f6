"""A knowledge base over a folder of documents, opened and searched the way the appliance does it,
for building training prompts and for scoring answers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance_build.errors import BuildError

DOCUMENT_GROUP = "doc:"  # each document's own access group: a search can leave any document out


@contextlib.contextmanager
def open_knowledge(docs: Path, embedder_dir: Path, work: Path) -> Iterator[tuple[Any, Any]]:
    """(KnowledgeBase, Settings) over `docs`, ingested into `work` with the embedder artifact in
    `embedder_dir`; the appliance's default knowledge and answer settings apply. Every document is
    in the group "all" and in its own group (`document_group`)."""
    from appliance.knowledge.knowledge_base import KnowledgeBase
    from appliance.settings import AnswerSettings, KnowledgeSettings, Settings

    if not Path(docs).is_dir():
        raise BuildError(f"Document folder {docs} does not exist; set data.docs_dir (or the evaluate "
                         "stage's answer_probes_dir) to the folder holding the documents.")
    settings = Settings(data_dir=work, knowledge=KnowledgeSettings(embedder_path=str(embedder_dir)),
                        answers=AnswerSettings())
    kb = KnowledgeBase.open(settings)
    try:
        report = kb.ingest([Path(docs)], ["all"])
        if not kb.store.documents():
            raise BuildError(f"No document in {docs} could be ingested ({report.failed[:3]}); "
                             "check the folder and the formats the appliance reads.")
        for document in kb.store.documents():
            kb.regroup(document.id, ["all", document_group(document.source)])
        yield kb, settings
    finally:
        kb.close()


def document_group(source: str) -> str:
    return DOCUMENT_GROUP + source


def assistant_for(kb, settings, backend=None):
    """The appliance's answer service over `kb` (retrieval, evidence, answers), without a cache."""
    from appliance.assistant import Assistant
    from appliance.cache import ResponseCache

    return Assistant(backend, ResponseCache(enabled=False), knowledge=kb, knowledge_settings=settings.knowledge,
                     answer_settings=settings.answers)
