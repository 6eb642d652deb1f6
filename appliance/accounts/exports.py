"""Exports: a conversation as Markdown or JSON; the audit log and daily usage as CSV for a period.

CSV is written for spreadsheets: UTF-8 with a byte-order mark (so Excel reads Korean right),
times in ISO 8601 with the offset of `quotas.timezone`, and cells that a spreadsheet would run
as a formula (starting with = + - @ or a tab) prefixed with an apostrophe: user names and key
names that someone typed end up in these files.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from appliance.accounts.store import Accounts
from appliance.errors import InvalidRequest

FORMATS = ("md", "json")
BOM = "\ufeff"
DEFAULT_DAYS = 30
MAX_DAYS = 3660
AUDIT_PAGE = 1000
AUDIT_COLUMNS = ("id", "time", "actor", "action", "target", "status", "ip", "detail")
USAGE_COLUMNS = ("day", "username", "role", "key_id", "key_name", "key_prefix", "requests", "refused",
                 "prompt_tokens", "completion_tokens", "total_tokens")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_LABELS = {
    "en": {"user": "You", "assistant": "Assistant", "sources": "Sources", "exported": "Exported",
           "by": "by", "started": "Started", "updated": "Last message", "id": "Conversation",
           "page": "page", "sheet": "sheet", "rating": "Rating", "up": "helpful", "down": "not helpful",
           "empty": "(no messages)"},
    "ko": {"user": "나", "assistant": "어시스턴트", "sources": "출처", "exported": "내보낸 시각",
           "by": "사용자", "started": "시작", "updated": "마지막 메시지", "id": "대화 ID",
           "page": "페이지", "sheet": "시트", "rating": "평가", "up": "도움이 됨",
           "down": "도움이 안 됨", "empty": "(메시지 없음)"},
}


@dataclass(frozen=True)
class Period:
    """Whole days, both included, in a time zone."""

    since: date
    until: date
    zone: ZoneInfo

    @classmethod
    def parse(cls, since: str | None, until: str | None, zone: ZoneInfo, *,
              today: date | None = None) -> Period:
        """From YYYY-MM-DD strings; without them, the last 30 days up to today."""
        today = today or datetime.now(zone).date()
        end = _date(until, "until") if until else today
        start = _date(since, "since") if since else end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise InvalidRequest(f"The period starts ({start}) after it ends ({end}); swap since and until.",
                                 param="since")
        if (end - start).days >= MAX_DAYS:
            raise InvalidRequest(f"Export at most {MAX_DAYS} days at a time; narrow since/until.",
                                 param="since")
        return cls(start, end, zone)

    @property
    def start_ts(self) -> float:
        return datetime.combine(self.since, datetime.min.time(), self.zone).timestamp()

    @property
    def end_ts(self) -> float:
        """The first moment after the period."""
        return datetime.combine(self.until + timedelta(days=1), datetime.min.time(), self.zone).timestamp()

    def name(self, what: str) -> str:
        return f"{what}-{self.since.isoformat()}-to-{self.until.isoformat()}.csv"


def _date(value: str, param: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(f"{param} must be a date as YYYY-MM-DD, e.g. 2026-05-01; got {value!r}.",
                             param=param) from None


def iso(ts: float | None, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).isoformat(timespec="seconds") if ts is not None else ""


def _when(ts: float | None, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M") if ts is not None else ""


# -- conversations ---------------------------------------------------------------------------------

def conversation_markdown(conversation: dict[str, Any], *, username: str, zone: ZoneInfo,
                          lang: str = "en", now: float | None = None) -> str:
    """A readable record: title, when and by whom, each turn with its sources and rating."""
    labels = _LABELS.get(lang, _LABELS["en"])
    tz = str(zone)
    exported = datetime.now(zone) if now is None else datetime.fromtimestamp(now, zone)
    lines = [f"# {_one_line(conversation['title'])}", "",
             f"- {labels['exported']}: {exported.strftime('%Y-%m-%d %H:%M')} ({tz}), "
             f"{labels['by']} {username}",
             f"- {labels['started']}: {_when(conversation['created_at'], zone)} · "
             f"{labels['updated']}: {_when(conversation['updated_at'], zone)}",
             f"- {labels['id']}: {conversation['id']}", ""]
    if not conversation["messages"]:
        lines += [labels["empty"], ""]
    for message in conversation["messages"]:
        speaker = labels["user"] if message["role"] == "user" else labels["assistant"]
        lines += ["---", "", f"## {speaker} · {_when(message['created_at'], zone)}", "",
                  message["content"].strip(), ""]
        sources = message.get("sources") or []
        if sources:
            lines += [f"**{labels['sources']}**", ""]
            lines += [f"{i}. {_source(source, labels)}" for i, source in enumerate(sources, 1)]
            lines.append("")
        if message.get("rating") in ("up", "down"):
            lines += [f"*{labels['rating']}: {labels[message['rating']]}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _source(source: dict[str, Any], labels: dict[str, str]) -> str:
    title = _one_line(source.get("title") or source.get("document") or "")
    where = [_one_line(source["document"])] if source.get("document") and source.get("title") else []
    if source.get("heading"):
        where.append(_one_line(source["heading"]))
    if source.get("page"):
        where.append(f"{labels['page']} {source['page']}")
    if source.get("sheet"):
        where.append(f"{labels['sheet']} {source['sheet']}")
    return f"{title} — {' · '.join(where)}" if where else title


def conversation_json(conversation: dict[str, Any], *, username: str, zone: ZoneInfo,
                      now: float | None = None) -> str:
    """The conversation as the API returns it, with who exported it and when."""
    exported = datetime.now(zone) if now is None else datetime.fromtimestamp(now, zone)
    body = {"format": "erp-appliance.conversation", "version": 1,
            "exported_at": exported.isoformat(timespec="seconds"), "username": username,
            "conversation": conversation}
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def filename(title: str, conversation_id: str, extension: str) -> tuple[str, str]:
    """(ASCII fallback, Unicode name) for a download of a conversation."""
    slug = re.sub(r"[^\w]+", "-", unicodedata.normalize("NFC", title), flags=re.UNICODE).strip("-_")[:60]
    ascii_slug = re.sub(r"[^A-Za-z0-9]+", "-", slug).strip("-")
    fallback = f"{ascii_slug or 'conversation'}-{conversation_id[:8]}.{extension}"
    return fallback, f"{slug or 'conversation'}-{conversation_id[:8]}.{extension}"


def content_disposition(fallback: str, name: str | None = None) -> str:
    """An attachment header that keeps a Korean file name (RFC 6266's filename*)."""
    header = f'attachment; filename="{fallback}"'
    if name and name != fallback:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


# -- CSV -------------------------------------------------------------------------------------------

def csv_cell(value: Any) -> Any:
    """A value a spreadsheet shows as text, never runs."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _csv(rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([csv_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


def csv_header(columns: Iterable[str]) -> str:
    """The first line of a CSV file, after the byte-order mark."""
    return BOM + _csv([columns])


def csv_body(rows: Iterable[Iterable[Any]]) -> str:
    return _csv(rows)


def audit_pages(accounts: Accounts, period: Period, *, page: int = AUDIT_PAGE) -> Iterator[list[dict]]:
    """The audit entries of a period, oldest first, a page at a time (each page is one query)."""
    after = 0
    while True:
        rows = accounts.rows("SELECT * FROM audit WHERE ts >= ? AND ts < ? AND id > ? ORDER BY id "
                             "LIMIT ?", [period.start_ts, period.end_ts, after, page])
        if not rows:
            return
        yield rows
        after = rows[-1]["id"]


def audit_rows(entries: Iterable[dict], zone: ZoneInfo) -> Iterator[list[Any]]:
    for entry in entries:
        yield [entry["id"], iso(entry["ts"], zone), entry["actor"], entry["action"], entry["target"],
               entry["status"] if entry["status"] is not None else "", entry["ip"] or "", entry["detail"]]


def usage_rows(rows: Iterable[dict]) -> Iterator[list[Any]]:
    for row in rows:
        yield [row["day"], row["username"], row["role"], row["key_id"] or "", row["key_name"] or "",
               row["key_prefix"] or "", row["requests"], row["refused"], row["prompt_tokens"],
               row["completion_tokens"], row["total_tokens"]]


def audit_csv(accounts: Accounts, period: Period) -> str:
    """The whole audit CSV of a period as one text (the CLI; the server streams it page by page)."""
    entries = (entry for page in audit_pages(accounts, period) for entry in page)
    return csv_header(AUDIT_COLUMNS) + csv_body(audit_rows(entries, period.zone))


def usage_csv(rows: Iterable[dict]) -> str:
    return csv_header(USAGE_COLUMNS) + csv_body(usage_rows(rows))
