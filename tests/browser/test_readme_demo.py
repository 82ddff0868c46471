"""The README's local demo, followed literally: its command starts the Stripe double and the app, a marketer
connects the demo account in Chromium, the README's curl makes a customer in the demo Stripe, and the CRM
receives it. Only the two ports (the README says PORT and STRIPE_DOUBLE_PORT pick them) and where the data
lives differ from a reader's run."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import requests
from playwright.sync_api import expect

from webapp.config import HTMX_CDN_URL, ROOT
from webapp.embedded_redis import free_port

pytestmark = pytest.mark.browser

DOUBLE_PORT = "12111"


def demo_commands() -> list[str]:
    """The shell commands of the README's "A local demo without Stripe" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### A local demo without Stripe", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [re.sub(r"^ *", "", block.replace("\\\n", " "), flags=re.M).strip() for block in blocks]


def test_the_readme_demo_works_as_written(browser, htmx_js, empty_redis, tmp_path):
    start, make_customer = demo_commands()
    assert start == "bash scripts/demo" and make_customer.startswith("curl -X POST http://127.0.0.1:12111/")
    port, double_port = str(free_port()), str(free_port())
    env = {**os.environ, "PORT": port, "STRIPE_DOUBLE_PORT": double_port, "REDIS_URL": empty_redis.url,
           "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "SECRET_KEY": "demo-test",
           "ENCRYPTION_KEY": "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "WEB_CONCURRENCY": "1"}
    env.pop("PUBLIC_BASE_URL", None)
    demo = subprocess.Popen(["bash", "-c", start], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(iter(demo.stdout.readline, "")), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    context = browser.new_context(base_url=base)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert demo.poll() is None, "".join(output)
            time.sleep(0.3)
        else:
            pytest.fail("the demo did not start:\n" + "".join(output))
        key = next(m.group(1) for line in output if (m := re.search(r"use secret key: (sk_test_\S+)", line)))

        def route(r):
            url = r.request.url
            if url == HTMX_CDN_URL:
                r.fulfill(status=200, body=htmx_js, headers={"Content-Type": "application/javascript",
                                                             "Access-Control-Allow-Origin": "*"})
            elif url.startswith(base):
                r.continue_()
            else:
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto("/")  # the first visit asks for the first user
        page.get_by_label("Email").fill("owner@example.com")
        page.get_by_label("Password", exact=True).fill("correct horse battery")
        page.get_by_label("Confirm password").fill("correct horse battery")
        page.get_by_role("button", name="Create admin account").click()
        page.goto("/apps/stripe")
        page.get_by_role("button", name="Connect Account").click()
        dialog = page.locator("dialog#modal")
        dialog.get_by_label("Secret Key").fill(key)
        dialog.get_by_role("button", name="Connect").click()
        dialog.get_by_label("Choose Resource").select_option(label="Customer")
        dialog.get_by_label("Sync type").select_option(label="Sync new records only")
        dialog.get_by_role("button", name="Continue").click()
        dialog.get_by_role("button", name="Finish").click()
        expect(page.get_by_text("now sync into your contacts")).to_be_visible()
        expect(page.locator(".resource-row .badge-ok").first).to_have_text("Active")
        expect(page.locator(".resource-row .last-event")).to_have_text("Waiting for the first event from Stripe…")

        ran = subprocess.run(["bash", "-c", make_customer.replace(DOUBLE_PORT, double_port)], capture_output=True,
                             text=True, timeout=30)
        assert ran.returncode == 0 and '"customer.created"' in ran.stdout, ran.stdout + ran.stderr
        expect(page.locator(".resource-row .receiving")).to_have_text("Receiving", timeout=20_000)
        expect(page.locator("#log-rows")).to_contain_text("demo@example.com")
        page.goto("/contacts")
        expect(page.get_by_text("demo@example.com")).to_be_visible()
    finally:
        context.close()
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(5)
