"""The live "LLM" tab and /llm page in a real headless browser (Debian chromium driven by playwright)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import LOCUST, REPO, locust_env
from tests.test_monitor import _free_port, _get

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_llm_tab_shows_live_numbers_within_10s(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: run scripts/test-deps.d/20-chromium.sh")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [LOCUST, "-f", "locustfiles/chat.py", "--web-host", "127.0.0.1", "--web-port", str(port),
         "--report-dir", str(tmp_path), "--no-html", "--no-history", "--emulator-ttft-ms", "50",
         "--emulator-output-tokens", "6", "--emulator-itl-ms", "10"],
        cwd=REPO, env=locust_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(base + "/")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "locust web UI did not come up"
                time.sleep(0.3)
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            )
            try:
                form = urllib.parse.urlencode({"user_count": 4, "spawn_rate": 4, "host": ""}).encode()
                with urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=form), timeout=5) as resp:
                    assert json.loads(resp.read())["success"] is True
                swarmed = time.monotonic()
                page = context.new_page()
                page.goto(base + "/llm")
                page.wait_for_function(
                    "() => [...document.querySelectorAll('tr.llm-row td')].length >= 6 && "
                    "document.querySelector('tr.llm-row td:nth-child(3)').textContent !== '-'",
                    timeout=10_000,
                )
                assert time.monotonic() - swarmed < 12
                cells = page.locator("tr.llm-row").first.locator("td").all_text_contents()
                assert cells[0].startswith("openai:")
                assert 40 <= float(cells[2]) <= 2000, cells
                assert float(cells[4]) > 0, cells
                # Locust's own UI: the LLM tab lists the same provider with a TTFT figure.
                ui = context.new_page()
                ui.goto(base + "/?tab=llm")
                ui.get_by_role("tab", name="LLM").click()
                ui.get_by_text(re.compile(r"^openai:")).first.wait_for(timeout=10_000)
            finally:
                context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
