"""The report in headless Chromium: loads cleanly, every image shows, nothing leaves file://, numbers match.

Chromium is Debian's ``chromium`` package; when it is missing the test installs it with apt-get
(as root, where the machine allows) or skips, saying why. The page is driven over the DevTools
protocol on a pipe (``tests/report/cdp.py``), which records every console message, log entry and
network request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lowlabel.report.html import write_report

from .cdp import Browser, ensure_chromium
from .test_references import ANCHOR, references, smoke_runs

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
EVIL = "<script>document.title='pwned'</script>"

PROBE = """JSON.stringify({
  images: [...document.images].map(i => ({src: i.src, complete: i.complete, width: i.naturalWidth})),
  scripts: document.scripts.length,
  text: document.body.innerText,
  title: document.title,
  summary: [...document.querySelectorAll('#summary table.summary tbody tr')].map(tr => ({
    method: tr.dataset.method,
    cells: Object.fromEntries([...tr.querySelectorAll('td[data-metric]')].map(td => [td.dataset.metric, td.innerText]))
  })),
  urls: [...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href),
})"""


@pytest.fixture(scope="module")
def browser():
    exe, reason = ensure_chromium()
    if exe is None:
        pytest.skip(f"headless Chromium unavailable: {reason}")
    b = Browser(exe)
    yield b
    b.close()


def test_report_renders_in_chromium(browser: Browser, fake_run, tmp_path: Path) -> None:
    base = fake_run("cam", method="cam", metrics={"MaxBoxAccV2": 48.125, "PxAP": 39.5, "Top-1 Cls": 90.0})
    meth = fake_run("da_wsol", method="da_wsol", metrics={"MaxBoxAccV2": 57.375, "PxAP": 44.0, "Top-1 Cls": 88.25})
    fake_run("sipe", method="sipe", metrics={"mIoU": 51.0}, kind="segmentation",
             class_names=["background", f"cat{EVIL}", "dog"], caption=f"a {EVIL} caption",
             per_class={"IoU": {f"cat{EVIL}": 12.5}})
    index = write_report([tmp_path / "runs"], tmp_path / "report")
    browser.open(index.as_uri())
    page = json.loads(browser.evaluate(PROBE))

    errors = [e for e in browser.events if e["method"] in ("Runtime.exceptionThrown",)
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e["method"] == "Network.requestWillBeSent"]
    assert requests and all(u.startswith("file://") for u in requests), [u for u in requests if "file://" not in u]
    assert all(u.startswith(("file://", "data:")) for u in page["urls"])
    assert len(page["images"]) > 10
    assert [i["src"] for i in page["images"] if not (i["complete"] and i["width"] > 0)] == []

    # the summary holds each run's metrics.json values (expected text formatted here, independently)
    rows = {r["method"]: r["cells"] for r in page["summary"]}
    for run in (base, meth):
        metrics = json.loads((run / "metrics.json").read_text())
        cells = rows[metrics_method(run)]
        for key in ("MaxBoxAccV2", "PxAP", "Top-1 Cls"):
            assert cells[key] == f"{metrics[key]:.2f}", key
    # dataset text containing <script> is shown as text and never runs
    assert page["scripts"] == 0 and page["title"] == "lowlabel report"
    assert f"cat{EVIL}" in page["text"] and f"a {EVIL} caption" in page["text"]
    shot = browser.screenshot(ARTIFACTS / "report.png")
    assert shot.stat().st_size > 10_000


def metrics_method(run: Path) -> str:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["method"]


ROWS = """JSON.stringify([...document.querySelectorAll('#qualitative .row')].map(
  row => [...row.querySelectorAll(':scope > figure')].map(f => f.getBoundingClientRect().top)))"""


@pytest.mark.parametrize("width", [700, 1400])
def test_same_image_panels_stay_on_one_row(browser: Browser, fake_run, tmp_path: Path, width: int) -> None:
    """Baseline and method side by side on one row per image at a narrow and a wide window (the narrow row
    scrolls sideways instead of stacking)."""
    fake_run("cam", method="cam", metrics={"MaxBoxAccV2": 48.0})
    fake_run("da_wsol", method="da_wsol", metrics={"MaxBoxAccV2": 57.0})
    index = write_report([tmp_path / "runs"], tmp_path / "report")
    browser.set_width(width)
    browser.open(index.as_uri())
    rows = json.loads(browser.evaluate(ROWS))
    assert rows and all(len(tops) == 2 and tops[0] == tops[1] for tops in rows), rows
    browser.screenshot(ARTIFACTS / f"report-{width}px.png")


HEADLINE = """JSON.stringify({
  rows: [...document.querySelectorAll('#summary table.headline tbody tr')].map(tr => {
    const r = tr.getBoundingClientRect();
    return {cls: tr.className, text: tr.innerText, top: r.top, height: r.height,
            links: [...tr.querySelectorAll('a')].map(a => a.href)};
  }),
  bottom: document.querySelector('#summary table.headline').getBoundingClientRect().bottom + window.scrollY,
  right: document.querySelector('#summary table.headline').getBoundingClientRect().right,
  note: document.querySelector('#summary p.references').innerText,
})"""


def _console_errors(browser: Browser) -> list[dict]:
    return [e for e in browser.events if e["method"] == "Runtime.exceptionThrown"
            or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]


def test_summary_shows_smoke_and_reference_rows(browser: Browser, fake_run, tmp_path: Path) -> None:
    """In the browser: each single-seed comparison says its budget, seed and "not a comparison"; the reference rows
    sit right under it, in order, with the command; the losing reference shows its note and README link."""
    smoke_runs(fake_run)
    folder = references(tmp_path)
    index = write_report([tmp_path / "runs"], tmp_path / "report", reference=folder)
    browser.set_width(1400)
    browser.open(index.as_uri())
    page = json.loads(browser.evaluate(HEADLINE))
    assert _console_errors(browser) == []
    rows = page["rows"]
    assert [r["cls"] for r in rows] == ["run one-seed", "reference ahead", "reference-source",
                                        "run one-seed", "reference behind", "reference-source", "losing"]
    assert all(r["height"] > 0 for r in rows) and [r["top"] for r in rows] == sorted(r["top"] for r in rows)
    for smoke, steps in ((rows[0], 40), (rows[3], 60)):
        assert "seed 0" in smoke["text"] and f"{steps} steps, ShapesWorld quick" in smoke["text"]
        assert "not a comparison: one seed, so the difference is noise" in smoke["text"]
    assert rows[1]["text"].startswith("reference: wsol-full\tMaxBoxAccV2") and "3 seeds (0, 1, 2)" in rows[1]["text"]
    assert "bash benchmarks/studies/wsol_full.sh" in rows[2]["text"] and "commit 0123456, 2026-12-01" in rows[2]["text"]
    assert "sipe loses to mlcam" in rows[6]["text"] and "Why: its seeds call the object bodies" in rows[6]["text"]
    assert [u.endswith(f"README.md#{ANCHOR}") and u.startswith("file://") for u in rows[6]["links"]] == [True]
    assert str(folder.resolve()) in page["note"]
    browser.screenshot(ARTIFACTS / "report-summary-references.png",
                       clip={"x": 0, "y": 0, "width": page["right"] + 16, "height": page["bottom"] + 16})


def test_summary_screenshot_with_the_repository_results(browser: Browser, fake_run, tmp_path: Path) -> None:
    """The summary of smoke runs (the demo's numbers of issue 20, one seed) against the repository's own
    benchmarks/results, screenshotted into the test artefacts (docs/images/ holds one of a real demo instead)."""
    smoke_runs(fake_run)
    folder = ROOT / "benchmarks" / "results"
    index = write_report([tmp_path / "runs"], tmp_path / "report", title="lowlabel demo: ShapesWorld quick",
                         reference=folder)
    browser.set_width(1400)
    browser.open(index.as_uri())
    page = json.loads(browser.evaluate(HEADLINE))
    assert _console_errors(browser) == []
    runs = [r for r in page["rows"] if r["cls"].startswith("run ")]
    assert len(runs) == 2 and all("not a comparison" in r["text"] for r in runs)
    # every result file with a sipe method row and an mlcam baseline row appears under sipe vs mlcam
    expected = sorted(
        data["study"] for data in (json.loads(p.read_text()) for p in folder.glob("*.json"))
        if {("method", "sipe"), ("baseline", "mlcam")} <= {(r["role"], r.get("method")) for r in data["rows"]}
    )
    sipe_at = next(i for i, r in enumerate(page["rows"]) if r["text"].startswith("sipe vs mlcam"))
    shown = sorted(r["text"].split("\t")[0].removeprefix("reference: ") for r in page["rows"][sipe_at:]
                   if r["cls"].startswith("reference "))
    assert shown == expected and expected
    shot = browser.screenshot(ARTIFACTS / "report-summary.png",
                              clip={"x": 0, "y": 0, "width": page["right"] + 16, "height": page["bottom"] + 16})
    assert 5_000 < shot.stat().st_size < 400_000
