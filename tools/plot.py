#!/usr/bin/env python3
"""Plots lockstep training runs from their log.jsonl (matplotlib, no display needed).

    tools/plot.py RUN_DIR [RUN_DIR ...] [--out DIR]

Writes PNG figures into --out (default: the first RUN_DIR), one per curve, every run overlaid
with a legend so that runs can be compared at a glance:

  loss.png              training loss against update (optimizer step)
  top1.png              training top-1 against update
  lr.png                learning rate against update (warmup ramp and decay)
  images_per_s.png      training images/s against update
  eval_top1_epoch.png   evaluation top-1 against epoch
  eval_top1_time.png    evaluation top-1 against wall time (seconds, or minutes past 3)
  overview.png          all six as subplots of one figure

and prints the path of every file written. A run's label is its folder's name; when two runs
share a name, config.json's sync mode and arch are added, and if that still clashes, the path
as given.

What it reads: the "step" and "eval" records of <run>/log.jsonl (engine/metrics.h). Other
records (summary, async staleness, backup drops) are ignored. A "resume" record at update U
drops any earlier record past U (a crashed run's tail that the resumed run logs again) and the
resumed process's clock, which starts again at 0, is shifted to continue where the log left
off, so wall time counts training time and leaves out the gap between stop and resume. A
resumed run's resume points are dotted vertical lines on the per-update figures. A non-finite
loss (JSON null) is a gap in the curve. A run without eval records is left out of the eval
figures; when no run has any, those figures are not written (a note says so, and overview.png
shows their panels empty). A last line cut short by a crash is skipped with a warning.

Exit status: 0 when the figures were written; 2 when a RUN_DIR, its log.jsonl or its records
are missing, empty or unreadable, or a figure cannot be written (the message names the file or
folder); 1 when matplotlib is missing.
"""
import argparse
import json
import math
import os
import sys

PROG = "plot.py"


class InputError(Exception):
    """A run folder or log that cannot be plotted; main() prints it and exits 2."""


class Run:
    """One run's curves, read from <path>/log.jsonl. Lists of one record type share an index."""

    def __init__(self, path):
        self.path = path
        self.label = os.path.basename(os.path.normpath(os.path.abspath(path)))
        self.config = {}
        # step records: update, loss, top1 (fraction), lr, images/s, time (s, resume-shifted)
        self.step_update, self.step_loss, self.step_top1 = [], [], []
        self.step_lr, self.step_ips, self.step_time = [], [], []
        # eval records: epoch, update, top1 (fraction), time (s, resume-shifted)
        self.eval_epoch, self.eval_update, self.eval_top1, self.eval_time = [], [], [], []
        self.resumes = []  # updates at which a resumed process took over
        self.warnings = []

    def non_finite_losses(self):
        return sum(1 for v in self.step_loss if not math.isfinite(v))


def number(rec, key):
    """The record's value as a float; null (a non-finite value in the log) or absent is NaN."""
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    return float(v)


def read_run(path):
    if not os.path.isdir(path):
        raise InputError(f"run folder '{path}' does not exist" if not os.path.exists(path)
                         else f"'{path}' is not a folder")
    run = Run(path)
    log = os.path.join(path, "log.jsonl")
    try:
        with open(log, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError(f"'{log}' does not exist (is '{path}' a lockstep run folder?)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read '{log}': {e}") from None
    if not text.strip():
        raise InputError(f"'{log}' is empty (the run logged nothing yet)")

    config = os.path.join(path, "config.json")
    if os.path.exists(config):
        try:
            with open(config, encoding="utf-8") as f:
                run.config = json.load(f)
        except (OSError, ValueError) as e:
            run.warnings.append(f"cannot read '{config}' ({e}); labels will not use it")

    lines = text.split("\n")
    complete = text.endswith("\n")
    steps, evals = [], []  # (record, shifted time)
    offset = 0.0           # seconds added to a resumed process's clock
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines) and not complete:
                run.warnings.append(f"'{log}' line {i} is cut short (a crashed run?); skipped")
                continue
            raise InputError(f"'{log}' line {i}: not a JSON object ({e})") from None
        kind = rec.get("type")
        if kind in ("step", "eval"):
            (steps if kind == "step" else evals).append((rec, number(rec, "time") + offset))
        elif kind == "resume":
            at = rec.get("update")
            if isinstance(at, bool) or not isinstance(at, int):
                raise InputError(f"'{log}' line {i}: resume record without an integer update")
            steps = [s for s in steps if number(s[0], "update") <= at]
            evals = [e for e in evals if number(e[0], "update") <= at]
            times = [t for _, t in steps + evals if math.isfinite(t)]
            offset = max(times, default=0.0)
            run.resumes.append(at)
    if not steps and not evals:
        raise InputError(f"'{log}' has no step or eval records")

    for rec, t in steps:
        run.step_update.append(number(rec, "update"))
        run.step_loss.append(number(rec, "loss"))
        run.step_top1.append(number(rec, "top1"))
        run.step_lr.append(number(rec, "lr"))
        run.step_ips.append(number(rec, "img_per_s"))
        run.step_time.append(t)
    for rec, t in evals:
        run.eval_epoch.append(number(rec, "epoch"))
        run.eval_update.append(number(rec, "update"))
        run.eval_top1.append(number(rec, "top1"))
        run.eval_time.append(t)
    return run


def label_runs(runs):
    """Folder names; where they clash, add config.json's sync and arch; then the path."""
    def clashing():
        seen = {}
        for r in runs:
            seen[r.label] = seen.get(r.label, 0) + 1
        return [r for r in runs if seen[r.label] > 1]

    for r in clashing():
        r.label += f" ({r.config.get('sync', '?')}, {r.config.get('arch', '?')})"
    for r in clashing():
        r.label = r.path


def percent(values):
    return [100 * v for v in values]


# name, title, x label, y label, (x, y) of a run, eval figure
FIGURES = [
    ("loss.png", "training loss", "update", "loss", lambda r: (r.step_update, r.step_loss), False),
    ("top1.png", "training top-1", "update", "top-1 (%)",
     lambda r: (r.step_update, percent(r.step_top1)), False),
    ("lr.png", "learning rate", "update", "learning rate", lambda r: (r.step_update, r.step_lr), False),
    ("images_per_s.png", "training throughput", "update", "images/s",
     lambda r: (r.step_update, r.step_ips), False),
    ("eval_top1_epoch.png", "evaluation top-1 by epoch", "epoch", "top-1 (%)",
     lambda r: (r.eval_epoch, percent(r.eval_top1)), True),
    ("eval_top1_time.png", "evaluation top-1 by wall time", "training time", "top-1 (%)",
     lambda r: (r.eval_time, percent(r.eval_top1)), True),
]
OVERVIEW = "overview.png"


def draw(ax, fig_spec, runs):
    """Draws one figure's curves for every run onto ax; returns the number of runs drawn."""
    from matplotlib.ticker import MaxNLocator
    name, title, xlabel, ylabel, select, is_eval = fig_spec
    xscale = 1.0
    if name == "eval_top1_time.png":  # seconds, or minutes for runs longer than 3 minutes
        longest = max((t for r in runs for t in r.eval_time if math.isfinite(t)), default=0.0)
        xscale, unit = (1 / 60, "min") if longest > 180 else (1.0, "s")
        xlabel = f"{xlabel} ({unit})"
    drawn = 0
    for i, run in enumerate(runs):
        x, y = select(run)
        if not x:
            continue
        x = [v * xscale for v in x]
        colour = f"C{i % 10}"
        few = len(x) <= 25
        ax.plot(x, y, color=colour, label=run.label, linewidth=1.5,
                marker="o" if is_eval or few else None, markersize=4)
        if is_eval and math.isfinite(y[-1]):  # the final evaluation's value, to read off
            ax.annotate(f"{y[-1]:.1f}%", (x[-1], y[-1]), textcoords="offset points", xytext=(5, -12),
                        color=colour, fontsize="small")
        if not is_eval:
            for u in run.resumes:
                ax.axvline(u, color=colour, linestyle=":", linewidth=1)
        drawn += 1
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if name in ("lr.png", "images_per_s.png") and drawn:
        ax.set_ylim(bottom=0)  # a constant rate reads as constant, not as noise around it
    if name == "lr.png":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if name == "eval_top1_epoch.png" and drawn:  # whole epochs, also for a single one
        last = max((e for r in runs for e in r.eval_epoch if math.isfinite(e)), default=1.0)
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if name == "eval_top1_time.png" and drawn:  # from the start, with room for the annotation
        longest = max((t * xscale for r in runs for t in r.eval_time if math.isfinite(t)), default=0.0)
        ax.set_xlim(0, longest * 1.15 if longest > 0 else 1)
    if drawn == 0:
        ax.text(0.5, 0.5, "no eval records" if is_eval else "no step records", ha="center", va="center",
                transform=ax.transAxes)
    else:  # accuracy rises, so the lower right is free of curves and the final-value labels
        ax.legend(fontsize="small", loc="lower right" if is_eval else "best")
    return drawn


def main(argv):
    p = argparse.ArgumentParser(prog=PROG, description="Plot lockstep runs from their log.jsonl.",
                                epilog="Figures: " + ", ".join(f[0] for f in FIGURES) + ", " + OVERVIEW)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="a run folder (lockstep train --out)")
    p.add_argument("--out", metavar="DIR", help="folder for the PNGs (default: the first RUN_DIR)")
    p.add_argument("--dpi", type=int, default=100, help="resolution of the PNGs (default: 100)")
    a = p.parse_args(argv)
    if a.dpi <= 0:
        p.error(f"--dpi must be > 0 (got {a.dpi})")

    try:
        runs = [read_run(path) for path in a.runs]
    except InputError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    label_runs(runs)
    out = a.out if a.out is not None else a.runs[0]
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        print(f"{PROG}: cannot create output folder '{out}': {e}", file=sys.stderr)
        return 2

    try:
        from matplotlib.figure import Figure  # the Agg canvas; no pyplot, no display
    except ImportError as e:
        print(f"{PROG}: needs matplotlib ({e}); on Debian: apt-get install python3-matplotlib, "
              f"then run it with /usr/bin/python3 (this is {sys.executable})", file=sys.stderr)
        return 1

    for run in runs:
        for w in run.warnings:
            print(f"{PROG}: warning: {w}", file=sys.stderr)
        notes = [f"{len(run.step_update)} step records", f"{len(run.eval_update)} evaluations"]
        if run.resumes:
            notes.append("resumed at update " + ", ".join(str(u) for u in run.resumes))
        if run.non_finite_losses():
            notes.append(f"{run.non_finite_losses()} non-finite losses (gaps)")
        print(f"run '{run.label}': {run.path}: " + ", ".join(notes))

    any_eval = any(run.eval_update for run in runs)
    for run in runs:
        if not run.eval_update:
            print(f"note: '{os.path.join(run.path, 'log.jsonl')}' has no eval records; "
                  + ("it is left out of the eval figures" if any_eval else
                     "eval_top1_epoch.png and eval_top1_time.png are not written"))

    written = []

    def save(fig, name):
        path = os.path.join(out, name)
        try:
            fig.savefig(path, dpi=a.dpi, pil_kwargs={"optimize": True})
        except OSError as e:
            raise InputError(f"cannot write '{path}': {e}") from None
        written.append(path)

    try:
        for spec in FIGURES:
            if spec[5] and not any_eval:
                continue
            fig = Figure(figsize=(6.4, 4.0), layout="constrained")
            ax = fig.add_subplot()
            draw(ax, spec, runs)
            save(fig, spec[0])

        fig = Figure(figsize=(12, 6.75), layout="constrained")
        axes = fig.subplots(2, 3)
        for ax, spec in zip(axes.flat, FIGURES):
            draw(ax, spec, runs)
        save(fig, OVERVIEW)
    except InputError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2

    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
