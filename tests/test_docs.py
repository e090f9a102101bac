"""The documentation: the interactive reference renders from this server's own assets, with no internet
(contract §3.9), and the guides name only settings and metrics that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from onderwijsregio.clock import utc_now
from onderwijsregio.config import Settings
from onderwijsregio.metrics.registry import REGISTRY
from onderwijsregio.metrics.service import QueueCollector
from tests.live import environment, fresh_database, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Chromium and sets this, so there the check can never be skipped silently.
REQUIRED = os.environ.get("ONDERWIJSREGIO_TEST_REQUIRE_CHROMIUM") == "1"
EXPECTED_TAGS = ("Regions", "Admin", "Operations")


def test_docs_page_uses_only_local_assets(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database, serve(tmp_path, environment(database)) as server:
        page = httpx.get(f"{server.url}/docs")
        assert page.status_code == 200
        references = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(
            r"url: ?'([^']+)'", page.text
        )
        assert references, page.text
        for reference in references:
            assert reference.startswith("/"), f"{reference} is not served by us"
            assert httpx.get(f"{server.url}{reference}").status_code == 200, reference


def test_docs_render_in_headless_chromium(tmp_path: Path) -> None:
    if CHROMIUM is None:
        if REQUIRED:
            pytest.fail(
                "Chromium is required here (ONDERWIJSREGIO_TEST_REQUIRE_CHROMIUM=1) but not installed"
            )
        pytest.skip("Chromium is not installed (Debian package `chromium`)")
    with fresh_database(tmp_path) as database, serve(tmp_path, environment(database)) as server:
        dom = render(f"{server.url}/docs", tmp_path / "profile")
    assert "swagger-ui" in dom
    for tag in EXPECTED_TAGS:
        assert f'data-tag="{tag}"' in dom, f"tag {tag} not rendered"
    assert "/api/v2/regions/me" in dom
    assert dom.count('class="opblock ') >= 10, "operations were not rendered"


def render(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_documented_settings_and_metrics_exist() -> None:
    """Every ONDERWIJSREGIO_ variable the README and docs/ name is a setting, and the operations guide
    names every metric we publish."""
    root = Path(__file__).parent.parent
    texts = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    named = {n for path in texts for n in re.findall(r"ONDERWIJSREGIO_([A-Z_]+[A-Z])", path.read_text())}
    settings = {name.upper() for name in Settings.model_fields}
    assert {n for n in named if not n.startswith("TEST_")} - settings == set()
    guide = (root / "docs" / "operations.md").read_text()
    families = [*REGISTRY.collect(), *QueueCollector([], utc_now()).collect()]
    ours = {family.name for family in families if family.name.startswith("onderwijsregio_")}
    assert len(ours) >= 7 and {name for name in ours if f"`{name}" not in guide} == set()
