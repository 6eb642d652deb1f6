"""FallbackBackend's memory of outages stays bounded on an appliance that runs for months."""

from __future__ import annotations

from appliance.llm.fallback import KEPT_OUTAGES, FallbackBackend
from appliance.llm.upstream import UpstreamBackend
from appliance.settings import UpstreamSettings
from tests.conftest import free_port


def test_the_outage_record_keeps_only_the_newest(shared_backend):
    upstream = UpstreamBackend(UpstreamSettings(base_url=f"http://127.0.0.1:{free_port()}/v1",
                                                model="erp-large", retries=0))
    backend = FallbackBackend(upstream, shared_backend, retry_seconds=0)
    for i in range(KEPT_OUTAGES + 50):  # a flapping upstream: every outage begins and ends
        backend._begin_outage(f"outage {i}")
        backend._end_outage()
    assert len(backend.outages) == KEPT_OUTAGES
    assert backend.outages[-1]["reason"] == f"outage {KEPT_OUTAGES + 49}"
    assert backend.outages[-1]["ended_at"] is not None
    shown = backend.status()["outages"]
    assert len(shown) == 20 and shown[-1]["reason"] == f"outage {KEPT_OUTAGES + 49}"
