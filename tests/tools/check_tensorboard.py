#!/usr/bin/env python3
"""Checks lockstep's TensorBoard event files with TensorBoard's own reader (EventAccumulator).

    check_tensorboard.py --lockstep BIN --work DIR

Runs short `lockstep train --device cpu` jobs on synthetic data into DIR and checks, for each:
  - tb/ holds event files that EventAccumulator loads (file_version 2), and every scalar tag
    has exactly one point per log.jsonl record that charts it, at the record's update, with
    the record's value (or the documented derivation: fractions of the interval, bytes per
    update) to float32 precision; no other tags;
  - a copy of the event file cut inside its last record loads up to the record before;
  - a run killed during a checkpoint save and resumed (a second event file beside the first)
    loads merged as its log.jsonl reads: what the killed process logged after the checkpoint
    it resumed from is gone from both (SessionLog START).
Exit 77 (ctest's skip) when this Python cannot import tensorboard.
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator
except ImportError as e:
    print(f"SKIP: {sys.executable} cannot import tensorboard ({e}); tools/setup-deps.sh installs it in /opt/lockstep-py")
    sys.exit(77)

TINY = ["train", "--arch", "tiny", "--synthetic", "--device", "cpu", "--batch-size", "8", "--epochs", "2",
        "--steps-per-epoch", "4", "--eval-steps", "1", "--log-every", "2"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def run(cmd, expect_rc=0, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if p.returncode != expect_rc:
        fail(f"{' '.join(cmd)} exited {p.returncode}, expected {expect_rc}:\n{p.stdout}")
    return p.stdout


def log_records(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def per(x, over):
    return x / over if over > 0 else 0.0


def expected_events(records):
    """The (update, {tag: value}) of every record that charts something, in log order."""
    events = []
    for r in records:
        t = r["type"]
        if t == "step":
            s = {"train/loss": r["loss"], "train/top1": r["top1"], "train/top5": r["top5"], "train/lr": r["lr"],
                 "train/images_per_s": r["img_per_s"], "train/data_wait_fraction": per(r["wait_s"], r["interval_s"]),
                 "train/bytes_sent_per_step": per(r["bytes_sent"], r["interval_updates"]),
                 "train/skipped_steps": r["skipped_updates"],
                 "train/comm_exposed_fraction": per(r["comm_s"], r["interval_s"])}
        elif t == "eval":
            s = {"eval/loss": r["loss"], "eval/top1": r["top1"], "eval/top5": r["top5"], "eval/epoch": r["epoch"]}
        elif t == "async":
            s = {"async/staleness_mean": r["staleness_mean"], "async/staleness_max": r["staleness_max"],
                 "async/active_workers": r["active_workers"]}
        elif t == "backup":
            s = {"backup/dropped_gradients": sum(r["dropped"])}
        else:
            continue
        events.append((r["update"], s))
    return events


def check_against(tb_dir, events, what):
    acc = event_accumulator.EventAccumulator(tb_dir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    if acc.file_version != 2:
        fail(f"{what}: file_version {acc.file_version}, expected 2 ('brain.Event:2')")
    want = {}
    for update, scalars in events:
        for tag, v in scalars.items():
            want.setdefault(tag, []).append((update, v))
    got_tags = set(acc.Tags()["scalars"])
    if got_tags != set(want):
        fail(f"{what}: tags {sorted(got_tags)}, expected {sorted(want)}")
    for tag, points in want.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        if [s for s, _ in got] != [s for s, _ in points]:
            fail(f"{what}: {tag} at steps {[s for s, _ in got]}, expected {[s for s, _ in points]}")
        for (step, g), (_, w) in zip(got, points):
            # simple_value is a float: the log's double rounded to float32 (relative error <= 2^-24).
            if not math.isclose(g, w, rel_tol=2.0 ** -23, abs_tol=1e-30):
                fail(f"{what}: {tag} at step {step} is {g!r}, log.jsonl says {w!r}")
    print(f"ok: {what}: {len(want)} tags, {sum(len(p) for p in want.values())} points agree with log.jsonl")
    return want


def event_files(tb_dir):
    return sorted(f for f in os.listdir(tb_dir) if f.startswith("events.out.tfevents."))


def record_starts(data):
    """Offsets of the records of a TFRecord file."""
    starts, at = [], 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        starts.append(at)
        at += 12 + length + 4
    if at != len(data):
        fail(f"event file: {len(data) - at} bytes after the last whole record")
    return starts


def check_run(lockstep, work, name, extra):
    out = os.path.join(work, name)
    shutil.rmtree(out, ignore_errors=True)
    stdout = run([lockstep] + TINY + extra + ["--out", out])
    tb = os.path.join(out, "tb")
    for hint in (f"watch: tensorboard --logdir {tb}\n", f"plot:  python3 tools/plot.py {out}\n"):
        if hint not in stdout:
            fail(f"{name}: the run's output lacks {hint!r}:\n{stdout}")
    files = event_files(tb)
    if len(files) != 1:
        fail(f"{name}: {tb} holds {files}, expected one event file")
    events = expected_events(log_records(out))
    check_against(tb, events, name)

    # Cut inside the last record (a crash mid-write): the reader keeps everything before it.
    data = open(os.path.join(tb, files[0]), "rb").read()
    last = record_starts(data)[-1]
    cut_dir = os.path.join(work, name + "-cut")
    shutil.rmtree(cut_dir, ignore_errors=True)
    os.makedirs(cut_dir)
    with open(os.path.join(cut_dir, files[0]), "wb") as f:
        f.write(data[:last + (len(data) - last) // 2])
    check_against(cut_dir, events[:-1], name + ", cut inside its last record")


def check_crash_and_resume(lockstep, work):
    """Killed while saving the checkpoint of update 4 (its step and eval records already logged),
    resumed from update 2's: both event files together read as the resumed log does."""
    out = os.path.join(work, "crash-resume")
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, LOCKSTEP_TEST_CRASH_AT="files-written:2")
    run([lockstep] + TINY + ["--checkpoint-every", "2", "--out", out], expect_rc=-9, env=env)
    before = expected_events(log_records(out))
    if max(u for u, _ in before) != 4:
        fail(f"crash-resume: the killed run logged up to update {max(u for u, _ in before)}, expected 4")
    run([lockstep, "train", "--resume", out])
    files = event_files(os.path.join(out, "tb"))
    if len(files) != 2:
        fail(f"crash-resume: tb/ holds {files}, expected the killed run's file and the resumed run's")
    records = log_records(out)
    if not any(r["type"] == "resume" and r["update"] == 2 for r in records):
        fail("crash-resume: the log has no resume record at update 2")
    want = check_against(os.path.join(out, "tb"), expected_events(records), "crash-resume")
    if [s for s, _ in want["train/loss"]] != [2, 4, 6, 8]:
        fail(f"crash-resume: train/loss at {[s for s, _ in want['train/loss']]}, expected [2, 4, 6, 8]")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lockstep", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    check_run(a.lockstep, a.work, "allreduce-2-workers", ["--workers", "2"])
    check_run(a.lockstep, a.work, "async-2-workers",
              ["--workers", "2", "--sync", "async", "--async-ramp-epochs", "0"])
    check_run(a.lockstep, a.work, "backup-2-workers",
              ["--workers", "2", "--sync", "backup", "--backup-workers", "1"])
    check_crash_and_resume(a.lockstep, a.work)
    print("PASS")


if __name__ == "__main__":
    main()
