"""The appliance's one typed settings tree: defaults, a TOML file, then `APPLIANCE_*` env overrides."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
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


class CacheSettings(Section):
    enabled: bool = Field(True, description="Serve repeated deterministic requests from memory.")
    max_entries: int = Field(10_000, ge=1, description="Responses kept; the least recently used go.")
    ttl_seconds: float = Field(3600.0, gt=0, description="How long a cached response stays valid.")


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
    cache: CacheSettings = Field(default_factory=CacheSettings)

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
        shown = f"`{default}`" if default != "" else '`""`'
        rows.append(f"| `{name}` | `{env}` | {type_name} | {shown} | {help_text} |")
    return "\n".join(rows) + "\n"
