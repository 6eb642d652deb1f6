"""Per-user conversation history in accounts.db: questions, answers (their sources, how each was
made, what was searched for it) and ratings."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from appliance.accounts.store import Accounts
from appliance.answers.modes import EXTRACTIVE, GENERATED, GENERATED_WITH_REMOVALS
from appliance.errors import InvalidRequest, NotFound

MAX_TITLE = 120
MESSAGE_ROLES = ("user", "assistant")
RATINGS = ("up", "down")
ANSWER_MODES = (EXTRACTIVE, GENERATED, GENERATED_WITH_REMOVALS)
# What a chat response says about how its answer was made, kept with the saved answer.
ANSWER_FIELDS = ("answer_mode", "support", "removed", "retrieval_query")


class Conversations:
    """Every call names the owner: another user's conversation is indistinguishable from none."""

    def __init__(self, accounts: Accounts):
        self.accounts = accounts

    def list(self, user_id: int, limit: int = 100) -> list[dict[str, Any]]:
        return self.accounts.rows(
            "SELECT c.id, c.title, c.created_at, c.updated_at, "
            "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count "
            "FROM conversations c WHERE c.user_id = ? ORDER BY c.updated_at DESC LIMIT ?",
            [user_id, limit])

    def create(self, user_id: int, title: str | None = None) -> dict[str, Any]:
        title = " ".join((title or "").split())[:MAX_TITLE] or "New conversation"
        now = time.time()
        conversation_id = uuid.uuid4().hex
        with self.accounts.write() as db:
            db.execute("INSERT INTO conversations (id, user_id, title, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?)", [conversation_id, user_id, title, now, now])
        return self.get(user_id, conversation_id)

    def get(self, user_id: int, conversation_id: str) -> dict[str, Any]:
        """One conversation with its messages."""
        rows = self.accounts.rows("SELECT id, title, created_at, updated_at FROM conversations "
                                  "WHERE id = ? AND user_id = ?", [conversation_id, user_id])
        if not rows:
            raise NotFound("No such conversation; it may have been deleted.")
        conversation = rows[0]
        messages = self.accounts.rows(
            "SELECT id, role, content, sources, response_id, rating, answer_mode, support, removed, "
            "retrieval_query, created_at "
            "FROM messages WHERE conversation_id = ? ORDER BY id", [conversation_id])
        for message in messages:
            message["sources"] = json.loads(message["sources"])
        conversation["messages"] = messages
        return conversation

    def append(self, user_id: int, conversation_id: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Add messages in one transaction. Each has role and content, and optionally sources,
        response_id and the response's answer_mode, support, removed and retrieval_query."""
        rows = []
        now = time.time()
        for message in messages:
            if message.get("role") not in MESSAGE_ROLES:
                raise InvalidRequest(f"Message roles are {' or '.join(MESSAGE_ROLES)}.", param="role")
            if message.get("answer_mode") not in (None, *ANSWER_MODES):
                raise InvalidRequest(f"answer_mode is one of {', '.join(ANSWER_MODES)}, as the chat "
                                     "response gave it.", param="answer_mode")
            rows.append([conversation_id, message["role"], message.get("content") or "",
                         json.dumps(message.get("sources") or [], ensure_ascii=False),
                         message.get("response_id"), *(message.get(name) for name in ANSWER_FIELDS), now])
        with self.accounts.write() as db:
            owned = db.execute("SELECT 1 FROM conversations WHERE id = ? AND user_id = ?",
                               [conversation_id, user_id]).fetchone()
            if owned is None:
                raise NotFound("No such conversation; it may have been deleted.")
            db.executemany(
                "INSERT INTO messages (conversation_id, role, content, sources, response_id, answer_mode, "
                "support, removed, retrieval_query, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", [now, conversation_id])
        return self.get(user_id, conversation_id)

    def rename(self, user_id: int, conversation_id: str, title: str) -> dict[str, Any]:
        title = " ".join((title or "").split())[:MAX_TITLE]
        if not title:
            raise InvalidRequest("Give the conversation a title.", param="title")
        with self.accounts.write() as db:
            cursor = db.execute("UPDATE conversations SET title = ?, updated_at = ? "
                                "WHERE id = ? AND user_id = ?",
                                [title, time.time(), conversation_id, user_id])
        if cursor.rowcount == 0:
            raise NotFound("No such conversation; it may have been deleted.")
        return self.get(user_id, conversation_id)

    def delete(self, user_id: int, conversation_id: str) -> None:
        with self.accounts.write() as db:
            cursor = db.execute("DELETE FROM conversations WHERE id = ? AND user_id = ?",
                                [conversation_id, user_id])
        if cursor.rowcount == 0:
            raise NotFound("No such conversation; it may have been deleted.")

    def rate(self, user_id: int, response_id: str, rating: str) -> bool:
        """Store a thumbs up/down on the user's own answer; False if it is not in their history."""
        if rating not in RATINGS:
            raise InvalidRequest("Rate with 'up' or 'down'.", param="rating")
        with self.accounts.write() as db:
            cursor = db.execute(
                "UPDATE messages SET rating = ? WHERE response_id = ? AND role = 'assistant' AND "
                "conversation_id IN (SELECT id FROM conversations WHERE user_id = ?)",
                [rating, response_id, user_id])
        return cursor.rowcount > 0
