"""RunLogger: metrics.csv is readable while a run is still logging."""

from __future__ import annotations

import lowlabel.engine.logging as logging_mod
from lowlabel.engine.logging import RunLogger


def test_metrics_csv_is_flushed_while_the_run_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(logging_mod, "FLUSH_SECONDS", 0.0)
    logger = RunLogger(tmp_path / "logs", tensorboard=False)
    logger.log(10, {"loss/model": 0.5})
    assert (tmp_path / "logs" / "metrics.csv").read_text() == "step,key,value\n10,loss/model,0.5\n"
    logger.close()
