"""The appliance's one typed settings tree: defaults, a TOML file, then `APPLIANCE_*` env overrides."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appliance.errors import ConfigError

ENV_PREFIX = "APPLIANCE_"
CONFIG_ENV = "APPLIANCE_CONFIG"


class Section(BaseModel):
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


class KnowledgeSettings(Section):
    enabled: bool = Field(True, description="Answer chat from the knowledge base (retrieval) by default.")
    embedder: str = Field("onnx", description="Embedder implementation; 'onnx' reads an int8 ONNX artifact.")
    embedder_path: str = Field(
        "", description="Embedder artifact folder; empty means <data_dir>/models/embedder."
    )
    embedder_threads: int = Field(0, ge=0, description="onnxruntime threads; 0 means all cores.")
    embed_batch: int = Field(32, ge=1, le=1024, description="Most texts embedded in one model call.")
    embed_window_ms: float = Field(
        100.0, ge=0, description="Longest wait to gather concurrent embedding requests into a batch."
    )
    vector_store: str = Field("faiss", description="Vector store: 'faiss' (embedded) or 'milvus'.")
    milvus_uri: str = Field(
        "", description="Milvus server URI or milvus-lite file; empty means <data_dir>/knowledge/milvus.db."
    )
    ivf_threshold: int = Field(
        50_000, ge=1, description="Chunks above which FAISS switches from exact search to an IVF index."
    )
    ivf_nprobe: int = Field(16, ge=1, description="IVF lists searched per query (recall vs speed).")
    chunk_chars: int = Field(900, ge=100, description="Largest chunk, in characters.")
    chunk_overlap: int = Field(150, ge=0, description="Characters neighbouring chunks share.")
    top_k: int = Field(4, ge=1, le=50, description="Sources retrieved for a grounded answer.")
    candidates: int = Field(50, ge=1, description="Candidates each of vector and keyword search feed to fusion.")
    rrf_k: int = Field(10, ge=1, description="Reciprocal rank fusion constant; larger flattens rank weights.")
    dense_weight: float = Field(
        0.3, ge=0, description="Weight of the vector ranking against BM25 in fusion for non-Korean queries."
    )
    korean_dense_weight: float = Field(
        0.15, ge=0, description="Weight of the vector ranking for Korean queries (the embedder is English-centric)."
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
        50 * 1024 * 1024, ge=1024, description="Largest document accepted by POST /api/documents."
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
        "", description="Golden QA set (JSONL: id, lang, question, answer, keywords); empty means the bundled one."
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
        "models", description="Folder of model versions (<name>/<version>/manifest.json); relative to the working directory."
    )
    maintenance_cron: str = Field(
        "0 3 * * *", description="Crontab (min hour day month weekday) of the maintenance window for scheduled swaps."
    )
    timezone: str = Field("UTC", description="Time zone the maintenance window and schedules are read in.")
    load_timeout_seconds: float = Field(
        120.0, gt=0, description="Validation: how long the isolated test load of a model may take before it counts as hung."
    )
    golden_path: str = Field(
        "", description="Golden QA set (JSON lines with question, answer, keywords); empty means the bundled one."
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


class Settings(BaseSettings):
    """Everything the appliance can be told; see docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    data_dir: Path = Field(
        Path("~/.local/share/erp-appliance"),
        description="Folder for the appliance's databases, indexes and logs.",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning or error.")
    server: ServerSettings = Field(default_factory=ServerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    releases: ReleasesSettings = Field(default_factory=ReleasesSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)

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

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()


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
    try:
        settings = Settings(**file_values)
        for key, value in overrides.items():
            if isinstance(value, dict):
                section = getattr(settings, key)
                for sub_key, sub_value in value.items():
                    setattr(section, sub_key, sub_value)
            else:
                setattr(settings, key, value)
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
        rows.append(f"| `{name}` | `{env}` | {type_name} | {shown} | {help_text} |")
    return "\n".join(rows) + "\n"
