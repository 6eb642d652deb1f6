"""Property-based fuzzing of every endpoint from the generated OpenAPI schema: never a 5xx."""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, engine_settings, embedder_dir):
    from appliance.llm.local import LocalBackend
    from appliance.server.app import create_app
    from appliance.settings import Settings
    from tests.conftest import LiveServer

    app_settings = Settings(data_dir=tmp_path_factory.mktemp("fuzz"))
    # A short context keeps each generated request quick; over-long inputs must still get a 4xx.
    app_settings.engine = engine_settings(max_request_tokens=160, default_max_tokens=8, slots=8,
                                          max_queue=64)
    # Every endpoint live: the knowledge base with its embedder, without the sample documents.
    app_settings.knowledge.embedder_path = str(embedder_dir)
    app_settings.knowledge.ingest_sample_on_first_start = False
    # Auth on, as shipped; the fuzzer calls every endpoint, admin ones included, as an admin.
    app_settings.auth.enabled = True
    with LiveServer(create_app(app_settings, LocalBackend(app_settings.engine))) as server:
        server.wait_ready()
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/ready").json()["retrieval"]["status"] != "ready":
            assert time.monotonic() < deadline, "retrieval did not become ready"
            time.sleep(0.1)
        yield server


@pytest.fixture(scope="module")
def admin_headers(fuzz_server):
    """Headers with a live admin key: the fuzzer may well revoke the key it calls with (DELETE
    /api/admin/keys/1), so each case checks it and makes a new one when needed."""
    accounts = fuzz_server.app.state.accounts
    admin = accounts.create_user("fuzz-admin", None, role="admin")
    current = {"key": accounts.create_key(admin.id, "fuzz")[0]}

    def headers() -> dict[str, str]:
        if accounts.key_user(current["key"]) is None:
            current["key"] = accounts.create_key(admin.id, "fuzz")[0]
        return {"Authorization": f"Bearer {current['key']}"}

    return headers


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/schema/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_the_server_fail(api_schema, fuzz_server, admin_headers, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert any(op.path == "/v1/chat/completions" for op in operations)
    reached_engine = []
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to break in a parameterless GET

        @given(case=operation.as_strategy(mode), real_model=st.booleans())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def never_5xx(case, real_model):
            if real_model and isinstance(case.body, dict):
                # Half the cases get past the model and message checks, so that the fuzzed sampling
                # parameters reach the engine.
                case.body["model"] = "smollm2-135m-instruct"
                if case.path.endswith("/chat/completions"):
                    case.body["messages"] = [{"role": "user", "content": "Hi"}]
                else:
                    case.body["prompt"] = "Hi"
            response = case.call(base_url=fuzz_server.url, timeout=60, headers=admin_headers())
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
            if response.status_code == 200 and case.method == "POST":
                reached_engine.append(case.path)
            if response.status_code >= 400 and case.path.startswith("/v1/"):
                error = response.json()["error"]
                assert error["message"] and error["type"]

        try:
            never_5xx()
        except Unsatisfiable:
            if mode is not GenerationMode.NEGATIVE:
                raise  # in negative mode, an operation may have nothing that can be made invalid
    if mode is GenerationMode.POSITIVE:
        assert reached_engine, "no generated request got through to the model"
