"""The study report in a real browser: headless Chromium (Debian's ``chromium`` and
``chromedriver``) opens the file, logs no console error, and lays every plot out at a visible
size with the SVG's aspect ratio.

Without Chromium these tests skip, unless ``REGULAB_REQUIRE_CHROMIUM=1`` (set by CI), when
they fail. ``open_in_chromium`` is reusable: other tests render a real study's report with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from regulab.studies.report import render_report

from .report_fixtures import EXPECTED_FIGURES, fake_study

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--disable-dev-shm-usage", "--window-size=1280,900"]

# per figure.plot: the svg's laid-out size and its viewBox's, in CSS pixels / user units
FIGURE_SIZES = """
return Array.from(document.querySelectorAll('figure.plot')).map(f => {
  const s = f.querySelector('svg');
  if (!s) return {id: f.id, width: 0, height: 0, vbWidth: 0, vbHeight: 0};
  const r = s.getBoundingClientRect(), vb = s.viewBox.baseVal;
  return {id: f.id, width: r.width, height: r.height,
          vbWidth: vb ? vb.width : 0, vbHeight: vb ? vb.height : 0};
});
"""


def require_chromium() -> None:
    """Skip when Chromium or its driver is missing; fail instead under REGULAB_REQUIRE_CHROMIUM=1."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    why = (f"{' and '.join(missing)} not found (apt-get install chromium chromium-driver)")
    if os.environ.get("REGULAB_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"REGULAB_REQUIRE_CHROMIUM=1 but {why}")
    pytest.skip(why)


def open_in_chromium(path: str | Path, screenshot: str | Path | None = None
                     ) -> tuple[list[dict], list[dict], Path]:
    """Open the HTML file ``path`` in headless Chromium; return (browser console log entries,
    one {id, width, height, vbWidth, vbHeight} per ``figure.plot``, the path of a full-page
    PNG screenshot). The screenshot goes to ``screenshot`` (default: next to ``path``) and is
    also copied into ``$REGULAB_SCREENSHOT_DIR`` when that is set."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_chromium()
    path = Path(path).resolve()
    shot = Path(screenshot) if screenshot else path.with_suffix(".png")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    profile = tempfile.mkdtemp(prefix="regulab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ARGS + [f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(path.as_uri())
        sizes = driver.execute_script(FIGURE_SIZES)
        logs = driver.get_log("browser")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(int(height) + 100, 900), 16000))
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    if os.environ.get("REGULAB_SCREENSHOT_DIR"):
        out = Path(os.environ["REGULAB_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / f"{path.stem}.png")
    return logs, sizes, shot


@pytest.mark.parametrize("kind", ["compare", "init", "capacity"])
def test_report_in_chromium(kind, tmp_path):
    require_chromium()
    report = render_report(fake_study(kind), tmp_path / f"report-{kind}.html")
    logs, sizes, shot = open_in_chromium(report, tmp_path / "report.png")
    assert not [e for e in logs if e.get("level") == "SEVERE"], logs
    assert len(sizes) == EXPECTED_FIGURES[kind]
    for s in sizes:
        assert s["width"] > 50 and s["height"] > 50, s
        # width:100%; height:auto keeps the figure's proportions
        assert s["height"] / s["width"] == pytest.approx(s["vbHeight"] / s["vbWidth"], rel=0.02), s
    assert shot == tmp_path / "report.png" and shot.stat().st_size > 10_000
