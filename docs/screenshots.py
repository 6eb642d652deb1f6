"""Screenshots of the web UI's main screens, for the README.

Starts the appliance in this process (the bundled model, part of the sample knowledge base, auth
on, an admin and an employee), drives Debian's Chromium through Playwright as those users, and
writes small PNGs to docs/screenshots/. Every answer, chart and table on them is real.

    .venv/bin/python docs/screenshots.py [--out docs/screenshots] [--cache var/screenshots-cache]

The first run re-encodes the bundled model and exports the embedder into the cache (minutes);
later runs take about as long as the answers do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["APPLIANCE_AUTH__ENABLED"] = "true"

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars"]
AREAS = ("purchasing", "hr", "accounting")
ADMIN = ("admin", "admin-password-1", "Kim Minjun")
EMPLOYEE = ("jisoo", "employee-password-1", "Park Jisoo")
QUESTION = "Who approves a purchase order over 30 million won?"
PHONE_QUESTION = "연차 휴가는 어떻게 신청하나요?"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 760}
ANSWER_TIMEOUT = 600_000


def embedder_dir(cache: Path) -> Path:
    folder = cache / "embedder"
    if not (folder / "embedder.json").is_file():
        print(f"exporting the int8 embedder to {folder} (once) ...")
        subprocess.run([sys.executable, "-c", "from appliance_build.cli import main; main()",
                        "embedder", "--out", str(folder)], check=True)
    return folder


def model_version(models: Path, gguf: Path, name: str, version: str) -> None:
    """A version folder as the build writes it (the bundled model, linked, with its manifest)."""
    from appliance import manifest

    folder = models / name / version
    folder.mkdir(parents=True)
    try:
        os.link(gguf, folder / "model.gguf")
    except OSError:
        shutil.copyfile(gguf, folder / "model.gguf")
    manifest.write(folder, manifest.Manifest(
        name=name, version=version, files=manifest.describe_files(folder, {"model.gguf": "gguf"}),
        recipe={"base": "SmolLM2-135M-Instruct", "quantize": "q8_0"}))


def scanned_invoice() -> bytes:
    """A scanned page (text drawn with the Nanum font), for the OCR result of an upload."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype("/usr/share/fonts/truetype/nanum/NanumGothic.ttf", 40)
    page = Image.new("L", (1600, 520), 255)
    draw = ImageDraw.Draw(page)
    for number, line in enumerate(["거래명세서 / Invoice INV-2026-0412",
                                   "공급가액 4,800,000원, 부가세 480,000원, 합계 5,280,000원",
                                   "Payment is due within 30 days of receipt (terms NT30)."]):
        draw.text((80, 120 + number * 72), line, font=font, fill=0)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()


def shared_drive(folder: Path) -> Path:
    """A folder as a mounted file share holds it: sample documents, a scan and a broken file."""
    from appliance.knowledge.knowledge_base import sample_kb_path

    for name in ("sales/delivery-and-shipping.html", "admin/vpn-remote-access.pdf"):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_kb_path() / name, target)
    (folder / "scans").mkdir()
    (folder / "scans" / "invoice-0412.png").write_bytes(scanned_invoice())
    (folder / "scans" / "receipt-copy.pdf").write_bytes(b"%PDF-1.4 cut off during the copy")
    return folder


def settings_for(data: Path, cache: Path):
    from appliance.engine.model import resolve_model_path
    from appliance.settings import SourceSettings, load_settings

    settings = load_settings(data_dir=data)
    settings.auth.enabled = True
    settings.engine.model_path = str(resolve_model_path("", bundled_type="q8_0", cache_dir=cache))
    settings.engine.slots = 4
    settings.engine.max_request_tokens = 1536
    settings.engine.default_max_tokens = 110
    settings.knowledge.embedder_path = str(embedder_dir(cache))
    settings.knowledge.ingest_sample_on_first_start = False
    settings.monitoring.golden_interval_hours = 0
    settings.monitoring.sample_seconds = 5
    settings.releases.models_dir = str(data / "models")
    settings.releases.golden_limit = 4
    settings.releases.golden_max_tokens = 24
    settings.releases.max_latency_seconds = 600
    settings.releases.probation_seconds = 0
    settings.knowledge.sources = [SourceSettings(
        name="shared-drive", path=str(shared_drive(data.parent / "shared-drive")),
        groups=["all"], cron="30 2 * * *")]
    return settings


class Appliance:
    """The real app under uvicorn on a loopback port, in a thread."""

    def __init__(self, settings, knowledge):
        import uvicorn

        from appliance.server.app import create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, knowledge=knowledge)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit("the appliance did not become ready in 10 minutes")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=60)


def shoot(page, path: Path) -> None:
    """A PNG with a 256-colour palette: UI screenshots lose nothing visible and shrink a lot."""
    from PIL import Image

    page.evaluate("document.querySelectorAll('.toast').forEach((toast) => toast.remove())")
    page.wait_for_timeout(400)  # let transitions settle
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def login(page, url: str, user, path: str = "/") -> None:
    page.goto(f"{url}{path}")
    page.fill("#username", user[0])
    page.fill("#password", user[1])
    page.click("#login-submit")
    page.wait_for_url(f"{url}{path}")


def ask(page, question: str) -> None:
    page.wait_for_selector("body[data-model]")
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.wait_for_selector(".message.assistant:not([data-state=streaming])", timeout=ANSWER_TIMEOUT)


def tab(page, url: str, name: str) -> None:
    page.goto(f"{url}/admin#{name}")
    page.wait_for_selector(f"#tab-{name}[aria-selected=true]")
    page.wait_for_load_state("networkidle")


def drive(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        laptop = browser.new_context(viewport=LAPTOP, locale="en-US")
        page = laptop.new_page()
        page.goto(f"{url}/login")
        page.wait_for_selector("#login-form")
        shoot(page, out / "login.png")
        login(page, url, EMPLOYEE)
        ask(page, QUESTION)
        page.locator(".message.assistant .feedback.up").last.click()
        page.wait_for_selector(".toast")  # the thanks arrives after the vote is stored; shoot removes it
        page.evaluate("document.activeElement.blur()")
        page.evaluate("document.getElementById('messages').scrollTop = 0")
        shoot(page, out / "chat.png")
        page.locator(".message.assistant .source").first.click()
        page.wait_for_selector("#passage-text")
        shoot(page, out / "passage.png")

        phone = browser.new_context(viewport=PHONE, locale="ko-KR", device_scale_factor=1)
        mobile = phone.new_page()
        login(mobile, url, EMPLOYEE)
        ask(mobile, PHONE_QUESTION)
        mobile.evaluate("document.getElementById('messages').scrollTop = 0")
        shoot(mobile, out / "phone-chat.png")

        admin = browser.new_context(viewport=LAPTOP, locale="en-US").new_page()
        login(admin, url, ADMIN, "/admin")
        admin.wait_for_selector("#documents-table")
        admin.fill("#upload-groups", "finance")
        admin.set_input_files("#upload-files", files=[
            {"name": "bonus-pool-2026.md", "mimeType": "text/markdown",
             "buffer": b"# Executive bonus pool 2026\n\nThe CEO approves the pool in March.\n"},
            {"name": "scanned-invoice.png", "mimeType": "image/png", "buffer": scanned_invoice()},
        ])
        admin.wait_for_selector(".upload[data-name='scanned-invoice.png'] [data-status=added]")
        admin.fill("#search-query", "purchase order release approval")
        admin.press("#search-query", "Enter")
        admin.wait_for_selector("#search-results .result")
        shoot(admin, out / "admin-documents.png")

        sources = admin.locator("#sources-table tr[data-id='shared-drive']")
        sources.locator("button", has_text="Run now").click()
        sources.locator(".badge", has_text="Done").wait_for(timeout=ANSWER_TIMEOUT)
        sources.locator("[data-problems] summary").click()
        admin.evaluate("document.getElementById('sources').scrollIntoView();"
                       "window.scrollBy(0, -80)")  # below the sticky top bar
        shoot(admin, out / "admin-sources.png")

        tab(admin, url, "models")
        admin.locator("#versions-table tr[data-id='erp-assistant/1.1.0']").locator(
            "button", has_text="Validate").click()
        admin.wait_for_selector("#versions-table tr[data-id='erp-assistant/1.1.0'] :text('Passed')",
                                timeout=ANSWER_TIMEOUT)
        admin.locator("#versions-table tr[data-id='erp-assistant/1.1.0'] details summary").click()
        shoot(admin, out / "admin-models.png")

        tab(admin, url, "monitoring")
        admin.select_option("#range", "1h")
        admin.wait_for_load_state("networkidle")
        shoot(admin, out / "admin-monitoring.png")

        tab(admin, url, "users")
        shoot(admin, out / "admin-users.png")
        tab(admin, url, "keys")
        admin.select_option("#key-user", label="Park Jisoo (jisoo)")
        admin.fill("#key-name", "erp-integration")
        admin.click("#new-key-form button[type=submit]")
        admin.wait_for_selector("#secret-value")
        shoot(admin, out / "admin-keys.png")
        admin.click("#secret-dialog button[value=ok]")
        tab(admin, url, "usage")
        admin.wait_for_selector("#quota-users-table")
        shoot(admin, out / "admin-usage.png")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "screenshots-cache",
                        help="keeps the re-encoded model and the embedder between runs")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium (`./dev setup` does).")
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)

    from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path

    with tempfile.TemporaryDirectory(prefix="appliance-screenshots-") as tmp:
        data = Path(tmp) / "data"
        settings = settings_for(data, args.cache)
        model_version(data / "models", Path(settings.engine.model_path), "erp-assistant", "1.1.0")
        knowledge = KnowledgeBase.open(settings)
        print("ingesting part of the sample knowledge base ...")
        knowledge.ingest([sample_kb_path() / area for area in AREAS])
        with Appliance(settings, knowledge) as appliance:
            accounts = appliance.app.state.accounts
            admin = accounts.create_user(ADMIN[0], ADMIN[1], role="admin",
                                         groups=["all", "finance"], display_name=ADMIN[2])
            employee = accounts.create_user(EMPLOYEE[0], EMPLOYEE[1], groups=["all"],
                                            display_name=EMPLOYEE[2])
            accounts.create_user("seoyeon", "employee-password-2", groups=["all", "hr"],
                                 display_name="Lee Seoyeon")
            former = accounts.create_user("dohyun", "employee-password-3", groups=["all"],
                                          display_name="Choi Dohyun")
            accounts.update_user(former.id, active=False)
            _, export_key = accounts.create_key(admin.id, "monitoring-export")
            _, old = accounts.create_key(employee.id, "excel-add-in")
            accounts.revoke_key(old.id)
            _, sync_key = accounts.create_key(employee.id, "erp-sync")
            quotas = appliance.app.state.quotas
            quotas.set_override("user", employee.id, None, 300_000)
            quotas.set_override("key", sync_key.id, 10, 20_000)
            quotas.set_override("key", export_key.id, 120, None)
            drive(appliance.url, args.out)
        knowledge.close()


if __name__ == "__main__":
    main()
