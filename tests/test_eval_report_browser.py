"""The HTML report in a real browser (headless Chromium): no console errors, charts drawn, not blank.

Skipped only when ``/usr/bin/chromium`` is absent (Debian package ``chromium``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from crafter_tui.evaluation.compare import CompareOptions, compare_experiments
from crafter_tui.evaluation.experiments import Episode, Experiment
from crafter_tui.evaluation.report_html import render_html
from crafter_tui.world.rules import ACHIEVEMENTS

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="headless Chromium not installed (apt-get install -y chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1200,2400"]
EXPECTED_CHARTS = {"differences", "spectrum", "heatmap", "box", "profiles", "improvement", "instances"}

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img.chart')];
  const drawn = imgs.filter(i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100);
  document.body.setAttribute('data-charts', imgs.length + '/' + drawn.length);
});
</script>"""


def experiment(name: str, rate: float, rng: np.random.Generator) -> Experiment:
    episodes = []
    for instance in ("easy", "hard"):
        for seed in range(12):
            unlocked = [a for i, a in enumerate(ACHIEVEMENTS) if rng.random() < rate * (1 - i / 25)]
            episodes.append(Episode(instance=instance, seed=seed, num_achievements=len(unlocked),
                                    achievements=unlocked, reward=float(len(unlocked)), steps=200, turns=50,
                                    invalid_actions=int(rng.integers(0, 5)), termination="death", wall_s=2.0))
    return Experiment(name=name, model=f"{name}-model", episodes=episodes, instances=["easy", "hard"])


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    rng = np.random.default_rng(5)
    comparison = compare_experiments([experiment("base", 0.3, rng), experiment("tuned", 0.45, rng),
                                      experiment("other", 0.35, rng)], CompareOptions(resamples=999))
    path = tmp_path_factory.mktemp("report") / "comparison_report.html"
    path.write_text(render_html(comparison), encoding="utf-8")
    return path


def test_the_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "<script" not in text
    assert {m for m in re.findall(r'id="chart-(\w+)"', text)} == EXPECTED_CHARTS


def test_the_report_renders_in_chromium(report, tmp_path):
    # 1. console: load the report itself with browser logging on stderr
    shot = tmp_path / "shot.png"
    result = run_chromium(["--enable-logging=stderr", "--v=0", f"--screenshot={shot}", report.as_uri()],
                          tmp_path / "profile1")
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert shot.is_file(), result.stderr[-2000:]
    # 2. the screenshot is not blank: enough non-white pixels and colour variety
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    non_white = (pixels.min(axis=2) < 200).mean()
    assert non_white > 0.02 and pixels.std() > 20, (non_white, pixels.std())
    # 3. every chart image decodes: a copy with a probe script records what the browser drew
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()], tmp_path / "profile2")
    found = re.search(r'data-charts="(\d+)/(\d+)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    assert found.group(1) == found.group(2) == str(len(EXPECTED_CHARTS))


def test_chromium_would_report_a_console_error(tmp_path):
    """The console check above can fail: a page with a script error is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>", encoding="utf-8")
    result = run_chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()], tmp_path / "p")
    assert any("CONSOLE" in line or "Uncaught" in line for line in result.stderr.splitlines()), \
        result.stderr[-2000:]

