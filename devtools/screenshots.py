"""`make screenshots`: the console's main views as PNG files in docs/screenshots.

Starts the `make run` stack on free ports, seeds a few connections of different providers and
states through the public API, then drives Debian's Chromium with Playwright.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

import httpx

from devtools import localenv, localstack
from devtools.token import make_token
from fakeprovider import control

OUT = localenv.ROOT / "docs" / "screenshots"
USER = "alice"


def _seed(api: str, fake: str) -> dict[str, str]:
    client = httpx.Client(base_url=api, timeout=60, trust_env=False,
                          headers={"authorization": f"Bearer {make_token(USER)}"})
    specs: list[tuple[str, dict[str, Any], int]] = [
        ("OpenAI-GPT4o-Prod-Marketing", {"provider": "custom", "base_url": f"{fake}/openai/v1",
                                         "credentials": {"api_key": "sk-proj-fk_ok_prod_AB12"},
                                         "default_model": "gpt-4o",
                                         "description": "Campaign copy; owner: growth team"}, 6),
        ("Anthropic-Claude-Dev-Testing", {"provider": "anthropic",
                                          "base_url": f"{fake}/anthropic",
                                          "credentials": {"api_key": "sk-ant-fk_404_dev_CD34"},
                                          "default_model": "claude-sonnet-4-5"}, 0),
        ("Bedrock-Claude-Prod-Support", {"provider": "bedrock", "base_url": f"{fake}/bedrock",
                                         "credentials": {
                                             "access_key_id": "AKIAFAKEfk_ok_EF56GH78",
                                             "secret_access_key": control.FAKE_BEDROCK_SECRET,
                                             "region": "us-east-1"},
                                         "default_model":
                                             "anthropic.claude-3-5-sonnet-20240620-v1:0"}, 3),
        ("Cohere-Command-Shared-General", {"provider": "cohere", "base_url": f"{fake}/cohere",
                                           "credentials": {"api_key": "co-fk_401_shared_IJ90"},
                                           "default_model": "command-a-03-2025"}, 0),
        ("Gemini-Flash-Staging", {"provider": "google", "base_url": f"{fake}/google/v1beta",
                                  "credentials": {"api_key": "AIzaFk_fk_ok_staging_KL12"},
                                  "default_model": "gemini-2.5-flash"}, 1),
    ]
    ids: dict[str, str] = {}
    for name, body, invokes in specs:
        resp = client.post("/connections", json={"name": name, **body})
        resp.raise_for_status()
        cid = resp.json()["id"]
        ids[name] = cid
        for _ in range(2):
            client.post(f"/connections/{cid}/test", json={})
        for i in range(invokes):
            client.post(f"/connections/{cid}/invoke",
                        json={"messages": [{"role": "user", "content": f"Hello {i}"}]})
    cid = ids["OpenAI-GPT4o-Prod-Marketing"]
    client.put(f"/connections/{cid}/dependents/welcome-email",
               json={"kind": "prompt", "display_name": "Welcome e-mail generator"})
    return ids


def _shoot(api: str, fake: str, ids: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.set_default_timeout(20000)
        page.goto(f"{api}/")
        page.get_by_label("User name").fill(USER)
        page.get_by_role("button", name="Sign in").click()
        page.locator("td[data-label='Activity (7 days)']").last.get_by_text("req").wait_for()
        page.screenshot(path=OUT / "connections.png")

        page.evaluate("() => { location.hash = '#/connections/new'; }")
        page.get_by_role("combobox", name="Provider").select_option("openai")
        page.get_by_label("Connection name").fill("OpenAI-GPT4o-Prod-Sales")
        page.get_by_label("API key").fill("sk-proj-fk_ok_sales_key_MN34")
        page.locator("#c-base").fill(f"{fake}/openai/v1")
        page.get_by_role("button", name="Test Connection").click()
        page.locator("#test-results [data-result-status]").wait_for()
        page.get_by_role("button", name="Use gpt-4o as default model").click()
        page.screenshot(path=OUT / "add-connection.png", full_page=True)

        page.evaluate(f"() => {{ location.hash = "
                      f"'#/connections/{ids['Cohere-Command-Shared-General']}'; }}")
        page.get_by_role("region", name="Troubleshooting").wait_for()
        page.screenshot(path=OUT / "troubleshooting.png")

        page.evaluate(f"() => {{ location.hash = "
                      f"'#/connections/{ids['OpenAI-GPT4o-Prod-Marketing']}'; }}")
        page.locator("#usage-chart canvas").wait_for()
        page.get_by_label("Prompt").fill("Write a one-line welcome for new customers.")
        page.get_by_role("button", name="Send").click()
        page.locator("#invoke-output pre").wait_for()
        page.screenshot(path=OUT / "connection-detail.png", full_page=True)

        mobile = browser.new_page(viewport={"width": 360, "height": 760})
        mobile.goto(f"{api}/")
        mobile.get_by_label("User name").fill(USER)
        mobile.get_by_role("button", name="Sign in").click()
        mobile.locator("tr[data-id]").first.wait_for()
        mobile.wait_for_timeout(500)
        mobile.screenshot(path=OUT / "connections-mobile.png")
        browser.close()


def main() -> None:
    api_port, aws_port, fake_port = (localstack.free_port() for _ in range(3))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # Its own state folder: a `make run` of this checkout keeps its run.json.
    state = tempfile.mkdtemp(prefix="llmc-shots-")
    env[localenv.STATE_DIR_ENV] = state
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.localstack", "run", "--port", str(api_port),
         "--aws-port", str(aws_port), "--fake-port", str(fake_port)],
        cwd=localenv.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    api, fake = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{fake_port}"
    try:
        localstack.wait_http(f"{api}/health", timeout=120)
        _shoot(api, fake, _seed(api, fake))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    for png in sorted(OUT.glob("*.png")):
        print(f"{png.relative_to(localenv.ROOT)} ({png.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
