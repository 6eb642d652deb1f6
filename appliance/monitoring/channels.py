"""Alert channels: one small seam (`AlertChannel.send`) and a registry keyed by settings strings."""

from __future__ import annotations

import json
import logging
import smtplib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from email.message import EmailMessage

import httpx

from appliance.errors import ConfigError
from appliance.settings import AlertSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertNotice:
    """What a channel is told when an alert fires or resolves."""

    alert_id: int
    rule: str
    state: str  # "firing" | "resolved"
    severity: str
    metric: str
    value: float | None
    threshold: float
    message: str
    ts: float

    def subject(self) -> str:
        return f"[appliance {self.severity}] {self.rule} {self.state}"

    def as_dict(self) -> dict:
        return asdict(self)


class AlertChannel(ABC):
    """Delivers a notice; raises on failure (the dispatcher retries)."""

    name: str

    @abstractmethod
    def send(self, notice: AlertNotice) -> None: ...


class LogChannel(AlertChannel):
    name = "log"

    def send(self, notice: AlertNotice) -> None:
        level = logging.WARNING if notice.state == "firing" else logging.INFO
        log.log(level, "ALERT %s: %s", notice.subject(), notice.message)


class WebhookChannel(AlertChannel):
    """POSTs the notice as JSON to an on-prem URL; any non-2xx answer counts as a failure."""

    name = "webhook"

    def __init__(self, settings: AlertSettings):
        if not settings.webhook_url:
            raise ConfigError("The webhook alert channel needs alerts.webhook_url "
                              "(APPLIANCE_ALERTS__WEBHOOK_URL); set it or remove 'webhook' from alerts.channels.")
        self.url = settings.webhook_url
        self.timeout = settings.webhook_timeout_seconds

    def send(self, notice: AlertNotice) -> None:
        response = httpx.post(self.url, json=notice.as_dict(), timeout=self.timeout)
        response.raise_for_status()


class SmtpChannel(AlertChannel):
    """E-mail through an on-prem SMTP relay."""

    name = "smtp"

    def __init__(self, settings: AlertSettings):
        if not settings.smtp_host or not settings.smtp_to:
            raise ConfigError("The smtp alert channel needs alerts.smtp_host and alerts.smtp_to; "
                              "set them or remove 'smtp' from alerts.channels.")
        self.settings = settings

    def send(self, notice: AlertNotice) -> None:
        s = self.settings
        mail = EmailMessage()
        mail["Subject"] = notice.subject()
        mail["From"] = s.smtp_from
        mail["To"] = ", ".join(s.smtp_to)
        mail.set_content(f"{notice.message}\n\n{json.dumps(notice.as_dict(), indent=2)}\n")
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.webhook_timeout_seconds) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(mail)


CHANNELS: dict[str, type[AlertChannel]] = {"log": LogChannel, "webhook": WebhookChannel,
                                           "smtp": SmtpChannel}


def build_channels(settings: AlertSettings) -> list[AlertChannel]:
    channels = []
    for name in settings.channels:
        cls = CHANNELS.get(name)
        if cls is None:
            raise ConfigError(f"Unknown alert channel {name!r} in alerts.channels; "
                              f"use any of: {', '.join(CHANNELS)}.")
        channels.append(cls() if cls is LogChannel else cls(settings))
    return channels
