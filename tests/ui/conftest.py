"""Browser tests of the web UI: Debian's Chromium driven by Playwright against the real appliance
(real model, real embedder and knowledge base, real accounts), served on loopback."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appliance.accounts import Accounts
from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path
from appliance.llm.base import LLMBackend
from appliance.settings import load_settings
from tests.conftest import LentBackend, close_backend

CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed: without these flags Chromium stalls on update, sync and
# QUIC connections it cannot make.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

ADMIN = ("admin", "admin-password-1")
EMPLOYEE = ("jisoo", "employee-password-1")
OUTSIDER_GROUP = "finance"  # the admin is in it, the employee is not
# A small corpus, English and Korean: enough for grounded answers with several sources.
CORPUS = ["purchasing/purchase-order-approval.md", "hr/overtime-policy.md",
          "hr/annual-leave-request-ko.md"]
CONTEXT = 2048  # tokens per request for the UI's backends
PHONE = {"width": 375, "height": 740}
LAPTOP = {"width": 1280, "height": 800}


def launch(playwright):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package "
                    "(`./dev setup` does, through installer/system-deps.sh).")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def ui_backend(engine_settings):
    """The real bundled model; grounded prompts need more context than the default test engine
    (a generated answer's prompt, instructions and evidence, runs past 1,024 tokens)."""
    from appliance.llm.local import LocalBackend

    backend = LocalBackend(engine_settings(max_request_tokens=CONTEXT, default_max_tokens=48, slots=2))
    yield backend
    close_backend(backend)


@pytest.fixture
def own_backend(engine_settings):
    """Backends with engine settings of their own, closed when the test ends."""
    from appliance.llm.local import LocalBackend

    made = []

    def make(**engine) -> LLMBackend:
        made.append(LocalBackend(engine_settings(**engine)))
        return made[-1]

    yield make
    for backend in made:
        close_backend(backend)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name in CORPUS:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_kb_path() / name, target)
    return root


@pytest.fixture(scope="session")
def knowledge_template(tmp_path_factory, embedder, embedder_dir, corpus) -> Path:
    """The corpus ingested once; each test's appliance starts from a copy of this data dir."""
    data = tmp_path_factory.mktemp("knowledge-template")
    settings = load_settings(data_dir=data)
    settings.knowledge.embedder_path = str(embedder_dir)
    knowledge = KnowledgeBase.open(settings, embedder=embedder)
    report = knowledge.ingest([corpus])
    assert not report.failed and report.chunks, report.as_dict()
    knowledge.close()
    return data


@dataclass
class Appliance:
    url: str
    server: object
    knowledge: KnowledgeBase
    settings: object

    @property
    def accounts(self) -> Accounts:
        return self.server.app.state.accounts

    @property
    def monitor(self):
        return self.server.app.state.monitor

    def user(self, username: str):
        return self.accounts.by_name(username)


@pytest.fixture
def appliance_factory(tmp_path, live_server, ui_backend, embedder, embedder_dir, knowledge_template,
                      engine_settings):
    """Start the appliance with auth on, the small corpus, an admin and an employee."""
    started = []

    def start(*, max_tokens: int | None = None, backend: LLMBackend | None = None,
              own_model: bool = False, **settings_changes) -> Appliance:
        """`own_model`: the server loads the configured model itself, registering it as a
        version (as a real start does), instead of borrowing the session's backend."""
        data = tmp_path / f"data{len(started)}"
        shutil.copytree(knowledge_template, data)
        settings = load_settings(data_dir=data)
        settings.auth.enabled = True  # beats the suite's APPLIANCE_AUTH__ENABLED=false
        settings.knowledge.embedder_path = str(embedder_dir)
        settings.engine = engine_settings(max_request_tokens=CONTEXT, default_max_tokens=48, slots=2)
        settings.monitoring.golden_interval_hours = 0  # no accuracy run competing for the model
        for dotted, value in settings_changes.items():
            section, name = dotted.split("__")
            setattr(getattr(settings, section), name, value)
        knowledge = KnowledgeBase.open(settings, embedder=embedder)
        backend = backend or ui_backend
        backend = LongAnswers(backend, max_tokens) if max_tokens is not None else LentBackend(backend)
        server = live_server(settings, None if own_model else backend, knowledge=knowledge)
        server.wait_ready(120)
        accounts = server.app.state.accounts
        accounts.create_user(ADMIN[0], ADMIN[1], role="admin", groups=["all", OUTSIDER_GROUP],
                             display_name="Kim Admin")
        accounts.create_user(EMPLOYEE[0], EMPLOYEE[1], role="employee", groups=["all"],
                             display_name="Park Jisoo")
        appliance = Appliance(server.url, server, knowledge, settings)
        started.append(appliance)
        return appliance

    yield start
    for appliance in started:
        appliance.server.__exit__(None, None, None)  # stop serving before the knowledge base closes
        appliance.knowledge.close()


class LongAnswers(LentBackend):
    """The real backend, with answers allowed to run long (for stopping one mid-stream)."""

    def __init__(self, backend: LLMBackend, max_tokens: int):
        super().__init__(backend)
        self.max_tokens = max_tokens

    async def start(self, request):
        from dataclasses import replace

        params = replace(request.params, max_tokens=self.max_tokens)
        return await self.backend.start(replace(request, params=params))


@pytest.fixture
def appliance(appliance_factory) -> Appliance:
    return appliance_factory()


@pytest.fixture
def new_page(browser):
    """Pages in fresh browser contexts (own cookies and storage); closed after the test."""
    contexts = []

    def make(*, locale: str = "en-US", viewport: dict | None = None):
        context = browser.new_context(locale=locale, viewport=viewport or LAPTOP)
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()


def login(page, base_url: str, credentials: tuple[str, str], path: str = "/") -> None:
    page.goto(f"{base_url}{path}")
    page.wait_for_selector("#login-form")
    page.fill("#username", credentials[0])
    page.fill("#password", credentials[1])
    page.click("#login-submit")
    page.wait_for_url(f"{base_url}{path}")


def eventually(page, script: str, timeout: float = 30) -> None:
    """Poll a page expression until it is true (wait_for_function evals, which the CSP forbids)."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {script}")
        time.sleep(0.1)


def api_session(page, base_url: str) -> httpx.Client:
    """An HTTP client on the page's session cookie and CSRF token, as the page's own code is."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies(base_url)}
    client = httpx.Client(base_url=base_url, cookies=cookies, timeout=120)
    me = client.get("/api/auth/me").raise_for_status().json()
    client.headers["X-CSRF-Token"] = me["csrf_token"]
    return client
