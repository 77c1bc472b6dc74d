#!/usr/bin/env python3
"""Tests tools/plot.py. Run it with any python3; PY (the interpreter plot.py runs under) must
import matplotlib, or this exits 77 (ctest's skip) saying so.

    check_plots.py runs  --python PY --script tools/plot.py --out DIR RUN_DIR RUN_DIR [...]
    check_plots.py edges --python PY --script tools/plot.py --work DIR

runs: plots real runs (the first one stopped and resumed) and checks that the exit status is 0,
every figure is written and listed, and each is a real picture: a PNG signature and an IHDR
with width and height > 0, more than 8 KB, decodable by matplotlib, not one flat colour, and
with each run's colour (C0, C1, ...) present, so that every run is drawn.

edges: hand-written logs. A resumed log (a stale record past the resume point, the clock
starting again at 0) and a null loss are parsed as documented (plot.py imported as a module);
a run without eval records gets the step figures and a note, not the eval ones; an empty
log.jsonl, a folder without one, a missing folder and a corrupt line in the middle each exit 2
with a message naming the file or folder; a cut-short last line is skipped with a warning; two
runs in folders of one name are labelled with their config's sync and arch.
"""
import argparse
import importlib.util
import json
import math
import os
import shutil
import struct
import subprocess
import sys

FIGURES = ["loss.png", "top1.png", "lr.png", "images_per_s.png", "eval_top1_epoch.png",
           "eval_top1_time.png", "overview.png"]
EVAL_FIGURES = ["eval_top1_epoch.png", "eval_top1_time.png"]
MIN_BYTES = 8 * 1024
# matplotlib's default colour cycle, the colours plot.py gives runs 0, 1, 2, ...
CYCLE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
failures = []


def check(ok, msg):
    if not ok:
        failures.append(msg)
        print("FAIL: " + msg)
    return ok


def plot(a, *args):
    p = subprocess.run([a.python, a.script, *args], capture_output=True, text=True)
    print(f"$ plot.py {' '.join(args)}  -> exit {p.returncode}\n{p.stdout}{p.stderr}", end="")
    return p


def check_png(path, runs):
    """The file is a decodable, non-trivial PNG showing the colours of `runs` runs."""
    if not check(os.path.isfile(path), f"{path} was not written"):
        return
    before = len(failures)
    with open(path, "rb") as f:
        head = f.read(24)
    size = os.path.getsize(path)
    check(head[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: no PNG signature")
    check(head[12:16] == b"IHDR", f"{path}: the first chunk is not IHDR")
    width, height = struct.unpack(">II", head[16:24]) if len(head) == 24 else (0, 0)
    check(width > 0 and height > 0, f"{path}: IHDR says {width}x{height}")
    check(size > MIN_BYTES, f"{path}: {size} bytes, expected > {MIN_BYTES}")
    import matplotlib.image
    import numpy as np
    img = matplotlib.image.imread(path)  # (H, W, 3 or 4) floats in [0, 1]
    check(img.shape[:2] == (height, width), f"{path}: decodes to {img.shape}, IHDR says {width}x{height}")
    rgb = np.round(img[..., :3] * 255).astype(np.int32).reshape(-1, 3)
    colours = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2])
    check(len(colours) > 16, f"{path}: only {len(colours)} colours; a blank figure?")
    for i in range(runs):
        c = int(CYCLE[i][1:], 16)
        check(c in set(colours.tolist()), f"{path}: no pixel of run {i}'s colour {CYCLE[i]}")
    if len(failures) == before:
        print(f"ok {path}: {width}x{height}, {size} bytes, {len(colours)} colours")


def cmd_runs(a):
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    p = plot(a, *a.run_dirs, "--out", a.out)
    check(p.returncode == 0, f"plot.py exited {p.returncode}")
    for name in FIGURES:
        path = os.path.join(a.out, name)
        check(f"wrote {path}\n" in p.stdout, f"plot.py did not print 'wrote {path}'")
        check_png(path, len(a.run_dirs))
    first = os.path.basename(os.path.normpath(a.run_dirs[0]))
    check(f"run '{first}': " in p.stdout and "resumed at update" in p.stdout,
          "plot.py did not report the first run and its resume")


def write_log(folder, records, tail="", config=None):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "log.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + tail)
    if config is not None:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f)


def step(update, time, loss=1.0, epoch=1):
    return {"type": "step", "epoch": epoch, "step": update, "update": update, "lr": 0.01 * update,
            "loss": loss, "top1": 0.5, "top5": 0.9, "img_per_s": 100.0 + update, "time": time}


def evaluation(epoch, update, time, top1):
    return {"type": "eval", "epoch": epoch, "update": update, "samples": 100, "loss": 1.0,
            "top1": top1, "top5": 0.9, "time": time}


def expect_exit_2(a, run_dir, needle):
    p = plot(a, run_dir, "--out", os.path.join(a.work, "never"))
    check(p.returncode == 2, f"plot.py {run_dir}: exit {p.returncode}, expected 2")
    check(needle in p.stderr, f"plot.py {run_dir}: stderr does not name '{needle}'")
    check(not os.path.exists(os.path.join(a.work, "never", "loss.png")), f"plot.py {run_dir}: wrote figures")


def cmd_edges(a):
    if os.path.isdir(a.work):
        shutil.rmtree(a.work)
    spec = importlib.util.spec_from_file_location("plot", a.script)
    plotmod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plotmod)

    # A run stopped after update 4 (its crash left a record at update 6 that the resumed run
    # logs again), resumed with the clock at 0; a loss of null at update 8.
    resumed = os.path.join(a.work, "resumed")
    write_log(resumed, [step(2, 1.0), step(4, 2.0), evaluation(1, 4, 2.5, 0.4), step(6, 3.0, loss=9.0),
                        {"type": "resume", "update": 4, "checkpoint": "x/step-4"},
                        step(6, 1.0, epoch=2), step(8, 2.0, loss=None, epoch=2), evaluation(2, 8, 2.5, 0.7),
                        {"type": "async", "epoch": 2, "staleness_mean": 1.0},
                        {"type": "summary", "updates": 8}])
    run = plotmod.read_run(resumed)
    check(run.step_update == [2, 4, 6, 8], f"resumed: step updates {run.step_update}, expected [2, 4, 6, 8]")
    check(run.step_loss[2] == 1.0, f"resumed: the stale record at update 6 was kept (loss {run.step_loss[2]})")
    check(math.isnan(run.step_loss[3]) and run.non_finite_losses() == 1, "resumed: null loss is not NaN")
    check(run.step_time == [1.0, 2.0, 3.5, 4.5], f"resumed: step times {run.step_time}, expected the clock "
          "shifted by 2.5 s (the last time logged before the resume)")
    check(run.eval_epoch == [1, 2] and run.eval_time == [2.5, 5.0], f"resumed: evals {run.eval_epoch} at {run.eval_time}")
    check(run.resumes == [4], f"resumed: resume points {run.resumes}")

    # Without eval records: the step figures, a note, no eval figures.
    noeval = os.path.join(a.work, "noeval")
    write_log(noeval, [step(u, u / 10, loss=2.0 / u) for u in range(1, 30)])
    p = plot(a, noeval)
    check(p.returncode == 0, f"noeval: exit {p.returncode}")
    check("has no eval records" in p.stdout and "not written" in p.stdout, "noeval: no note about eval figures")
    for name in FIGURES:
        path = os.path.join(noeval, name)
        if name in EVAL_FIGURES:
            check(not os.path.exists(path), f"noeval: {name} was written")
        else:
            check_png(path, 1)

    # The resumed run overlaid with the one without evals: eval figures hold the resumed one.
    p = plot(a, resumed, noeval, "--out", os.path.join(a.work, "both"))
    check(p.returncode == 0 and "left out of the eval figures" in p.stdout, "resumed+noeval: no note")
    check("1 non-finite losses" in p.stdout, "resumed+noeval: the null loss is not reported")
    check(os.path.isfile(os.path.join(a.work, "both", "eval_top1_time.png")), "resumed+noeval: no eval figure")

    # Unplottable inputs exit 2 naming the file or folder.
    empty = os.path.join(a.work, "empty")
    write_log(empty, [])
    expect_exit_2(a, empty, os.path.join(empty, "log.jsonl") + "' is empty")
    nolog = os.path.join(a.work, "nolog")
    os.makedirs(nolog)
    expect_exit_2(a, nolog, os.path.join(nolog, "log.jsonl") + "' does not exist")
    missing = os.path.join(a.work, "missing")
    expect_exit_2(a, missing, f"run folder '{missing}' does not exist")
    corrupt = os.path.join(a.work, "corrupt")
    write_log(corrupt, [step(1, 1.0)], tail="{\"type\": \"st\n" + json.dumps(step(2, 2.0)) + "\n")
    expect_exit_2(a, corrupt, os.path.join(corrupt, "log.jsonl") + "' line 2")
    onlysummary = os.path.join(a.work, "onlysummary")
    write_log(onlysummary, [{"type": "summary", "updates": 0}])
    expect_exit_2(a, onlysummary, "has no step or eval records")

    # A last line cut short by a crash is skipped with a warning.
    cut = os.path.join(a.work, "cut")
    write_log(cut, [step(u, u) for u in range(1, 20)], tail="{\"type\": \"step\", \"epo")
    run = plotmod.read_run(cut)
    check(len(run.step_update) == 19 and any("line 20 is cut short" in w for w in run.warnings),
          f"cut: {len(run.step_update)} steps, warnings {run.warnings}")

    # Folders of one name: labelled by config.json's sync and arch.
    twins = [os.path.join(a.work, side, "run") for side in ("x", "y")]
    for folder, sync in zip(twins, ("allreduce", "sign")):
        write_log(folder, [step(u, u) for u in range(1, 20)], config={"sync": sync, "arch": "tiny"})
    p = plot(a, *twins, "--out", os.path.join(a.work, "twins"))
    check(p.returncode == 0, f"twins: exit {p.returncode}")
    check("run 'run (allreduce, tiny)'" in p.stdout and "run 'run (sign, tiny)'" in p.stdout,
          "twins: labels do not carry sync and arch")
    check_png(os.path.join(a.work, "twins", "loss.png"), 2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["runs", "edges"])
    p.add_argument("--python", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--out")
    p.add_argument("--work")
    p.add_argument("run_dirs", nargs="*")
    a = p.parse_intermixed_args()
    try:
        probe = subprocess.run([a.python, "-c", "import matplotlib, numpy"], capture_output=True, text=True)
    except OSError as e:
        print(f"SKIP: cannot run {a.python} (set LOCKSTEP_PLOT_PYTHON to a Python with matplotlib): {e}")
        return 77
    if probe.returncode != 0:
        print(f"SKIP: {a.python} cannot import matplotlib (Debian: python3-matplotlib; set "
              f"LOCKSTEP_PLOT_PYTHON): {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
        return 77
    if a.python != sys.executable and os.path.realpath(a.python) != os.path.realpath(sys.executable):
        # The PNG decoding and the module import below need matplotlib here too: rerun under PY.
        return subprocess.run([a.python, __file__, *sys.argv[1:]]).returncode
    if a.mode == "runs":
        if not a.out or len(a.run_dirs) < 2:
            p.error("runs needs --out and at least two RUN_DIRs")
        cmd_runs(a)
    else:
        if not a.work:
            p.error("edges needs --work")
        cmd_edges(a)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
