"""``lowlabel demo [--out runs/demo]``: ShapesWorld quick, every method and its baseline, the report.

Stages: generate (or reuse) ShapesWorld quick; train and evaluate each available method at its
``configs/<method>/synth-quick.yaml`` budget, one subprocess per run (a crash stays in its run and
its ``train.log``); write the HTML report, with the repository's ``benchmarks/results`` as reference rows when the
demo runs from a clone; print its path. A finished run has a ``DONE`` file and is
reused by the next ``lowlabel demo``; an interrupted run resumes from its last checkpoint
(``--resume auto``). One status line shows the stage, the method, and elapsed and estimated time.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME = "synth-quick.yaml"
DATA_ROOT = "synth:quick"
DATA_KINDS = ("wsol", "voc", "davis", "coco", "domains", "pretrain")  # what the methods with a quick config read
DEFAULT_ESTIMATES = {"data": 30.0, "train": 150.0, "report": 20.0}  # seconds, before any timing is known
TIMINGS_FILE = "timings.json"
# Later stages of multi-stage methods: stage -> the (flag, earlier run) pairs it starts from, each passed as
# ``flag <earlier run folder>`` (the translators take the source detector's run as their frozen ``--detector``;
# regionclip and ovd read the class-agnostic RPN's proposals). A stage trains after its earlier runs and is skipped
# when one of them failed.
STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "seg": (("--init_from", "sipe"),),
    "contrastcorr": (("--init_from", "contrastcorr_ae"),),
    "cut": (("--detector", "detector"),),
    "lgcl": (("--detector", "detector"),),
    "regionclip": (("--init_from", "clip"), ("--proposals.source", "coco-rpn")),
    "ovd": (("--init_from", "regionclip"), ("--proposals.source", "coco-rpn")),
}
# Earlier runs that are not a method's own synth-quick run: name -> (method, config under configs/). Trained when a
# selected stage needs them.
HELPER_RUNS: dict[str, tuple[str, str]] = {"coco-rpn": ("detector", "detector/coco-rpn-synth-quick.yaml")}


@dataclass
class DemoRun:
    """One training of the demo: ``method`` with ``config`` into ``run_dir``."""

    method: str
    config: Path
    run_dir: Path
    inputs: tuple[tuple[str, DemoRun], ...] = ()  # a later stage's (flag, earlier run) pairs (:data:`STAGES`)
    extra: tuple[str, ...] = ()  # more `train` arguments: a baseline that is the method with a part switched off

    @property
    def earlier(self) -> list[DemoRun]:
        """The runs this one starts from."""
        return [r for _, r in self.inputs]

    @property
    def name(self) -> str:
        """The run's name in progress lines and timings: its folder's (the method, or ``<method>-<variant>``)."""
        return self.run_dir.name

    @property
    def done(self) -> bool:
        """Whether an earlier demo finished this run (``DONE`` marker and ``metrics.json`` present)."""
        return (self.run_dir / "DONE").is_file() and (self.run_dir / "metrics.json").is_file()


Runner = Callable[[DemoRun, Sequence[str], Path], int]


def add_parser(subcommands: Any) -> None:
    """Register the ``demo`` subcommand."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        description="Generate ShapesWorld (quick), train and evaluate every available method and its baseline "
        "at the quick budget, write the HTML report and print its path. Rerunning reuses finished runs."
    )
    parser.add_argument("--out", type=str, default="runs/demo", help="demo folder: one run folder per method + report/")
    parser.add_argument("--methods", type=list[str] | None, default=None,
                        help="only these methods (default: every method with a synth-quick config)")
    parser.add_argument("--configs", type=str | None, default=None,
                        help="folder of <method>/synth-quick.yaml files (default: the repository's configs/)")
    parser.add_argument("--overrides", type=list[str], default=[],
                        help="extra `lowlabel train` arguments for every run, e.g. ['--trainer.max_steps', '5']")
    parser.add_argument("--reference", type=str | None, default=None,
                        help="folder of study result files shown beside the comparisons (default: the repository's "
                        "benchmarks/results, when the demo runs from a clone)")
    subcommands.add_subcommand("demo", parser, help="ShapesWorld + every method + baselines + report")


def run(cfg: Any) -> int:
    """Run the demo; exit status 1 when some run failed (the report still shows the others)."""
    out = Path(cfg.out)
    runs = discover_runs(out, configs_dir=Path(cfg.configs) if cfg.configs else None, only=cfg.methods)
    reference = Path(cfg.reference) if cfg.reference else default_reference_dir()
    if reference is not None:
        from lowlabel.report.references import load_references

        load_references(reference)  # a malformed result file stops the demo before any training
    return run_demo(runs, out=out, overrides=list(cfg.overrides), reference=reference)


def default_configs_dir() -> Path:
    """``configs/`` next to the ``lowlabel`` package (a source checkout), else ``./configs``."""
    here = Path(__file__).resolve().parents[2] / "configs"
    return here if here.is_dir() else Path("configs")


def default_reference_dir() -> Path | None:
    """``benchmarks/results`` of the source checkout the package runs from, when it exists."""
    here = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    return here if here.is_dir() else None


def discover_runs(out: Path, *, configs_dir: Path | None = None, only: Sequence[str] | None = None) -> list[DemoRun]:
    """Every method of ``METHODS`` that has ``<configs>/<method>/synth-quick.yaml``: baselines first, then the
    methods, then the later stages of :data:`STAGES` (baselines first again), each after the runs it starts from
    (a method's or a :data:`HELPER_RUNS` one). A baseline that is the method switched off or started from another
    stage trains right before the method.

    Raises:
        UserError: ``only`` names a method that is unknown or has no quick config, or nothing is available.
    """
    from lowlabel.errors import UserError
    from lowlabel.methods import METHODS
    from lowlabel.report.comparisons import BASELINE_INITS, BASELINE_SWITCHES, BASELINES

    configs_dir = configs_dir or default_configs_dir()
    available = [m for m in METHODS if (configs_dir / m / CONFIG_NAME).is_file()]
    helpers = {name: (method, configs_dir / config) for name, (method, config) in HELPER_RUNS.items()
               if method in METHODS and (configs_dir / config).is_file()}

    def needs(m: str) -> list[str]:  # the methods' runs a stage starts from (helper runs come along by themselves)
        return [name for _, name in STAGES.get(m, ()) if name not in helpers]

    if only:
        missing = [m for m in only if m not in available]
        if missing:
            raise UserError(f"--methods: no {configs_dir}/<method>/{CONFIG_NAME} for {', '.join(missing)} "
                            f"(available: {', '.join(available) or 'none'})")
        for m in only:
            absent = [name for name in needs(m) if name not in only]
            if absent:
                raise UserError(f"--methods: {m} starts from a {absent[0]} run; add {absent[0]}")
        available = [m for m in available if m in only]
    # A stage whose earlier runs cannot be made is left out (iterated: a stage may start from another stage).
    while True:
        kept = [m for m in available if all(n in available or n in helpers for _, n in STAGES.get(m, ()))]
        if kept == available:
            break
        available = kept
    if not available:
        raise UserError(f"no method has a {configs_dir}/<method>/{CONFIG_NAME}; nothing to run")
    baselines = set(BASELINES.values()) | {init for _, init in BASELINE_INITS.values()}
    firsts = [m for m in available if m not in STAGES]
    later = [m for m in available if m in STAGES]
    runs: dict[str, DemoRun] = {}
    for m in [m for m in firsts if m in baselines] + [m for m in firsts if m not in baselines]:
        runs[m] = DemoRun(method=m, config=configs_dir / m / CONFIG_NAME, run_dir=out / m)
    for name, (method, config) in helpers.items():
        if any(n == name for m in later for _, n in STAGES[m]):
            runs[name] = DemoRun(method=method, config=config, run_dir=out / name)
    pending = [m for m in later if m in baselines] + [m for m in later if m not in baselines]
    while pending:  # a stage once its earlier runs are placed (a stage may start from another stage)
        ready = [m for m in pending if all(n in runs for _, n in STAGES[m])]
        if not ready:
            raise UserError(f"demo stages {pending} start from one another in a cycle")
        for m in ready:
            runs[m] = DemoRun(method=m, config=configs_dir / m / CONFIG_NAME, run_dir=out / m,
                              inputs=tuple((flag, runs[n]) for flag, n in STAGES[m]))
        pending = [m for m in pending if m not in ready]
    out_runs: list[DemoRun] = []
    for m, run in runs.items():  # a method's own baseline trains right before it
        if m in BASELINE_SWITCHES:
            label, values = BASELINE_SWITCHES[m]
            extra = tuple(w for key, value in values.items() for w in (f"--{key}", json.dumps(value)))
            out_runs.append(DemoRun(method=m, config=run.config, run_dir=out / f"{m}-{label}",
                                    inputs=run.inputs, extra=extra))
        elif m in BASELINE_INITS and BASELINE_INITS[m][1] in runs:
            label, init = BASELINE_INITS[m]
            inputs = tuple((flag, runs[init] if flag == "--init_from" else r) for flag, r in run.inputs)
            out_runs.append(DemoRun(method=m, config=run.config, run_dir=out / f"{m}-{label}", inputs=inputs))
        out_runs.append(run)
    return out_runs


def subprocess_runner(run: DemoRun, overrides: Sequence[str], log_path: Path) -> int:
    """Train ``run`` with ``python -m lowlabel.cli.main train`` in a child process; its output goes to ``log_path``."""
    cmd = [sys.executable, "-m", "lowlabel.cli.main", "train", run.method, "--config", str(run.config),
           "--run-dir", str(run.run_dir), *run.extra, *overrides]
    for flag, earlier in run.inputs:
        cmd += [flag, str(earlier.run_dir)]
    if (run.run_dir / "checkpoints").is_dir():
        cmd += ["--resume", "auto"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode


def prepare_data() -> None:
    """Generate (or find in the cache) ShapesWorld quick for every kind the demo's methods read."""
    from lowlabel.data import resolve_root

    for kind in DATA_KINDS:
        resolve_root(DATA_ROOT, kind)


def run_demo(
    runs: Sequence[DemoRun], *, out: Path, overrides: Sequence[str] = (), runner: Runner = subprocess_runner,
    data: Callable[[], None] = prepare_data, stream: Any = None, reference: Path | None = None,
) -> int:
    """Prepare data, train what is not done, write the report (with ``reference`` result files beside the
    comparisons); print its path. Returns 0, or 1 if a run failed."""
    from lowlabel.report.html import write_report

    out.mkdir(parents=True, exist_ok=True)
    timings = _load_timings(out / TIMINGS_FILE)
    progress = DemoProgress(stream=stream or sys.stdout)
    todo = [r for r in runs if not r.done]
    stages = [("data", "ShapesWorld quick")] + [("train", r.name) for r in todo] + [("report", "")]
    progress.plan([timings.get(_key(s, n), DEFAULT_ESTIMATES[s]) for s, n in stages])
    for r in runs:
        if r.done:
            progress.note(f"reusing finished run {r.run_dir}")

    with progress.stage("data", "ShapesWorld quick") as st:
        data()
    timings["data:ShapesWorld quick"] = st.seconds
    failed: list[DemoRun] = []
    for r in todo:
        lost = [e for e in r.earlier if e in failed]
        if lost:
            failed.append(r)
            progress.note(f"{r.name} skipped: it starts from the {lost[0].name} run, which failed")
            continue
        with progress.stage("train", r.name) as st:
            code = runner(r, overrides, r.run_dir / "train.log")
        if code == 0 and (r.run_dir / "metrics.json").is_file():
            timings[_key("train", r.name)] = st.seconds
            (r.run_dir / "DONE").write_text(json.dumps({"seconds": round(st.seconds, 1)}) + "\n")
        else:
            failed.append(r)
            progress.note(f"{r.name} failed (exit {code}); see {r.run_dir / 'train.log'}:\n{_tail(r.run_dir)}")
    finished = [r.run_dir for r in runs if r.done]
    index = None
    with progress.stage("report", "") as st:
        if finished:
            index = write_report(finished, out / "report", title="lowlabel demo: ShapesWorld quick",
                                 reference=reference)
    timings["report:"] = st.seconds
    _save_timings(out / TIMINGS_FILE, timings)
    peak = _peak_rss_mb()
    progress.note(f"demo finished in {_clock(progress.elapsed)}, peak memory {peak:.0f} MB (largest process)")
    if failed:
        progress.note("failed: " + ", ".join(r.name for r in failed))
    if index is not None:
        print(index.resolve(), file=progress.stream, flush=True)
    return 1 if failed or index is None else 0


class DemoProgress:
    """One status line: ``[stage i/n] stage method · elapsed m:ss · estimated total m:ss``.

    On a terminal the line is redrawn every second while a stage runs (a background thread); otherwise
    one line is printed when each stage starts and ends.
    """

    def __init__(self, *, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.estimates: list[float] = []
        self.index = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def plan(self, estimates: Sequence[float]) -> None:
        """Seconds expected for each stage, in order."""
        self.estimates = list(estimates)

    def estimated_total(self, stage_elapsed: float) -> float:
        """Elapsed time plus what the current and later stages are expected to take."""
        current = self.estimates[self.index] if self.index < len(self.estimates) else 0.0
        later = sum(self.estimates[self.index + 1:])
        return self.elapsed + max(current - stage_elapsed, 0.0) + later

    def line(self, name: str, detail: str, stage_elapsed: float) -> str:
        total = len(self.estimates)
        label = f"{name} {detail}".strip()
        return (f"[{self.index + 1}/{total}] {label} · elapsed {_clock(self.elapsed)} · "
                f"estimated total {_clock(self.estimated_total(stage_elapsed))}")

    def note(self, message: str) -> None:
        self._write(message + "\n", clear=True)

    def stage(self, name: str, detail: str) -> _Stage:
        return _Stage(self, name, detail)

    def _write(self, text: str, *, clear: bool = False) -> None:
        prefix = "\r\033[K" if self.tty and clear else ""
        self.stream.write(prefix + text)
        self.stream.flush()


class _Stage:
    """Context manager timing one stage and keeping the status line fresh."""

    def __init__(self, progress: DemoProgress, name: str, detail: str) -> None:
        self.progress, self.name, self.detail = progress, name, detail
        self.t0 = 0.0
        self.seconds = 0.0
        self._stop: Any = None

    def __enter__(self) -> _Stage:
        import threading

        self.t0 = time.monotonic()
        p = self.progress
        if p.tty:
            self._stop = threading.Event()
            threading.Thread(target=self._refresh, daemon=True).start()
        else:
            p._write(p.line(self.name, self.detail, 0.0) + "\n")
        return self

    def _refresh(self) -> None:
        p = self.progress
        while not self._stop.is_set():
            p._write("\r\033[K" + p.line(self.name, self.detail, time.monotonic() - self.t0))
            self._stop.wait(1.0)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.seconds = time.monotonic() - self.t0
        if self._stop is not None:
            self._stop.set()
        p = self.progress
        verb = "took" if exc_type is None else "stopped after"  # Ctrl-C: rerun `lowlabel demo` to resume
        p._write(f"{p.line(self.name, self.detail, self.seconds)} · {verb} {_clock(self.seconds)}\n", clear=True)
        p.index += 1


def _key(stage: str, name: str) -> str:
    return f"{stage}:{name}" if stage != "report" else "report:"


def _load_timings(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)} if isinstance(data, dict) else {}


def _save_timings(path: Path, timings: dict[str, float]) -> None:
    path.write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2) + "\n")


def _tail(run_dir: Path, lines: int = 8) -> str:
    log = run_dir / "train.log"
    text = log.read_text(errors="replace").splitlines()[-lines:] if log.is_file() else []
    return "\n".join("    " + line for line in text)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process or its largest child, in MB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024
    return max(own, children) * scale


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"

