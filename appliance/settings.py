"""The appliance's one typed settings tree: defaults, a TOML file, then `APPLIANCE_*` env overrides."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appliance.errors import ConfigError

ENV_PREFIX = "APPLIANCE_"
CONFIG_ENV = "APPLIANCE_CONFIG"


IN_DATA_DIR = " A relative path is inside data_dir."


class InDataFolder(BaseModel):
    """Settings whose relative paths mean places in the data folder, wherever the shell is.

    `Settings` tells every part of its tree which data folder that is (again whenever data_dir
    or a part changes); a part built on its own knows none, and reads relative paths as given.
    """

    _data_dir: Path | None = PrivateAttr(None)

    def resolve(self, value: str | Path) -> Path:
        """A path setting's value as a path: `~` expanded, a relative one inside the data folder."""
        path = Path(value).expanduser()
        if path.is_absolute() or self._data_dir is None:
            return path
        return self._data_dir / path

    @model_validator(mode="after")
    def _tell_parts(self):
        _attach(self, self._data_dir)  # a part assigned here learns the data folder too
        return self


def _attach(model: BaseModel, data_dir: Path | None) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        for part in value if isinstance(value, list) else [value]:
            if isinstance(part, InDataFolder):
                part._data_dir = data_dir
                _attach(part, data_dir)


class Section(InDataFolder):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port the HTTP server listens on.")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted; bigger bodies get HTTP 413."
    )
    drain_seconds: float = Field(
        30.0, ge=0, description="On shutdown, how long in-flight requests may run before being cut."
    )
    ui: bool = Field(True, description="Serve the web UI: chat at /, the admin console at /admin.")


class EngineSettings(Section):
    model_path: str = Field(
        "", description="GGUF model file to serve; empty means the bundled SmolLM2-135M-Instruct."
        + IN_DATA_DIR
    )
    model_id: str = Field(
        "smollm2-135m-instruct", description="Model name shown by /v1/models and accepted in requests."
    )
    slots: int = Field(32, ge=1, le=256, description="Requests decoded together in one batch.")
    bundled_model_type: str = Field(
        "q8_0",
        description="llama.cpp type the bundled model is re-encoded to once (cached in data_dir); "
        "q8_0 batches far faster on CPU than the shipped q4_1; 'original' serves the file as is.",
    )
    kv_unified: bool = Field(
        False,
        description="One KV pool shared by all slots: concurrent requests can share a prompt "
        "prefix, but attention is slower; off gives each slot its own max_request_tokens cells.",
    )
    context_size: int = Field(
        0, ge=0, description="KV cells in all (only with kv_unified); 0 means slots x max_request_tokens."
    )
    max_request_tokens: int = Field(
        2048, ge=64, description="Per-request limit on prompt plus completion tokens."
    )
    batch_tokens: int = Field(
        512, ge=32, description="Most tokens (prefill chunks plus decodes) in one decode step."
    )
    threads: int = Field(0, ge=0, description="CPU threads for llama.cpp; 0 means all cores.")
    cpu_extra_buffers: bool = Field(
        False, description="Let llama.cpp use its extra CPU weight layouts (AMX tiles, repacked "
        "quantizations); off by default because the AMX path crashes on some Sapphire Rapids VMs."
    )
    admission_window_ms: float = Field(
        100.0, ge=0, description="Longest wait to gather a batch when the engine is idle."
    )
    admission_gap_ms: float = Field(
        5.0, ge=0, description="Stop gathering early once no request arrived for this long."
    )
    max_queue: int = Field(
        64, ge=0, description="Requests that may wait for a slot; beyond this they get HTTP 429."
    )
    default_max_tokens: int = Field(
        512, ge=1, description="Completion length when a request does not set max_tokens."
    )
    prefix_cache: bool = Field(
        True, description="Reuse the KV cache of a shared prompt prefix instead of recomputing it."
    )
    min_prefix_tokens: int = Field(
        16, ge=1, description="Shortest shared prefix worth reusing from another sequence."
    )


class UpstreamSettings(Section):
    base_url: str = Field("", description="OpenAI-compatible upstream, e.g. http://10.0.0.5:8000/v1.")
    model: str = Field("", description="Model name the upstream serves (sent in every request).")
    served_name: str = Field("", description="Name shown by /v1/models; empty means the upstream model name.")
    api_key: str = Field("", description="Bearer key for the upstream; prefer api_key_env for secrets.")
    api_key_env: str = Field(
        "APPLIANCE_UPSTREAM_API_KEY", description="Environment variable holding the upstream key."
    )
    connect_timeout: float = Field(3.0, gt=0, description="Seconds to wait for a connection.")
    read_timeout: float = Field(120.0, gt=0, description="Seconds to wait for the next bytes of an answer.")
    retries: int = Field(2, ge=0, le=10, description="Retries on connection errors, 429 and 5xx.")
    backoff_seconds: float = Field(0.25, ge=0, description="First retry delay; doubles each retry.")
    max_connections: int = Field(64, ge=1, description="Pooled connections kept to the upstream.")
    allow_public: bool = Field(
        False, description="Allow an upstream outside private/loopback addresses (off: air-gap rule)."
    )
    send_extensions: bool = Field(
        True, description="Send top_k, min_p and repeat_penalty (vLLM and llama.cpp accept them)."
    )
    default_max_tokens: int = Field(512, ge=1, description="max_tokens sent when a request sets none.")


class LLMSettings(Section):
    backend: str = Field("local", description="Which LLM answers: 'local' (llama.cpp engine) or 'openai' (upstream).")
    fallback: str = Field(
        "", description="Backend that answers while the upstream is down: '' (none) or 'local'."
    )
    outage_retry_seconds: float = Field(
        15.0, ge=0, description="During an outage, how long to use the fallback before trying the upstream again."
    )
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)


class CacheSettings(Section):
    enabled: bool = Field(True, description="Serve repeated deterministic requests from memory.")
    max_entries: int = Field(10_000, ge=1, description="Responses kept; the least recently used go.")
    ttl_seconds: float = Field(3600.0, gt=0, description="How long a cached response stays valid.")


class SourceSettings(InDataFolder):
    """One watched folder: its files are ingested on a schedule with these access groups."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                      description="Stable name: documents record it, and their names start with it.")
    path: str = Field(description="Folder to watch, e.g. a mounted SMB or NFS share." + IN_DATA_DIR)
    groups: list[str] = Field(default_factory=list, description="Access groups of its documents; "
                              "empty means knowledge.default_groups.")
    cron: str = Field("", description="Crontab (min hour day month weekday) of its runs, in "
                      "releases.timezone; empty means every interval_minutes.")
    interval_minutes: float = Field(60.0, ge=0, description="Minutes between runs when cron is "
                                    "empty; 0 runs it only on demand.")
    exclude: list[str] = Field(default_factory=lambda: ["~$*", "*.tmp", "Thumbs.db"],
                               description="File name patterns never ingested (Office lock files, ...).")

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        if value.strip():
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value.strip())
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a crontab (minute hour day month weekday, "
                                 f"e.g. '30 2 * * *'): {exc}") from exc
        return value.strip()

    def __repr__(self) -> str:  # keeps the settings table in docs/configuration.md readable
        return f"{self.name}: {self.path}"


class KnowledgeSettings(Section):
    enabled: bool = Field(True, description="Answer chat from the knowledge base (retrieval) by default.")
    embedder: str = Field("onnx", description="Embedder implementation; 'onnx' reads an int8 ONNX artifact.")
    embedder_path: str = Field(
        "", description="Embedder artifact folder; empty means <data_dir>/models/embedder."
        + IN_DATA_DIR
    )
    embedder_threads: int = Field(0, ge=0, description="onnxruntime threads; 0 means all cores.")
    embed_batch: int = Field(
        32, ge=1, le=1024, description="Most texts gathered from concurrent callers for one embedder "
        "call (an int8 embedder still runs them one text at a time: see `batch` in embedder.json)."
    )
    embed_window_ms: float = Field(
        100.0, ge=0, description="Longest wait to gather concurrent embedding requests into a batch."
    )
    vector_store: str = Field("faiss", description="Vector store: 'faiss' (embedded) or 'milvus'.")
    milvus_uri: str = Field(
        "", description="Milvus server URI or milvus-lite file; empty means <data_dir>/knowledge/milvus.db; "
        "a relative file is inside data_dir."
    )
    ivf_threshold: int = Field(
        50_000, ge=1, description="Chunks above which FAISS switches from exact search to an IVF index."
    )
    ivf_nprobe: int = Field(16, ge=1, description="IVF lists searched per query (recall vs speed).")
    chunk_tokens: int = Field(
        220, ge=40, description="Target passage size in estimated tokens (about 4 Latin characters "
        "or 1.5 Hangul syllables each); small sections join their neighbours up to it."
    )
    chunk_max_tokens: int = Field(
        380, ge=60, description="Largest passage in estimated tokens; longer sections are sliced "
        "(tables repeat their header row)."
    )
    heading_weight: int = Field(
        2, ge=0, le=10, description="How many times a passage's title and heading path count in "
        "the keyword index (a field weight)."
    )
    top_k: int = Field(4, ge=1, le=50, description="Sources retrieved for a grounded answer.")
    candidates: int = Field(50, ge=1, description="Candidates each of vector and keyword search feed to fusion.")
    rrf_k: int = Field(10, ge=1, description="Reciprocal rank fusion constant; larger flattens rank weights.")
    dense_weight: float = Field(
        0.3, ge=0, description="Weight of the vector ranking against BM25 in fusion for non-Korean queries."
    )
    korean_dense_weight: float = Field(
        0.05, ge=0, description="Weight of the vector ranking for Korean queries (the embedder is English-centric)."
    )
    glossary: bool = Field(
        True, description="Search Korean and English documents across languages with the built-in ERP glossary."
    )
    translated_weight: float = Field(
        0.8, ge=0, description="Weight of the other language's chunks (found through the glossary) in fusion."
    )
    min_similarity: float = Field(
        0.35, description="Cosine similarity at which a chunk counts as relevant by meaning."
    )
    min_keyword_coverage: float = Field(
        0.5, ge=0, le=1, description="Share of a question's key terms at which a chunk counts as relevant."
    )
    answer_reserve_tokens: int = Field(
        384, ge=16, description="Context kept free for the answer when max_tokens is not set."
    )
    default_groups: list[str] = Field(
        ["all"], description="Access groups of ingested documents, and of callers that name none."
    )
    ingest_sample_on_first_start: bool = Field(
        True, description="Ingest the bundled sample knowledge base when the data dir has none."
    )
    max_upload_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest document accepted by POST /api/documents "
        "(and read from a watched source)."
    )
    ocr: bool = Field(
        True, description="Read scanned PDF pages and images (PNG, JPEG, TIFF) with Tesseract when it "
        "is installed; without it such pages are reported as needing OCR."
    )
    ocr_languages: str = Field("kor+eng", description="Tesseract languages, joined with '+'.")
    ocr_page_mode: int = Field(
        4, ge=0, le=13, description="Tesseract page segmentation mode (--psm); 4, one column of text, "
        "keeps Korean lines that automatic layout (3) drops."
    )
    ocr_min_confidence: float = Field(
        70.0, ge=0, le=100, description="A page whose mean OCR word confidence is below this is "
        "reported as low-confidence in the ingest result (check the scan)."
    )
    ocr_timeout_seconds: float = Field(
        120.0, gt=0, description="Longest OCR of one page; past it the page is left out and reported."
    )
    sources: list[SourceSettings] = Field(
        default_factory=list, description="Watched folders ingested on a schedule (TOML: "
        "[[knowledge.sources]] tables; see docs/knowledge.md)."
    )

    @model_validator(mode="after")
    def _unique_source_names(self) -> KnowledgeSettings:
        names = [s.name for s in self.sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"knowledge.sources names must be unique; repeated: {', '.join(twice)}")
        return self


class AnswerSettings(Section):
    mode: Literal["auto", "extractive", "generative"] = Field(
        "auto", description="How grounded answers are made: 'extractive' quotes the selected evidence, "
        "'generative' lets the model write from it (verified, falling back to quotes), 'auto' picks per "
        "language whichever scored better for the serving version on the golden set (quotes until measured)."
    )
    evidence_tokens: int = Field(
        200, ge=40, le=2000, description="Size of the evidence set selected from the retrieved passages "
        "(estimated tokens): what an extractive answer quotes and what the model is given."
    )
    max_quotes: int = Field(3, ge=1, le=10, description="Most separate quotes (passages or sections) in the evidence.")
    rerank_candidates: int = Field(
        0, ge=0, le=100, description="Retrieved passages re-ranked by their best answering span before "
        "the top ones are used (a second retrieval stage; off: on the tune half it raised passage "
        "recall@5 slightly but lowered the good-answer rate)."
    )
    min_support: float = Field(
        0.2, ge=0, le=1, description="Share of the question's key terms the best evidence span must "
        "match; below it the appliance says it found nothing instead of quoting something unrelated."
    )
    verify_support: float = Field(
        0.6, ge=0, le=1, description="Share of a generated sentence's content that must occur in the "
        "evidence for the sentence to be kept (numbers and codes must occur exactly)."
    )
    min_generated_support: float = Field(
        0.5, ge=0, le=1, description="Share of a generated answer that must survive verification; "
        "below it the quoted evidence is added (or served instead when nothing survived)."
    )
    dry_multiplier: float = Field(
        0.8, ge=0, le=5, description="DRY repetition penalty for generated grounded answers (0 turns it off)."
    )
    max_answer_tokens: int = Field(
        160, ge=16, description="Length limit of a generated grounded answer when the request sets none."
    )
    follow_ups: bool = Field(
        True, description="Complete a follow-up question from the earlier turns of the conversation "
        "before searching (\"And who approves it?\")."
    )


class AlertRule(BaseModel):
    """One threshold: `aggregate` of `metric` over the last `window_seconds`, compared to `value`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Stable name; an alert is deduplicated by it.")
    metric: str = Field(description="A metric from `appliance metrics list`, e.g. latency_seconds.")
    aggregate: Literal["avg", "min", "max", "sum", "count", "rate", "p50", "p90", "p95", "p99", "last"] = "avg"
    window_seconds: float = Field(300.0, gt=0)
    comparison: Literal[">", ">=", "<", "<="] = ">"
    value: float
    severity: Literal["info", "warning", "critical"] = "warning"
    min_samples: int = Field(1, ge=1, description="Fewer data points in the window: no verdict.")

    def __repr__(self) -> str:  # keeps the settings table in docs/configuration.md readable
        return (f"{self.name}: {self.aggregate}({self.metric}, {self.window_seconds:g}s) "
                f"{self.comparison} {self.value:g} [{self.severity}]")


def _default_rules() -> list[AlertRule]:
    return [
        AlertRule(name="latency_p95", metric="latency_seconds", aggregate="p95", value=30.0,
                  min_samples=5),
        AlertRule(name="error_rate", metric="error", aggregate="avg", value=0.05,
                  severity="critical", min_samples=20),
        AlertRule(name="memory", metric="memory_used_percent", aggregate="avg", value=90.0),
        AlertRule(name="golden_accuracy", metric="golden_accuracy", aggregate="last",
                  window_seconds=7 * 86400, comparison="<", value=0.5),
        AlertRule(name="user_feedback", metric="feedback_positive", aggregate="avg",
                  window_seconds=86400, comparison="<", value=0.5, min_samples=10),
    ]


class MonitoringSettings(Section):
    enabled: bool = Field(
        True, description="Record request metrics and system samples, serve /metrics, run alert rules."
    )
    buffer_size: int = Field(
        10_000, ge=10, description="Events held in memory awaiting a write; beyond it they are dropped and counted."
    )
    flush_seconds: float = Field(1.0, gt=0, description="How often buffered events are written to SQLite.")
    sample_seconds: float = Field(10.0, gt=0, description="Interval of system samples (memory, CPU, queue, GPU).")
    maintenance_seconds: float = Field(
        60.0, gt=0, description="Interval of the rollup, retention and size-bound job."
    )
    raw_retention_hours: float = Field(
        48.0, gt=0, description="Per-request rows and raw samples kept this long; per-minute rollups remain."
    )
    minute_retention_days: float = Field(14.0, gt=0, description="Per-minute rollups kept this long; hourly remain.")
    hour_retention_days: float = Field(400.0, gt=0, description="Hourly rollups kept this long.")
    max_db_mb: float = Field(
        512.0, ge=1, description="Size bound of metrics.db; the oldest raw rows go first when it is exceeded."
    )
    golden_qa_path: str = Field(
        "", description="Golden QA set (JSONL: id, lang, question, answer, keywords); empty means the "
        "bundled one." + IN_DATA_DIR
    )
    golden_interval_hours: float = Field(
        24.0, ge=0, description="How often the golden QA set is run to score accuracy; 0 turns it off."
    )
    golden_max_tokens: int = Field(192, ge=1, description="Answer length limit for golden QA questions.")


class AlertSettings(Section):
    rules: list[AlertRule] = Field(
        default_factory=_default_rules, description="Thresholds (TOML: [[alerts.rules]] tables)."
    )
    evaluate_seconds: float = Field(15.0, gt=0, description="How often the rules are evaluated.")
    channels: list[str] = Field(
        default_factory=lambda: ["log"], description="Where alerts go: any of log, webhook, smtp."
    )
    webhook_url: str = Field("", description="On-prem URL that receives a JSON POST per alert change.")
    webhook_timeout_seconds: float = Field(5.0, gt=0, description="Timeout of one webhook POST.")
    smtp_host: str = Field("", description="On-prem SMTP relay for alert e-mail.")
    smtp_port: int = Field(25, ge=1, le=65535, description="Port of the SMTP relay.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str = Field("", description="SMTP login, if the relay needs one.")
    smtp_password: SecretStr = Field(
        SecretStr(""), description="SMTP password (prefer APPLIANCE_ALERTS__SMTP_PASSWORD)."
    )
    smtp_from: str = Field("appliance@localhost", description="Sender address of alert e-mail.")
    smtp_to: list[str] = Field(default_factory=list, description="Recipients of alert e-mail.")
    retry_attempts: int = Field(5, ge=1, description="Deliveries tried per alert and channel before giving up.")
    retry_base_seconds: float = Field(
        2.0, gt=0, description="First retry delay; it doubles on each further attempt."
    )


class ReleasesSettings(Section):
    models_dir: str = Field(
        "models", description="Folder of model versions (<name>/<version>/manifest.json): where "
        "imports go and new version folders are found." + IN_DATA_DIR
    )
    maintenance_cron: str = Field(
        "0 3 * * *", description="Crontab (min hour day month weekday) of the maintenance window for scheduled swaps."
    )
    timezone: str = Field(
        "UTC", description="Time zone the maintenance window, schedules and watched-source crontabs are read in."
    )
    load_timeout_seconds: float = Field(
        120.0, gt=0, description="Validation: how long the isolated test load of a model may take before it counts as hung."
    )
    golden_path: str = Field(
        "", description="Golden QA set (JSON lines with question, answer, keywords); empty means the "
        "bundled one." + IN_DATA_DIR
    )
    golden_limit: int = Field(0, ge=0, description="Golden questions asked per run; 0 means all of them.")
    golden_max_tokens: int = Field(96, ge=8, description="Longest answer generated per golden question.")
    golden_tolerance: float = Field(
        0.1, ge=0, le=1, description="A new version may score this much below the active one on the golden set."
    )
    golden_latency_ratio: float = Field(
        1.5, ge=1, description="Validation fails if the candidate's 95th-percentile golden answer time "
        "exceeds the serving version's, measured in the same run on the same machine, times this."
    )
    max_latency_seconds: float = Field(
        0.0, ge=0, description="Optional ceiling: validation fails if the 95th-percentile golden answer "
        "takes longer than this; 0 turns it off."
    )
    warmup_timeout_seconds: float = Field(
        60.0, gt=0, description="Swap: how long the warm-up generation on the new model may take."
    )
    probation_seconds: float = Field(
        1800.0, ge=0, description="After a swap, how long the new version is watched; 0 turns probation off."
    )
    probation_check_seconds: float = Field(30.0, gt=0, description="How often probation compares the versions.")
    probation_min_requests: int = Field(
        20, ge=1, description="Requests the new version must have served before its error rate and latency are judged."
    )
    max_error_rate_increase: float = Field(
        0.05, ge=0, le=1, description="Roll back if the error rate exceeds the previous version's by more than this."
    )
    max_latency_ratio: float = Field(
        2.0, ge=1, description="Roll back if p95 latency exceeds the previous version's times this."
    )
    max_feedback_drop: float = Field(
        0.2, ge=0, le=1, description="Roll back if the share of positive feedback drops by more than this."
    )
    probation_golden: bool = Field(
        True, description="Run the golden set on the new version when probation starts and compare its score."
    )


class DirectoryGroup(BaseModel):
    """Members of a directory group (nested members too) get this role and these access groups."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(description="The group's DN, or its cn alone (matches that cn anywhere).")
    role: Literal["employee", "admin"] = "employee"
    access_groups: list[str] = Field(default_factory=list, description="Document access groups.")

    def __repr__(self) -> str:  # keeps the settings table in docs/configuration.md readable
        return f"{self.group} -> {self.role} {self.access_groups}"


class DirectorySettings(Section):
    url: str = Field(
        "", description="LDAP server: ldaps://host (port 636) or ldap://host (389, upgraded with "
        "StartTLS); empty turns directory sign-in off."
    )
    allow_plain: bool = Field(
        False, description="With an ldap:// URL, skip StartTLS and send passwords unencrypted: only "
        "on a network segment you trust, never for Active Directory over a LAN."
    )
    ca_file: str = Field(
        "", description="PEM file of the CA certificates that signed the directory's certificate; "
        "empty means the system's CAs. The certificate and host name are always verified." + IN_DATA_DIR
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, description="Seconds to wait for a connection.")
    timeout_seconds: float = Field(10.0, gt=0, description="Seconds to wait for any one answer.")
    bind_dn: str = Field(
        "", description="Service account that searches for users and groups (a DN, or for Active "
        "Directory also user@domain); empty means users search as themselves (needs "
        "user_dn_template)."
    )
    bind_password: SecretStr = Field(
        SecretStr(""), description="The service account's password (prefer "
        "APPLIANCE_AUTH__DIRECTORY__BIND_PASSWORD)."
    )
    user_dn_template: str = Field(
        "", description="Bind as this DN without searching first, e.g. "
        "'uid={username},ou=people,dc=example,dc=com' or '{username}@corp.example' (the name is "
        "escaped); empty means the service account finds the user's DN."
    )
    user_search_base: str = Field(
        "", description="Where users are searched, e.g. 'ou=people,dc=example,dc=com' (required)."
    )
    user_filter: str = Field(
        "(|(uid={username})(sAMAccountName={username}))",
        description="LDAP filter that finds exactly one user; {username} is replaced by the "
        "escaped sign-in name. Exclude disabled accounts here (Active Directory: "
        "(!(userAccountControl:1.2.840.113556.1.4.803:=2))).",
    )
    display_name_attribute: str = Field(
        "displayName", description="Attribute shown as the user's name (cn when it is empty)."
    )
    group_search_base: str = Field(
        "", description="Where groups are searched; empty means user_search_base."
    )
    group_filter: str = Field(
        "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))",
        description="LDAP filter of group entries.",
    )
    member_attribute: str = Field(
        "member", description="Attribute of a group that lists its members' DNs."
    )
    nested_groups: Literal["auto", "in_chain", "recursive", "direct"] = Field(
        "auto", description="How nested groups are resolved: 'in_chain' (Active Directory's "
        "LDAP_MATCHING_RULE_IN_CHAIN, one search), 'recursive' (follow member links level by level, "
        "for OpenLDAP and others), 'direct' (no nesting), 'auto' (in_chain on Active Directory, "
        "else recursive)."
    )
    groups: list[DirectoryGroup] = Field(
        default_factory=list, description="Which directory groups may sign in, with what role and "
        "access groups (TOML: [[auth.directory.groups]] tables); a user in none of them is refused."
    )
    check_minutes: float = Field(
        15.0, ge=0, description="How often the server re-checks directory users who hold sessions or "
        "API keys, cutting those removed, disabled or out of every mapped group (needs bind_dn); "
        "0 checks only at sign-in."
    )


class AuthSettings(Section):
    enabled: bool = Field(
        True, description="Require a session or API key on /v1 and /api; off, every request acts as an "
        "admin: turn off only for local development."
    )
    session_hours: float = Field(12.0, gt=0, description="A UI login lasts this long without activity.")
    session_max_hours: float = Field(
        168.0, gt=0, description="A UI login ends this long after sign-in however active it is; "
        "then the user signs in again."
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto", description="Mark the session cookie Secure: 'auto' does so on HTTPS requests; use "
        "'always' behind a reverse proxy that terminates TLS."
    )
    min_password_length: int = Field(10, ge=8, le=256, description="Shortest password accepted for a user.")
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user name (four times as many per client address) "
        "before logins are refused for a while (HTTP 429)."
    )
    login_window_seconds: float = Field(
        900.0, gt=0, description="Window over which failed logins count, and how long the refusal lasts."
    )
    protect_metrics: bool = Field(
        False, description="Require an admin key or session on the Prometheus /metrics endpoint too."
    )
    audit_retention_days: int = Field(
        365, ge=0, description="Audit log entries older than this many days are deleted (checked "
        "hourly by the server); 0 keeps them forever."
    )
    directory: DirectorySettings = Field(default_factory=DirectorySettings)


class QuotaSettings(Section):
    employee_requests_per_minute: int = Field(
        60, ge=0, description="Requests an employee may send per minute to chat, completions, "
        "embeddings and search (sessions and keys together); 0: no limit."
    )
    employee_tokens_per_day: int = Field(
        200_000, ge=0, description="Prompt plus completion tokens an employee may use per day; 0: no limit."
    )
    admin_requests_per_minute: int = Field(0, ge=0, description="The same per-minute limit for admins; 0: no limit.")
    admin_tokens_per_day: int = Field(0, ge=0, description="The same daily token limit for admins; 0: no limit.")
    timezone: str = Field(
        "UTC", description="Time zone of the quota day (daily tokens reset at its midnight) and of "
        "the days and times in usage and audit exports, e.g. Asia/Seoul."
    )
    flush_seconds: float = Field(
        1.0, gt=0, description="How often usage counted in memory is written to accounts.db; a "
        "crash loses at most this much."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone; use a name such as UTC or Asia/Seoul") from None
        return value


def _crontab(value: str) -> str:
    if value:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a crontab expression such as '30 2 * * *' ({exc})") from exc
    return value


class BackupSettings(Section):
    schedule: Annotated[str, AfterValidator(_crontab)] = Field(
        "", description="Crontab (min hour day month weekday) of automatic backups while the server "
        "runs, e.g. '30 2 * * *'; empty turns them off."
    )
    dir: str = Field("", description="Folder of automatic backups; empty means <data_dir>/backups." + IN_DATA_DIR)
    keep: int = Field(7, ge=1, description="Automatic backups kept; older ones are deleted.")
    with_models: bool = Field(
        False, description="Copy model files into automatic backups too (else they are referenced by checksum)."
    )


class Settings(BaseSettings):
    """Everything the appliance can be told; see docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    data_dir: Path = Field(
        Path("~/.local/share/erp-appliance"),
        description="Folder for the appliance's databases, indexes, logs and model versions; the "
        "other path settings' relative paths are inside it. A relative data_dir is read from the "
        "settings file's folder (in the file) or the working directory (--data-dir, environment).",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning or error.")
    server: ServerSettings = Field(default_factory=ServerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    answers: AnswerSettings = Field(default_factory=AnswerSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    releases: ReleasesSettings = Field(default_factory=ReleasesSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments (the CLI flags and the TOML file, merged by load_settings) lose to env.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _tell_parts(self):
        _attach(self, self.resolved_data_dir())  # again on every change of data_dir or a section
        return self

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def resolve(self, value: str | Path) -> Path:
        """A path setting's value as a path: `~` expanded, a relative one inside the data folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.resolved_data_dir() / path


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, a TOML file (or $APPLIANCE_CONFIG), env, then `overrides`.

    `overrides` (from CLI flags) are nested dicts like {"server": {"port": 9000}} and win over all.
    """
    path = config_path or os.environ.get(CONFIG_ENV)
    file_values: dict[str, Any] = {}
    if path:
        path = Path(path).expanduser()
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist; check --config / {CONFIG_ENV}.")
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from exc
        data_dir = file_values.get("data_dir")
        if isinstance(data_dir, str) and not Path(data_dir).expanduser().is_absolute():
            # The file's data folder, wherever the command that reads it runs.
            file_values["data_dir"] = str((path.resolve().parent / data_dir).resolve())
    try:
        settings = Settings(**file_values)
        for key, value in overrides.items():
            if isinstance(value, dict):
                section = getattr(settings, key)
                for sub_key, sub_value in value.items():
                    setattr(section, sub_key, sub_value)
            else:
                setattr(settings, key, value)
        if not settings.data_dir.expanduser().is_absolute():
            settings.data_dir = settings.resolved_data_dir()  # fixed now: a later chdir changes nothing
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from exc
    return settings


def _explain(exc: ValidationError, path: str | Path | None) -> str:
    where = f" (config file {path}, or {ENV_PREFIX}* environment variables)" if path else ""
    lines = [f"Invalid settings{where}:"]
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {name}: {err['msg']}")
    lines.append("See docs/configuration.md for every setting and its allowed values.")
    return "\n".join(lines)


def iter_settings(model: type[BaseModel] = Settings, prefix: str = ""):
    """Yield (dotted name, type name, default, help) for every setting, sections flattened."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            yield from iter_settings(annotation, f"{prefix}{name}.")
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        type_name = getattr(annotation, "__name__", str(annotation))
        yield f"{prefix}{name}", type_name, default, field.description or ""


def settings_markdown() -> str:
    """The settings reference table that docs/configuration.md embeds."""
    rows = ["| setting | env variable | type | default | meaning |", "|---|---|---|---|---|"]
    for name, type_name, default, help_text in iter_settings():
        env = ENV_PREFIX + name.upper().replace(".", "__")
        shown = f"`{default}`" if str(default) != "" else '`""`'
        # A '|' (as in LDAP filters) would end the table cell, even inside backticks.
        shown, help_text = shown.replace("|", "\\|"), help_text.replace("|", "\\|")
        rows.append(f"| `{name}` | `{env}` | {type_name} | {shown} | {help_text} |")
    return "\n".join(rows) + "\n"
