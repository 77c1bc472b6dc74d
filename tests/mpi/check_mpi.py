#!/usr/bin/env python3
"""Multi-process runs end to end: `mpirun -np 2 lockstep train --device cpu --workers 2` against one
process with 4 workers, checkpoints and exact resume across processes, and failures (a killed
process, a stopped one, one that raises) ending every process. Standard library only.

usage: check_mpi.py MODE --lockstep BIN --mpirun MPIRUN --work DIR
  MODE: parity-allreduce | parity-sign | parity-average | resume | killed | stuck | raises
"""
import argparse
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

SMALL = ["train", "--device", "cpu", "--synthetic", "--classes", "10", "--image-size", "16",
         "--batch-size", "8", "--epochs", "2", "--steps-per-epoch", "6", "--eval-steps", "2",
         "--log-every", "2", "--no-tensorboard", "--comm-timeout", "60"]


def env():
    e = dict(os.environ)
    # CI runs as root; Open MPI refuses that unless told, and may not bind to cores it lacks.
    e.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    return e


def run(cmd, timeout=300):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), timeout=timeout)
    if p.returncode != 0:
        sys.exit("FAILED (exit %d): %s\n%s" % (p.returncode, " ".join(cmd), p.stdout))
    return p.stdout


def mpi(a, n, args):
    return [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(n), a.lockstep] + args


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        b, e = spec["data_offsets"]
        if spec["dtype"] == "F32":
            out[name] = struct.unpack("<%df" % ((e - b) // 4), data[b:e])
        elif spec["dtype"] == "I64":
            out[name] = struct.unpack("<%dq" % ((e - b) // 8), data[b:e])
    return out


def latest(run_dir):
    with open(os.path.join(run_dir, "checkpoints", "latest")) as f:
        return os.path.join(run_dir, "checkpoints", f.read().strip())


def parity(a, sync):
    args = SMALL + ["--arch", "tiny_nobn", "--sync", sync]
    if sync == "average":
        args += ["--average-every", "3"]
    one = os.path.join(a.work, "one-process")
    two = os.path.join(a.work, "two-processes")
    run([a.lockstep] + args + ["--workers", "4", "--out", one])
    out = run(mpi(a, 2, args + ["--workers", "2", "--out", two]))
    assert "workers: 4 (2 processes x 2)" in out, out
    ref = read_safetensors(os.path.join(latest(one), "model.safetensors"))
    got = read_safetensors(os.path.join(latest(two), "model.safetensors"))
    assert ref.keys() == got.keys(), (ref.keys(), got.keys())
    worst = 0.0
    for name in ref:
        num = math.sqrt(sum((x - y) ** 2 for x, y in zip(ref[name], got[name])))
        den = math.sqrt(sum(y * y for y in ref[name])) or 1.0
        worst = max(worst, num / den)
        assert num / den < 1e-5, "%s: relative difference %.3g" % (name, num / den)
    changed = any(abs(x) > 0 for v in ref.values() for x in v)
    assert changed, "the model is all zeros"
    print("parity %s: 2 processes x 2 workers == 1 process x 4 workers (worst relative difference %.3g)" % (sync, worst))


def resume(a):
    # tiny has BatchNorm (per-rank statistics in workers.safetensors) and sign keeps momentum per
    # rank: both must travel from process 1 to the writer and back on resume.
    for sync in ("sign", "allreduce"):
        args = SMALL + ["--arch", "tiny", "--sync", sync, "--workers", "2", "--checkpoint-every", "4"]
        whole = os.path.join(a.work, "whole-" + sync)
        parts = os.path.join(a.work, "parts-" + sync)
        run(mpi(a, 2, args + ["--out", whole]))
        out = run(mpi(a, 2, args + ["--out", parts, "--stop-after", "5"]))
        assert "stopped after update 5" in out, out
        out = run(mpi(a, 2, args + ["--out", parts, "--resume", parts]))
        assert "resume:" in out, out
        for f in ("model.safetensors", "optimizer.safetensors", "workers.safetensors"):
            x = os.path.join(latest(whole), f)
            y = os.path.join(latest(parts), f)
            if not os.path.exists(x):
                continue
            with open(x, "rb") as fx, open(y, "rb") as fy:
                assert fx.read() == fy.read(), "%s differs after resume (%s)" % (f, sync)
        print("resume %s: stopped at 5 and resumed == uninterrupted, byte for byte" % sync)


def find_rank_pid(tag, rank):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                vars_ = f.read().split(b"\0")
        except OSError:
            continue
        if b"LOCKSTEP_TEST_TAG=" + tag.encode() in vars_ and b"OMPI_COMM_WORLD_RANK=%d" % rank in vars_:
            return int(pid)
    return None


def failure(a, how):
    out_dir = os.path.join(a.work, how)
    args = SMALL + ["--arch", "tiny_nobn", "--workers", "2", "--epochs", "100000", "--comm-timeout", "5",
                    "--out", out_dir]
    tag = "%s-%d" % (how, os.getpid())
    e = env()
    e["LOCKSTEP_TEST_TAG"] = tag
    if how == "raises":  # process 1 alone fails after joining: weights that exist but are not safetensors
        bad = os.path.join(a.work, "corrupt.safetensors")
        with open(bad, "wb") as f:
            f.write(b"\xff" * 64)
        cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", "1", a.lockstep] + args + [":", "-np", "1",
               a.lockstep] + args + ["--init-from", bad]
    else:
        cmd = mpi(a, 2, args)
    start = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e)
    victim = None
    if how in ("killed", "stuck"):
        log = os.path.join(out_dir, "log.jsonl")
        while time.time() - start < 60:  # wait until training runs
            if os.path.exists(log) and '"type":"step"' in open(log).read():
                victim = find_rank_pid(tag, 1)
                if victim:
                    break
            time.sleep(0.1)
        assert victim, "process 1 never started training"
        print("process 1 is pid %d; sending %s" % (victim, "SIGKILL" if how == "killed" else "SIGSTOP"))
        os.kill(victim, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        hit = time.time()
    else:
        hit = start
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        if victim and how == "stuck":
            os.kill(victim, signal.SIGKILL)
        sys.exit("FAILED: the run did not end within 60 s after process 1 %s" % how)
    took = time.time() - hit
    if victim and how == "stuck":
        try:
            os.kill(victim, signal.SIGKILL)  # mpirun kills it; make sure nothing is left behind
        except ProcessLookupError:
            pass
    assert p.returncode != 0, "exit 0 although process 1 %s:\n%s" % (how, out)
    expect = {"killed": "process rank 1", "stuck": "got no answer within 5 s", "raises": "process 1 of 2"}[how]
    assert expect in out, "the output does not say %r:\n%s" % (expect, out)
    if os.environ.get("CHECK_MPI_VERBOSE"):
        print(out)
    print("%s: every process ended (exit %d) %.1f s after process 1 %s, the message names it"
          % (how, p.returncode, took, how))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--lockstep", required=True)
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    if a.mode.startswith("parity-"):
        parity(a, a.mode[len("parity-"):])
    elif a.mode == "resume":
        resume(a)
    elif a.mode in ("killed", "stuck", "raises"):
        failure(a, a.mode)
    else:
        sys.exit("unknown mode " + a.mode)


if __name__ == "__main__":
    main()
