#!/usr/bin/env python3
"""Runs a training benchmark and checks the JSON it writes (lockstep bench train, or the PyTorch
reference tools/reference/torch_bench.py): the fields exist and agree with each other. Speed is
never checked (benchmarks measure it; a test must not time anything against a threshold).

    check_bench_json.py --json FILE --engine lockstep|pytorch [--expect KEY=VALUE ...]
                        [--require-python PY] -- COMMAND ARGS...

Checks:
  - every field of the shared format is there with the right type: arch, device, precision,
    batch, workers, global_batch, steps, step_timing (the same on both engines),
    img_per_s_median/min/max, step_ms_median,
    phases_ms {data, h2d, forward, backward, comm, optimizer}, peak_memory_bytes, engine;
  - global_batch = batch x workers; min <= median <= max images/s;
  - img_per_s_median x step_ms_median / 1000 = global_batch within 5% (both engines make it
    exact by taking the median as a real step);
  - the phases (null where an engine cannot separate one: lockstep none, PyTorch data, h2d and
    comm) sum to profiled_step_ms within 5%;
  - where the JSON has a time by op (PyTorch's ops_ms_per_step, from --profile-ops), every row has
    an op name, calls > 0 and ms >= 0, largest first. The sum is compared with the profiled steps' own
    time, not with step_ms_median: those are separate runs of steps, and on a shared machine two
    timings differ by more than 5% by noise alone, which a test must not depend on. The ratio to
    step_ms_median is printed for information.
--require-python PY: exit 77 (ctest's skip) when PY cannot import torch and torchvision.
"""
import argparse
import json
import math
import os
import subprocess
import sys

PHASES = ["data", "h2d", "forward", "backward", "comm", "optimizer"]
# Both engines time their steps the same way, and say so in these words.
STEP_TIMING = "a mark at each step's start (device events; the host clock on a CPU), no wait inside"
NULLABLE = {"lockstep": set(), "pytorch": {"data", "h2d", "comm"}}
TOL = 0.05


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def number(j, key, positive=True):
    v = j.get(key, "missing")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        fail(f"{key} is {v!r}, expected a number")
    if positive and v <= 0:
        fail(f"{key} is {v}, expected > 0")
    return v


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        fail("usage: check_bench_json.py --json FILE --engine E [--expect K=V] [--require-python PY] -- COMMAND...")
    split = argv.index("--")
    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--engine", required=True, choices=sorted(NULLABLE))
    p.add_argument("--expect", action="append", default=[], help="KEY=VALUE: the field's JSON text must be VALUE")
    p.add_argument("--require-python")
    a = p.parse_args(argv[:split])
    cmd = argv[split + 1:]

    if a.require_python:
        r = subprocess.run([a.require_python, "-c", "import torch, torchvision"], capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["exit status %d" % r.returncode])[-1]
            print(f"SKIP: {a.require_python} cannot import torch, torchvision ({last}); "
                  "install python3-torch python3-torchvision (tools/setup-deps.sh)")
            sys.exit(77)

    if os.path.exists(a.json):
        os.remove(a.json)  # a file left by an earlier run must not pass
    r = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stdout.write(r.stderr)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}")
    with open(a.json) as f:
        j = json.load(f)

    if j.get("engine") != a.engine:
        fail(f"engine is {j.get('engine')!r}, expected {a.engine!r}")
    for key in ["arch", "device", "precision"]:
        if not isinstance(j.get(key), str) or not j[key]:
            fail(f"{key} is {j.get(key)!r}, expected a string")
    for key in ["batch", "workers", "global_batch", "steps", "peak_memory_bytes"]:
        if not isinstance(j.get(key), int) or isinstance(j.get(key), bool) or j[key] <= 0:
            fail(f"{key} is {j.get(key)!r}, expected a positive integer")
    for e in a.expect:
        key, _, want = e.partition("=")
        if json.dumps(j.get(key)) != want and str(j.get(key)) != want:
            fail(f"{key} is {j.get(key)!r}, expected {want}")
    if j.get("step_timing") != STEP_TIMING:
        fail(f"step_timing is {j.get('step_timing')!r}, expected {STEP_TIMING!r}")
    if j["global_batch"] != j["batch"] * j["workers"]:
        fail(f"global_batch {j['global_batch']} != batch {j['batch']} x workers {j['workers']}")

    med, lo, hi = number(j, "img_per_s_median"), number(j, "img_per_s_min"), number(j, "img_per_s_max")
    if not lo <= med <= hi:
        fail(f"images/s min {lo} <= median {med} <= max {hi} does not hold")
    step_ms = number(j, "step_ms_median")
    images = med * step_ms / 1000
    if abs(images - j["global_batch"]) > TOL * j["global_batch"]:
        fail(f"img_per_s_median x step_ms_median / 1000 = {images:.3f}, global_batch {j['global_batch']}")

    phases = j.get("phases_ms")
    if not isinstance(phases, dict) or sorted(phases) != sorted(PHASES):
        fail(f"phases_ms is {phases!r}, expected the keys {PHASES}")
    total = 0.0
    for name in PHASES:
        v = phases[name]
        if v is None:
            if name not in NULLABLE[a.engine]:
                fail(f"phases_ms.{name} is null; {a.engine} measures it")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            fail(f"phases_ms.{name} is {v!r}, expected a number >= 0")
        total += v
    profiled = number(j, "profiled_step_ms")
    if abs(total - profiled) > TOL * profiled:
        fail(f"the phases sum to {total:.3f} ms, the profiled step took {profiled:.3f} ms (more than 5% apart)")

    if "ops_ms_per_step" in j:
        ops = j["ops_ms_per_step"]
        if not isinstance(ops, list) or not ops:
            fail(f"ops_ms_per_step is {ops!r}, expected a non-empty list")
        for o in ops:
            if not isinstance(o.get("op"), str) or not o["op"] or not o.get("calls", 0) > 0 or not o.get("ms", -1) >= 0:
                fail(f"ops_ms_per_step row {o!r}: expected an op name, calls > 0 and ms >= 0")
        if [o["ms"] for o in ops] != sorted((o["ms"] for o in ops), reverse=True):
            fail("ops_ms_per_step is not largest first")

    print(f"ok: {a.engine} {j['arch']} on {j['device']}: {med:.1f} img/s x {step_ms:.2f} ms = {images:.2f} images "
          f"(global batch {j['global_batch']}); phases {total:.2f} ms = {100 * total / profiled:.1f}% of the profiled "
          f"step, {100 * total / step_ms:.1f}% of the timed median (informational)")


if __name__ == "__main__":
    main()
