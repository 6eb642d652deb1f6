"""Per-user conversation history in accounts.db: questions, answers, their sources and ratings."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from appliance.accounts.store import Accounts
from appliance.errors import InvalidRequest, NotFound

MAX_TITLE = 120
ROLES = ("user", "assistant")


class Conversations:
    def __init__(self, accounts: Accounts):
        self.accounts = accounts

    def _rows(self, sql: str, params=()) -> list[dict]:
        return self.accounts._rows(sql, params)

    def list(self, user_id: int, limit: int = 100) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT c.id, c.title, c.created_at, c.updated_at, "
            "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages "
            "FROM conversations c WHERE c.user_id = ? ORDER BY c.updated_at DESC LIMIT ?",
            [user_id, limit])

    def create(self, user_id: int, title: str) -> dict[str, Any]:
        title = " ".join((title or "").split())[:MAX_TITLE] or "New conversation"
        now = time.time()
        conversation_id = uuid.uuid4().hex
        with self.accounts._lock, self.accounts.db.conn:
            self.accounts.db.execute(
                "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                [conversation_id, user_id, title, now, now])
        return self.get(user_id, conversation_id)

    def get(self, user_id: int, conversation_id: str) -> dict[str, Any]:
        """One conversation with its messages; another user's conversation is 'not found'."""
        rows = self._rows("SELECT id, title, created_at, updated_at FROM conversations "
                          "WHERE id = ? AND user_id = ?", [conversation_id, user_id])
        if not rows:
            raise NotFound("No such conversation; it may have been deleted.")
        conversation = rows[0]
        messages = self._rows("SELECT id, role, content, sources, response_id, rating, created_at "
                              "FROM messages WHERE conversation_id = ? ORDER BY id", [conversation_id])
        for message in messages:
            message["sources"] = json.loads(message["sources"])
        conversation["messages"] = messages
        return conversation

    def append(self, user_id: int, conversation_id: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        self.get(user_id, conversation_id)
        now = time.time()
        rows = []
        for message in messages:
            if message.get("role") not in ROLES:
                raise InvalidRequest(f"Message roles are {' or '.join(ROLES)}.", param="role")
            rows.append([conversation_id, message["role"], message.get("content") or "",
                         json.dumps(message.get("sources") or []), message.get("response_id"), now])
        with self.accounts._lock, self.accounts.db.conn:
            self.accounts.db.conn.executemany(
                "INSERT INTO messages (conversation_id, role, content, sources, response_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows)
            self.accounts.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?",
                                     [now, conversation_id])
        return self.get(user_id, conversation_id)

    def rename(self, user_id: int, conversation_id: str, title: str) -> dict[str, Any]:
        self.get(user_id, conversation_id)
        title = " ".join((title or "").split())[:MAX_TITLE]
        if not title:
            raise InvalidRequest("Give the conversation a title.", param="title")
        with self.accounts._lock, self.accounts.db.conn:
            self.accounts.db.execute("UPDATE conversations SET title = ? WHERE id = ?", [title, conversation_id])
        return self.get(user_id, conversation_id)

    def delete(self, user_id: int, conversation_id: str) -> None:
        self.get(user_id, conversation_id)
        with self.accounts._lock, self.accounts.db.conn:
            self.accounts.db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    def rate(self, user_id: int, response_id: str, rating: str) -> bool:
        """Store a thumbs up/down on the user's own answer; False if it is not in their history."""
        with self.accounts._lock, self.accounts.db.conn:
            cursor = self.accounts.db.execute(
                "UPDATE messages SET rating = ? WHERE response_id = ? AND conversation_id IN "
                "(SELECT id FROM conversations WHERE user_id = ?)", [rating, response_id, user_id])
        return cursor.rowcount > 0
