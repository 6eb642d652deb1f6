"""Alert rules: a spike raises exactly one alert that later resolves; channels deliver and retry."""

from __future__ import annotations

import time

import pytest

from appliance.errors import ConfigError
from appliance.monitoring.alerts import AlertManager
from appliance.monitoring.channels import CHANNELS, AlertNotice, WebhookChannel, build_channels
from appliance.monitoring.collector import RequestEvent
from appliance.monitoring.delivery import Dispatcher
from appliance.settings import AlertRule, AlertSettings

from .conftest import free_port

P95_LATENCY = AlertRule(name="latency_p95", metric="latency_seconds", aggregate="p95",
                        window_seconds=60, comparison=">", value=5.0, severity="warning", min_samples=5)
ERROR_RATE = AlertRule(name="error_rate", metric="error", aggregate="avg", window_seconds=60,
                       comparison=">", value=0.2, severity="critical", min_samples=5)


def traffic(store, start: float, seconds: int, latency: float, status: int = 200) -> None:
    store.insert("requests", [
        RequestEvent(ts=start + i, route="/v1/chat/completions", status=status, latency_s=latency).row()
        for i in range(seconds)])


@pytest.mark.parametrize("rule,spike", [(P95_LATENCY, {"latency": 12.0}),
                                        (ERROR_RATE, {"latency": 0.1, "status": 500})])
def test_a_spike_raises_exactly_one_alert_and_resolves_it(store, rule, spike):
    manager = AlertManager(store, [rule])
    t = 1_800_000_000.0
    traffic(store, t, 60, latency=1.0)
    assert manager.evaluate(now=t + 60) == []

    traffic(store, t + 60, 60, **spike)
    fired = [manager.evaluate(now=t + 120 + k) for k in range(0, 30, 5)]  # still breached each time
    notices = [n for batch in fired for n in batch]
    assert [(n.rule, n.state) for n in notices] == [(rule.name, "firing")]
    assert len(store.firing_alerts()) == 1

    traffic(store, t + 150, 120, latency=1.0)
    resolved = manager.evaluate(now=t + 270)
    assert [(n.rule, n.state) for n in resolved] == [(rule.name, "resolved")]
    assert manager.evaluate(now=t + 275) == []

    [alert] = store.alerts()
    assert alert["state"] == "resolved" and alert["resolved_at"] == t + 270
    assert [h["kind"] for h in alert["history"]] == ["fired", "resolved"]


def test_a_firing_alert_is_not_announced_again_after_a_restart(store):
    t = 1_800_000_000.0
    traffic(store, t, 60, latency=12.0)
    assert len(AlertManager(store, [P95_LATENCY]).evaluate(now=t + 60)) == 1
    assert AlertManager(store, [P95_LATENCY]).evaluate(now=t + 61) == []  # a new manager, same store


def test_an_alert_resolves_when_its_window_runs_out_of_data(store):
    t = 1_800_000_000.0
    traffic(store, t, 60, latency=12.0)
    manager = AlertManager(store, [P95_LATENCY])
    assert [n.state for n in manager.evaluate(now=t + 60)] == ["firing"]
    assert manager.evaluate(now=t + 100) == []  # fewer than min_samples left: unchanged
    assert [n.state for n in manager.evaluate(now=t + 200)] == ["resolved"]  # traffic stopped


def test_too_few_samples_give_no_verdict(store):
    t = 1_800_000_000.0
    traffic(store, t, 3, latency=60.0)
    manager = AlertManager(store, [P95_LATENCY])
    assert manager.evaluate(now=t + 10) == []
    assert manager.last_verdicts["latency_p95"].breached is None


def test_webhook_receiver_on_localhost_gets_the_alert(store, webhook):
    receiver = webhook()
    channel = WebhookChannel(AlertSettings(channels=["webhook"], webhook_url=receiver.url))
    manager = AlertManager(store, [P95_LATENCY])
    dispatcher = Dispatcher([channel], attempts=3, base_delay=0.05, on_result=manager.record_delivery)
    manager.dispatcher = dispatcher
    dispatcher.start()
    try:
        t = time.time() - 60
        traffic(store, t, 60, latency=12.0)
        manager.evaluate(now=t + 60)
        [body] = receiver.wait_for(1)
        assert body["rule"] == "latency_p95" and body["state"] == "firing"
        assert body["value"] == 12.0 and body["threshold"] == 5.0 and body["severity"] == "warning"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(store.alerts()[0]["history"]) < 2:
            time.sleep(0.02)
        assert store.alerts()[0]["history"][-1]["kind"] == "notify_delivered"
    finally:
        dispatcher.stop()


def test_a_failing_channel_is_retried_with_backoff(store, webhook):
    receiver = webhook(fail_first=2)
    channel = WebhookChannel(AlertSettings(channels=["webhook"], webhook_url=receiver.url))
    dispatcher = Dispatcher([channel], attempts=4, base_delay=0.05)
    dispatcher.start()
    try:
        t = time.time() - 60
        traffic(store, t, 60, latency=12.0)
        manager = AlertManager(store, [P95_LATENCY], dispatcher)
        started = time.monotonic()
        manager.evaluate(now=t + 60)
        assert len(receiver.wait_for(1)) == 1
        assert receiver.attempts == 3
        assert time.monotonic() - started >= 0.05 + 0.1  # two backoff waits: 0.05 s, then 0.1 s
    finally:
        dispatcher.stop()


def test_a_dead_webhook_gives_up_without_blocking_evaluation(store):
    dead = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens there
    channel = WebhookChannel(AlertSettings(channels=["webhook"], webhook_url=dead))
    manager = AlertManager(store, [P95_LATENCY])
    # The retry waits 3 s: evaluation must return while the delivery is still being retried.
    manager.dispatcher = Dispatcher([channel], attempts=2, base_delay=3.0,
                                    on_result=manager.record_delivery)
    manager.dispatcher.start()
    try:
        t = time.time() - 60
        traffic(store, t, 60, latency=12.0)
        assert len(manager.evaluate(now=t + 60)) == 1
        assert manager.dispatcher.failed == 0  # not given up yet: evaluation did not wait for it
        deadline = time.monotonic() + 30
        kinds: list[str] = []
        # The failure is counted, then recorded in the alert's history: wait for both.
        while len(kinds) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
            kinds = [h["kind"] for h in store.alerts()[0]["history"]]
        assert manager.dispatcher.failed == 1
        assert kinds == ["fired", "notify_failed"]
    finally:
        manager.dispatcher.stop()


def test_smtp_channel_mails_the_relay(smtp_relay):
    settings = AlertSettings(channels=["smtp"], smtp_host="127.0.0.1", smtp_port=smtp_relay.port,
                             smtp_to=["ops@example.test"])
    [channel] = build_channels(settings)
    channel.send(AlertNotice(alert_id=1, rule="memory", state="firing", severity="warning",
                             metric="memory_used_percent", value=93.0, threshold=90.0,
                             message="memory is high", ts=time.time()))
    [mail] = smtp_relay.messages
    assert mail["rcpt"] == ["ops@example.test"]
    assert "Subject: [appliance warning] memory firing" in mail["data"]


def test_unknown_channel_and_missing_settings_fail_with_advice():
    with pytest.raises(ConfigError, match="use any of: log, webhook, smtp"):
        build_channels(AlertSettings(channels=["pager"]))
    with pytest.raises(ConfigError, match="alerts.webhook_url"):
        build_channels(AlertSettings(channels=["webhook"]))
    with pytest.raises(ConfigError, match="alerts.smtp_host"):
        build_channels(AlertSettings(channels=["smtp"]))
    assert set(CHANNELS) == {"log", "webhook", "smtp"}


def test_rules_with_unknown_metrics_are_refused_at_start(store):
    bad = AlertRule(name="x", metric="latency", value=1)
    with pytest.raises(ConfigError, match="unknown metric 'latency'"):
        AlertManager(store, [bad])
