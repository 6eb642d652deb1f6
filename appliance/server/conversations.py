"""The signed-in user's conversations under /api/conversations; another user's are 'not found'."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import Meta, Struct

from appliance.accounts import Conversations
from appliance.accounts.exports import (
    content_disposition,
    conversation_json,
    conversation_markdown,
    filename,
)
from appliance.server.auth import require_principal, signed_in
from appliance.server.quotas import quotas_of

ConversationId = Annotated[str, PathParameter(min_length=1, max_length=64)]
Title = Annotated[str, Meta(max_length=1000)]


class MessageIn(Struct, forbid_unknown_fields=True):
    role: Literal["user", "assistant"]
    content: Annotated[str, Meta(max_length=200_000)]
    sources: Annotated[list[dict[str, Any]], Meta(max_length=100)] | None = None
    response_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    # As the chat response gave them: how the answer was made, and the follow-up's search text.
    answer_mode: Literal["extractive", "generated", "generated_with_removals"] | None = None
    support: Annotated[float, Meta(ge=0, le=1)] | None = None
    removed: Annotated[int, Meta(ge=0)] | None = None
    retrieval_query: Annotated[str, Meta(max_length=20_000)] | None = None


class NewConversation(Struct, forbid_unknown_fields=True):
    title: Title | None = None


class Rename(Struct, forbid_unknown_fields=True):
    title: Title


class AppendMessages(Struct, forbid_unknown_fields=True):
    messages: Annotated[list[MessageIn], Meta(min_length=1, max_length=100)]


def _owner(request: Request) -> tuple[Conversations, int]:
    return Conversations(request.app.state.accounts), require_principal(request).user.id


class ConversationsController(Controller):
    path = "/api/conversations"
    tags = ["Conversations"]
    guards = [signed_in]

    @get("/", summary="The caller's conversations, most recently active first")
    async def list_conversations(self, request: Request,
                                 limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100) -> dict[str, Any]:
        conversations, user_id = _owner(request)
        return {"conversations": await anyio.to_thread.run_sync(conversations.list, user_id, limit)}

    @post("/", summary="Start a conversation", status_code=201)
    async def create(self, request: Request, data: JSONBody[NewConversation | None] = None) -> dict[str, Any]:
        conversations, user_id = _owner(request)
        title = data.title if data else None
        return await anyio.to_thread.run_sync(conversations.create, user_id, title)

    @get("/{conversation_id:str}", summary="One conversation with its messages")
    async def get_conversation(self, conversation_id: ConversationId, request: Request) -> dict[str, Any]:
        conversations, user_id = _owner(request)
        return await anyio.to_thread.run_sync(conversations.get, user_id, conversation_id)

    @get("/{conversation_id:str}/export", summary="Download a conversation as Markdown or JSON")
    async def export(self, conversation_id: ConversationId, request: Request, state: State,
                     export_format: Annotated[Literal["md", "json"], QueryParameter(name="format")] = "md",
                     lang: Literal["en", "ko"] = "en") -> Response:
        conversations, user_id = _owner(request)
        conversation = await anyio.to_thread.run_sync(conversations.get, user_id, conversation_id)
        username, zone = require_principal(request).name, quotas_of(state).zone
        if export_format == "json":
            body = conversation_json(conversation, username=username, zone=zone)
            media_type = "application/json"
        else:
            body = conversation_markdown(conversation, username=username, zone=zone, lang=lang)
            media_type = "text/markdown"
        names = filename(conversation["title"], conversation["id"], export_format)
        return Response(body, media_type=media_type,
                        headers={"Content-Disposition": content_disposition(*names),
                                 "Cache-Control": "no-store"})

    @post("/{conversation_id:str}/messages", summary="Add messages (question, answer with its sources)",
          status_code=200)
    async def append(self, conversation_id: ConversationId, data: JSONBody[AppendMessages],
                     request: Request) -> dict[str, Any]:
        conversations, user_id = _owner(request)
        messages = [msgspec.structs.asdict(m) for m in data.messages]
        return await anyio.to_thread.run_sync(conversations.append, user_id, conversation_id, messages)

    @patch("/{conversation_id:str}", summary="Rename a conversation")
    async def rename(self, conversation_id: ConversationId, data: JSONBody[Rename],
                     request: Request) -> dict[str, Any]:
        conversations, user_id = _owner(request)
        return await anyio.to_thread.run_sync(conversations.rename, user_id, conversation_id, data.title)

    @delete("/{conversation_id:str}", summary="Delete a conversation", status_code=200)
    async def delete_conversation(self, conversation_id: ConversationId, request: Request) -> dict[str, Any]:
        conversations, user_id = _owner(request)
        await anyio.to_thread.run_sync(conversations.delete, user_id, conversation_id)
        return {"deleted": conversation_id}
