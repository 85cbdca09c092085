"""Scalar logs of a run (CSV, appended so a resumed run continues the same files) and the PNG of
its loss and success curves."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

TRAIN_FIELDS = ("step", "loss", "lr", "samples_per_s", "train_time_s", "wall_s")
EVAL_FIELDS = ("step", "train_time_s", "success_rate", "episodes", "ci95_lo", "ci95_hi", "mean_episode_length",
               "latency_ms_p50", "latency_ms_p90", "mean_max_coverage")


class CsvLog:
    def __init__(self, path: Path, fields: Sequence[str], truncate_after_step: int | None = None):
        self.path, self.fields = Path(path), tuple(fields)
        rows = read_csv(self.path) if self.path.exists() else []
        if truncate_after_step is not None:   # resuming: drop rows the checkpoint does not cover
            rows = [r for r in rows if int(float(r["step"])) <= truncate_after_step]
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in self.fields} for r in rows)
        self._f = self.path.open("a", newline="")
        self._w = csv.DictWriter(self._f, self.fields)

    def write(self, row: Mapping[str, object]) -> None:
        self._w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in self.fields})
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def plot_curves(run_dir: Path, title: str) -> Path:
    """``curves.png``: training loss (log scale) and sim success rate against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train = read_csv(run_dir / "train_log.csv") if (run_dir / "train_log.csv").exists() else []
    evals = read_csv(run_dir / "eval_log.csv") if (run_dir / "eval_log.csv").exists() else []
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        a.plot([int(r["step"]) for r in train], [float(r["loss"]) for r in train], lw=1)
        a.set_yscale("log")
    a.set(xlabel="step", ylabel="loss (noise MSE)", title="training loss")
    a.grid(alpha=0.3)
    if evals:
        steps = [int(r["step"]) for r in evals]
        sr = [float(r["success_rate"]) for r in evals]
        lo = [float(r["ci95_lo"]) for r in evals]
        hi = [float(r["ci95_hi"]) for r in evals]
        err = [[max(0.0, v - l) for v, l in zip(sr, lo)], [max(0.0, h - v) for v, h in zip(sr, hi)]]
        b.errorbar(steps, sr, yerr=err, fmt="o-", capsize=4, label="success rate (95% CI)")
        cov = [float(r["mean_max_coverage"]) for r in evals if r.get("mean_max_coverage")]
        if len(cov) == len(steps):
            b.plot(steps, cov, "s--", label="mean max coverage")
        b.legend(loc="lower right")
    if train:
        b.set_xlim(a.get_xlim())
    b.set(xlabel="step", ylabel="rate", ylim=(-0.02, 1.02), title="sim evaluation (held-out seeds)")
    b.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
