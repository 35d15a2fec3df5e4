"""Screenshot the summary of a report (the README's docs/images/report.png) in headless Chromium.

    python docs/screenshot.py runs/demo/report docs/images/report.png [--width 1400]

It drives Debian's ``chromium`` over the DevTools pipe with the browser tests' client (tests/report/cdp.py) and
crops the page to the title and the headline table (smoke rows and the reference rows under them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.report.cdp import Browser, ensure_chromium  # noqa: E402

BOX = """JSON.stringify((() => {
  const parts = [...document.querySelectorAll('#summary table.headline')];
  const boxes = parts.map(e => e.getBoundingClientRect());
  return {right: Math.max(...boxes.map(b => b.right)), bottom: Math.max(...boxes.map(b => b.bottom)) + window.scrollY};
})())"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report folder (with index.html)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    index = args.report / "index.html"
    if not index.is_file():
        print(f"error: {index}: not found (give a report folder)", file=sys.stderr)
        return 2
    exe, reason = ensure_chromium()
    if exe is None:
        print(f"error: headless Chromium unavailable: {reason}", file=sys.stderr)
        return 2
    browser = Browser(exe)
    try:
        browser.set_width(args.width)
        browser.open(index.resolve().as_uri())
        box = json.loads(browser.evaluate(BOX))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(args.out, clip={"x": 0, "y": 0, "width": min(box["right"] + 16, args.width),
                                           "height": box["bottom"] + 16})
    finally:
        browser.close()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
