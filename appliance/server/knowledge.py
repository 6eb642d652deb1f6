"""Knowledge base endpoints: upload, list and delete documents (admins); search and cited passages;
watched sources (admins)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter

from appliance.assistant import Assistant
from appliance.errors import InvalidRequest, NotFound, NotReady
from appliance.knowledge.parsers import ParseError
from appliance.knowledge.sources import SourceScheduler
from appliance.server.auth import admin_only, note_audit, require_principal, signed_in
from appliance.server.schemas import SearchRequest
from appliance.server.scope import caller_groups, can_list

# Uploads are bounded by knowledge.max_upload_bytes, checked per file; this is the outer cap.
UPLOAD_BODY_CAP = 1 << 30


class KnowledgeController(Controller):
    path = "/api"
    tags = ["Knowledge base"]
    guards = [signed_in]

    @get("/documents", summary="List the documents the caller may see (admins: every document)")
    async def list_documents(self, request: Request, assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        kb = assistant.require_knowledge()
        principal = require_principal(request)
        documents = await anyio.to_thread.run_sync(kb.store.documents)
        return {"documents": [d.as_dict() for d in documents if can_list(principal, d.groups)],
                "version": kb.version, "rechunk": kb.rechunk_status()}

    @post("/documents", summary="Upload documents (multipart: one or more `file` parts, optional "
          "`groups` comma-separated)", status_code=201, request_max_body_size=UPLOAD_BODY_CAP,
          guards=[admin_only], opt={"audit": "documents_uploaded"})
    async def upload(self, request: Request, assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        kb = assistant.require_knowledge()
        limit = assistant.knowledge_settings.max_upload_bytes
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            raise InvalidRequest("Send the documents as multipart/form-data with `file` parts.")
        form = await request.form()
        files = [f for f in form.getall("file") if isinstance(f, UploadFile)] if "file" in form else []
        if not files:
            raise InvalidRequest("No `file` part in the upload; add at least one.", param="file")
        groups_field = form.get("groups")
        groups = ([g for g in str(groups_field).split(",") if g.strip()] if groups_field else None)
        results = []
        for upload in files:
            data = await upload.read()
            name = upload.filename or "upload"
            if len(data) > limit:
                results.append({"document": name, "status": "failed",
                                "reason": f"larger than knowledge.max_upload_bytes ({limit} bytes)"})
                continue
            try:
                report = await anyio.to_thread.run_sync(kb.ingest_bytes, name, data, groups)
            except ParseError as exc:
                results.append({"document": name, "status": "failed", "reason": exc.message})
                continue
            status = "added" if report.added else "updated" if report.updated else "unchanged"
            record = kb.store.by_source(name)
            # OCR'd pages with their confidence; warnings name low-confidence and unread pages.
            results.append({"document": name, "status": status, "id": record.id if record else None,
                            "chunks": record.chunk_count if record else 0,
                            "ocr": list(record.ocr) if record else [],
                            "warnings": report.warnings_of(name)})
        note_audit(request, ", ".join(r["document"] for r in results)[:500],
                   groups=groups or list(assistant.knowledge_settings.default_groups),
                   results=[{k: r.get(k) for k in ("document", "status", "id")} for r in results])
        return {"results": results, "version": kb.version}

    @delete("/documents/{document_id:int}", summary="Delete a document everywhere", status_code=200,
            guards=[admin_only], opt={"audit": "document_deleted"})
    async def delete_document(self, document_id: Annotated[int, PathParameter(ge=1, le=2**63 - 1)],
                              request: Request, assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        kb = assistant.require_knowledge()
        document = await anyio.to_thread.run_sync(kb.store.document, document_id)
        note_audit(request, document.source, document_id=document_id, groups=list(document.groups))
        await anyio.to_thread.run_sync(kb.delete, document_id)
        return {"deleted": document_id, "version": kb.version}

    @post("/search", summary="Hybrid search over what the caller's groups may see", status_code=200,
          opt={"quota": "requests"})
    async def search(self, data: JSONBody[SearchRequest], request: Request, assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        kb = assistant.require_knowledge()
        groups = caller_groups(request, data.groups)
        hits = await anyio.to_thread.run_sync(
            lambda: kb.search(data.query, data.k, groups=groups, mode=data.mode)
        )
        return {"query": data.query, "results": [h.as_dict() for h in hits], "version": kb.version}

    @get("/chunks/{chunk_id:int}", summary="The passage a cited source points at, with its neighbours")
    async def chunk(self, chunk_id: Annotated[int, PathParameter(ge=1, le=2**63 - 1)], request: Request,
                    assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        kb = assistant.require_knowledge()
        groups = caller_groups(request)
        passage = await anyio.to_thread.run_sync(lambda: kb.store.passage(chunk_id, groups))
        if passage is None:  # hidden and missing look the same: existence is not disclosed
            raise NotFound(f"No passage with id {chunk_id}; it may have been deleted or updated. "
                           "Ask again for fresh sources.")
        return passage


def _scheduler(sources: SourceScheduler | None) -> SourceScheduler:
    if sources is None:
        raise NotReady("The knowledge base is still opening; watched sources are available once "
                       "it is ready (see GET /ready).")
    return sources


class SourcesController(Controller):
    path = "/api/sources"
    tags = ["Knowledge base"]
    guards = [admin_only]

    @get("/", summary="Watched sources: settings, documents, last run, next run; and OCR availability")
    async def list_sources(self, sources: NamedDependency[SourceScheduler | None],
                           assistant: NamedDependency[Assistant]) -> dict[str, Any]:
        scheduler = _scheduler(sources)
        rows = await anyio.to_thread.run_sync(scheduler.describe)
        ocr = await anyio.to_thread.run_sync(assistant.require_knowledge().ocr.status)
        return {"sources": rows, "ocr": ocr}

    @get("/{name:str}", summary="One watched source with its recent runs")
    async def get_source(self, name: FromPath[str], sources: NamedDependency[SourceScheduler | None],
                         limit: Annotated[int, QueryParameter(ge=1, le=500)] = 20) -> dict[str, Any]:
        scheduler = _scheduler(sources)
        row = (await anyio.to_thread.run_sync(scheduler.describe, name))[0]
        runs = await anyio.to_thread.run_sync(scheduler.sources.history, name, limit)
        return {**row, "runs": runs}

    @post("/{name:str}/run", summary="Run a watched source now (in the background)", status_code=202,
          opt={"audit": "source_run"})
    async def run_source(self, name: FromPath[str], request: Request,
                         sources: NamedDependency[SourceScheduler | None]) -> dict[str, Any]:
        scheduler = _scheduler(sources)
        note_audit(request, name)
        run = await anyio.to_thread.run_sync(scheduler.run_now, name)
        return {"run": run}
