"""The HTML page: structure, local assets only, and escaping of every dataset string."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from lowlabel.report.html import write_report

EVIL = "<script>alert(1)</script>"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> Tags:
    parser = Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_report_sections_and_local_images(fake_run, tmp_path: Path) -> None:
    fake_run("cam", method="cam", metrics={"MaxBoxAccV2": 50.0})
    fake_run("dawsol", method="da_wsol", metrics={"MaxBoxAccV2": 60.0})
    index = write_report([tmp_path / "runs"], tmp_path / "out")
    page = parse(index)
    ids = {a.get("id") for tag, a in page.tags if tag == "section"}
    assert ids == {"summary", "per-class", "curves", "qualitative", "failures", "runs"}
    srcs = [a["src"] for tag, a in page.tags if tag == "img"]
    assert srcs, "no images"
    for src in srcs:
        assert src.startswith("assets/") and (index.parent / src).is_file()
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "iframe", "object")]
    assert sum(1 for tag, _ in page.tags if tag == "details") == 2
    # qualitative: both runs on the same 6 fixed images -> 6 rows x 2 figures
    html = index.read_text()
    qual = html.split('id="qualitative"')[1].split("</section>")[0]
    assert qual.count("<figure>") == 12
    assert re.findall(r"<figcaption>(img_\d+)</figcaption>", qual) == [f"img_{i // 2:03d}" for i in range(12)]


def test_dataset_text_is_escaped(fake_run, tmp_path: Path) -> None:
    fake_run("run<script>", method="sipe", metrics={"mIoU": 50.0}, kind="segmentation",
             class_names=["background", f"cat{EVIL}", "dog"], caption=f"a {EVIL} caption",
             per_class={"IoU": {f"cat{EVIL}": 10.0}}, config_extra={"note": EVIL})
    index = write_report([tmp_path / "runs"], tmp_path / "out", title=f"t{EVIL}")
    page = parse(index)
    assert "script" not in [tag for tag, _ in page.tags]
    text = "".join(page.text)
    for shown in (f"cat{EVIL}", f"a {EVIL} caption", "run<script>", f"note: {EVIL}", f"t{EVIL}"):
        assert shown in text, shown
    assert EVIL not in index.read_text()
