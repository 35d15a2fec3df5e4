"""Training-curve figures."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lowlabel.report.figures import curve_order, plot_curves


def test_curve_order() -> None:
    keys = ["lr/model", "val/PxAP", "train/acc", "loss/model", "val/MaxBoxAccV2", "train/cls", "val/zzz"]
    assert curve_order(keys) == ["loss/model", "train/acc", "train/cls", "val/MaxBoxAccV2", "val/PxAP",
                                 "lr/model", "val/zzz"]


def test_plot_curves_writes_png_or_nothing(tmp_path: Path) -> None:
    series = [("a$b", {"loss": [(0, 1.0), (10, 0.5)], "val/m": [(10, 3.0)]}), ("c", {"loss": [(0, 2.0)]})]
    path = plot_curves(series, tmp_path / "f.png", title="t$")
    assert path == tmp_path / "f.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300  # two subplots side by side at 4 in x 80 dpi each
    assert plot_curves([("x", {})], tmp_path / "g.png") is None
    assert not (tmp_path / "g.png").exists()
