#!/usr/bin/env python3
"""Prints lockstep against PyTorch as a Markdown table, from the JSON files that `lockstep bench
train --json` and tools/reference/torch_bench.py --json write (python3 only, no torch needed).

    tools/bench/compare.py LOCKSTEP.json PYTORCH.json [LOCKSTEP.json PYTORCH.json ...]

One row per pair: images/s (median, and min-max over the timed steps), the ratio of the medians
lockstep / PyTorch (> 1: lockstep is faster), median step times, peak memory (each engine's own
measure: see the JSON's peak_memory_kind), then each engine's phase breakdown (profiled steps,
ms per step; '-' where an engine cannot separate a phase). A file that is missing or unreadable
(a run that failed) gives a row that says so.
"""
import json
import sys

PHASES = ["data", "h2d", "forward", "backward", "comm", "optimizer"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": f"{path}: {e.__class__.__name__}"}


def mib(b):
    return f"{b / 2**20:.0f} MiB" if isinstance(b, (int, float)) else "-"


def ips(j):
    return f"{j['img_per_s_median']:.1f} ({j['img_per_s_min']:.1f}-{j['img_per_s_max']:.1f})"


def options(j):
    """lockstep's cuDNN algorithm choice (--conv-algo), padded or space-to-depth stem, BN kernels and CUDA graphs, where
    the JSON has them."""
    out = f", conv {j['conv_algo']}" if j.get("conv_algo") else ""
    if j.get("conv_api_used"):  # how much of a graph search ran through the graph API
        out += f" ({j['conv_api_used']})"
    out += f", stem {j['stem_channels']} ch" if j.get("stem_channels") else ""
    out += ", stem space-to-depth" if j.get("stem_space_to_depth") else ""
    bn = j.get("bn_kernels")
    if bn == "auto" and j.get("bn_kernels_used"):  # what auto resolved to
        out += f", bn auto ({j['bn_kernels_used']})"
    elif bn not in (None, "lockstep"):
        out += f", bn {bn}"
    return out + (", cuda graph" if j.get("cuda_graph") else "")


def phases(j):
    p = j.get("phases_ms") or {}
    return " / ".join("-" if p.get(k) is None else f"{p[k]:.1f}" for k in PHASES)


def main(paths):
    if not paths or len(paths) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    print("| net | input | batch x workers | precision | device | threads | lockstep img/s (min-max) "
          "| PyTorch img/s (min-max) | lockstep / PyTorch | step ms lockstep / PyTorch | peak memory lockstep / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for ours_path, theirs_path in zip(paths[::2], paths[1::2]):
        ours, theirs = load(ours_path), load(theirs_path)
        if "error" in ours or "error" in theirs:
            cell = lambda j: j["error"] if "error" in j else ips(j)  # noqa: E731
            print(f"| {ours.get('arch', theirs.get('arch', '?'))} | | | | | | {cell(ours)} | {cell(theirs)} | - | | |")
            continue
        ratio = ours["img_per_s_median"] / theirs["img_per_s_median"]
        print(f"| {ours['arch']} | {ours['image_size']} px, {ours['classes']} classes | {ours['batch']} x {ours['workers']} "
              f"| {ours['precision']}{options(ours)} | {ours['device']} | {ours.get('threads', '-')} / {theirs.get('threads', '-')} "
              f"| {ips(ours)} | {ips(theirs)} | **{ratio:.2f}x** "
              f"| {ours['step_ms_median']:.1f} / {theirs['step_ms_median']:.1f} "
              f"| {mib(ours['peak_memory_bytes'])} / {mib(theirs['peak_memory_bytes'])} |")
        rows.append((ours, theirs))
    if rows:
        print()
        print("| net | engine | ms per step: data / h2d / forward / backward / comm / optimizer (profiled steps) "
              "| profiled step ms |")
        print("|---|---|---|---|")
        for ours, theirs in rows:
            for j in (ours, theirs):
                prof = j.get("profiled_step_ms")
                print(f"| {j['arch']} | {j['engine']}{options(j)} | {phases(j)} | {'-' if prof is None else f'{prof:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
