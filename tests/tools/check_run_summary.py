#!/usr/bin/env python3
"""Checks a run's summary: summary.json and the terminal summary, and --no-tensorboard.

    check_run_summary.py --lockstep BIN --work DIR

Runs a short `lockstep train --device cpu --no-tensorboard` on synthetic data (2 epochs, an
evaluation after each, a checkpoint every 2 updates) and checks that:
  - no tb/ folder was made, and the terminal summary names no TensorBoard command;
  - summary.json exists (no temporary file left beside it) and equals the log's
    {"type":"summary"} record without its type;
  - its fields agree with the rest of the log: updates and the last step's loss and top-1,
    the last evaluation, the best one (highest top-1, the earlier on ties), the checkpoints
    written (the folders in checkpoints/), images / seconds = img_per_s, bytes as the step
    records sum them;
  - the terminal summary prints the best evaluation, the time lost and the plot command.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lockstep", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    out = os.path.join(a.work, "summary-run")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [a.lockstep, "train", "--arch", "tiny", "--synthetic", "--device", "cpu", "--batch-size", "8",
           "--epochs", "2", "--steps-per-epoch", "4", "--eval-steps", "1", "--log-every", "1",
           "--checkpoint-every", "2", "--no-tensorboard", "--out", out]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}")
    stdout = r.stdout

    if os.path.exists(os.path.join(out, "tb")):
        fail("--no-tensorboard made a tb/ folder")
    if "tensorboard" in stdout:
        fail(f"--no-tensorboard, yet the output mentions tensorboard:\n{stdout}")
    leftovers = [f for f in os.listdir(out) if f.startswith(".tmp-")]
    if leftovers:
        fail(f"temporary files left in the run folder: {leftovers}")

    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "log.jsonl")) as f:
        records = [json.loads(line) for line in f]
    line = dict(records[-1])
    if line.get("type") != "summary":
        fail(f"the log's last record is {line}, expected the summary")
    del line["type"]
    if summary != line:
        fail(f"summary.json {summary}\n differs from the log's summary record {line}")

    steps = [x for x in records if x["type"] == "step"]
    evals = [x for x in records if x["type"] == "eval"]
    best = evals[0]
    for e in evals[1:]:
        if e["top1"] > best["top1"]:
            best = e
    checkpoints = sorted(d for d in os.listdir(os.path.join(out, "checkpoints")) if d.startswith("step-"))
    expect = {
        "epochs": 2, "updates": 8, "images": 64, "workers": 1, "sync": "allreduce", "out": out,
        "final_loss": steps[-1]["loss"], "final_top1": steps[-1]["top1"],
        "eval": {k: evals[-1][k] for k in ("epoch", "update", "samples", "loss", "top1", "top5", "time")},
        "best_eval": {k: best[k] for k in ("epoch", "update", "samples", "loss", "top1", "top5", "time")},
        "checkpoints_written": len(checkpoints),
        "bytes_sent": sum(x["bytes_sent"] for x in steps),
        "checkpoint": os.path.join(out, "checkpoints", "step-8"),
    }
    for k, v in expect.items():
        if summary.get(k) != v:
            fail(f"summary.json {k} = {summary.get(k)!r}, expected {v!r}")
    if checkpoints != ["step-2", "step-4", "step-6", "step-8"]:
        fail(f"checkpoints {checkpoints}, expected a save every 2 updates")
    for k in ("seconds", "img_per_s", "wait_seconds", "comm_seconds"):
        if not isinstance(summary.get(k), (int, float)) or summary[k] < 0:
            fail(f"summary.json {k} = {summary.get(k)!r}, expected a number >= 0")
    if not math.isclose(summary["img_per_s"], summary["images"] / summary["seconds"], rel_tol=1e-9):
        fail(f"img_per_s {summary['img_per_s']} != images / seconds")
    if "tensorboard" in summary:
        fail("--no-tensorboard, yet summary.json names a TensorBoard folder")

    wants = [f"best:  top-1 {100 * best['top1']:.2f}% (epoch {best['epoch']}, update {best['update']})\n",
             "; per worker: exposed communication ", ", waiting for data ",
             f"checkpoint: {expect['checkpoint']} (4 written by this run)\n",
             f"summary: {os.path.join(out, 'summary.json')}\n", f"plot:  python3 tools/plot.py {out}\n"]
    for w in wants:
        if w not in stdout:
            fail(f"the terminal summary lacks {w!r}:\n{stdout}")
    # Resumed with nothing left to train: the summary keeps the run's last loss and evaluation
    # (this process logged none of its own), not zeros.
    r = subprocess.run([a.lockstep, "train", "--resume", out, "--device", "cpu"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0 or "nothing to train" not in r.stdout:
        fail(f"resuming the finished run exited {r.returncode}:\n{r.stdout}")
    with open(os.path.join(out, "summary.json")) as f:
        again = json.load(f)
    for k in ("final_loss", "final_top1", "eval", "best_eval", "updates"):
        if again.get(k) != summary.get(k):
            fail(f"after a resume with nothing to train summary.json {k} = {again.get(k)!r}, was {summary.get(k)!r}")
    print("PASS")


if __name__ == "__main__":
    main()
