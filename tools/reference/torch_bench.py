#!/usr/bin/env python3
"""PyTorch's side of `lockstep bench train`: the same training step, timed the same way.

Run it with an interpreter that has torch and torchvision (Debian's python3-torch and
python3-torchvision are installed for /usr/bin/python3):

    /usr/bin/python3 tools/reference/torch_bench.py --device cpu --arch resnet20 --batch-size 32 --threads 2
    python3 tools/reference/torch_bench.py --device cuda --arch resnet50 --batch-size 256 --precision bf16 --json t.json

What matches lockstep:
  - the model: torchvision's resnet18/34/50/101/152 (ResNet v1.5), or He et al.'s CIFAR
    resnet20/32/44/56/110 built below as lockstep's nets/ builds them: a 3x3 stride-1 stem of 16
    channels with BN and ReLU (no pooling), three stages of n = (depth - 2) / 6 basic blocks of
    16, 32 and 64 channels (the first block of stages 2 and 3 strides by 2), a projection shortcut
    (1x1 conv + BN) wherever a block changes the shape, global average pooling and a linear layer
    with bias; convolutions have no bias. zero_init_residual as lockstep's default (the last BN
    gamma of each block starts at 0; it changes no cost);
  - batch, image size and classes (defaults: 224 px / 1000 classes for ImageNet nets, 32 px / 10
    classes for CIFAR nets, as lockstep's);
  - precision: fp32 on the CPU; on the GPU bf16 (autocast) with channels_last by default, fp16 with
    autocast and a GradScaler, or fp32 (TF32 off, as lockstep's fp32);
  - the step: cross-entropy (mean over the batch), backward, SGD with momentum 0.9, weight decay
    1e-4 on convolution and linear weights only (lockstep's default: no decay on BN and biases),
    no Nesterov; gradients set to None after each step;
  - timing: --warmup untimed steps, then --steps steps timed by a mark at each step's start (a
    CUDA event on the current stream; the host clock on the CPU) with no wait for the device
    between them, median / min / max images/s over them (the median is the lower middle step, as
    lockstep's); then --profile-steps steps with the device waited for after forward (+ loss),
    backward and the optimizer, for the breakdown.
What differs, on purpose: the synthetic batch (random normal images, uniform labels) is made once
on the device, so there is no data or host-to-device phase (null in the JSON), and one process has
no communication (null). lockstep uploads and normalises a batch every step (the upload on its
copy stream, under the previous step's work). cudnn.benchmark is on
(what a user wanting speed sets).

Prints a table and, with --json FILE, one JSON object with the fields of lockstep bench train's.
"""
import argparse
import contextlib
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torchvision

IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR = {"resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56, "resnet110": 110}


def cifar_resnet(depth, classes):
    """He et al.'s CIFAR ResNet as lockstep builds it (nets/resnet.cpp, nets/blocks.cpp)."""
    from torchvision.models.resnet import BasicBlock

    n = (depth - 2) // 6
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
    c = 16
    for stage in range(3):
        width = 16 << stage
        for b in range(n):
            stride = 2 if (b == 0 and stage > 0) else 1
            down = None
            if stride != 1 or c != width:
                down = nn.Sequential(nn.Conv2d(c, width, 1, stride, bias=False), nn.BatchNorm2d(width))
            layers.append(BasicBlock(c, width, stride, down))
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)  # zero_init_residual
    return model


def make_model(arch, classes):
    if arch in IMAGENET:
        return getattr(torchvision.models, arch)(num_classes=classes, zero_init_residual=True)
    return cifar_resnet(CIFAR[arch], classes)


# How the timed steps are timed, the same words in lockstep's JSON.
STEP_TIMING = "a mark at each step's start (device events; the host clock on a CPU), no wait inside"


def lower_median(values):
    s = sorted(values)
    return s[(len(s) - 1) // 2]


def profile_ops(step, n, cuda):
    """Self time per aten op and step over n steps under torch.profiler, largest first: the device's
    (kernels attributed to the op that launched them) on CUDA, the host's on the CPU."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(n):
            step()
    rows = []
    for e in prof.key_averages():
        if cuda:
            us = getattr(e, "self_device_time_total", None)
            if us is None:
                us = getattr(e, "self_cuda_time_total", 0)
        else:
            us = e.self_cpu_time_total
        if us > 0:
            rows.append({"op": e.key, "calls": e.count / n, "ms": us / 1e3 / n})
    rows.sort(key=lambda o: -o["ms"])
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet50", choices=IMAGENET + list(CIFAR))
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default 32, as lockstep)")
    p.add_argument("--image-size", type=int, help="default: 224 for ImageNet nets, 32 for CIFAR nets")
    p.add_argument("--classes", type=int, help="default: 1000 for ImageNet nets, 10 for CIFAR nets")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                   help="NHWC tensors (default on cuda)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (give lockstep's count, its JSON 'threads')")
    p.add_argument("--warmup", type=int, default=5, help="steps run before timing (default 5)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--profile-steps", type=int, default=5, help="steps timed phase by phase (default 5; 0: none)")
    p.add_argument("--profile-ops", type=int, default=0, metavar="N",
                   help="after the rest, N steps under torch.profiler: device (CPU: host) time per aten op and step, "
                        "to set beside lockstep bench ops' time by op (default 0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to FILE as one JSON object")
    a = p.parse_args(argv)

    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error(f"--device {a.device}: no usable GPU (torch.cuda.is_available() is False)")
    if cuda and device.index is None:
        device = torch.device("cuda", 0)
    precision = a.precision or ("bf16" if cuda else "fp32")
    if not cuda and precision != "fp32":
        p.error("--precision: the CPU runs fp32 (as lockstep's CPU backend)")
    if a.batch_size < 1 or a.steps < 1 or a.warmup < 0 or a.profile_steps < 0:
        p.error("--batch-size and --steps must be >= 1, --warmup and --profile-steps >= 0")
    channels_last = cuda if a.channels_last is None else a.channels_last
    image_size = a.image_size or (224 if a.arch in IMAGENET else 32)
    classes = a.classes or (1000 if a.arch in IMAGENET else 10)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as lockstep's
        torch.backends.cudnn.allow_tf32 = False
        torch.cuda.reset_peak_memory_stats(device)
        # Device memory in use before the model, once the CUDA context exists (as lockstep
        # measures it: the context is not counted, cuDNN's and cuBLAS's handles are).
        torch.zeros(1, device=device)
        torch.cuda.synchronize(device)
        free, total = torch.cuda.mem_get_info(device)
        used_before = total - free

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = make_model(a.arch, classes).to(device=device, memory_format=fmt)
    model.train()
    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.1, momentum=0.9, nesterov=False)
    criterion = nn.CrossEntropyLoss()
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.cuda.amp.GradScaler(enabled=precision == "fp16")
    x = torch.randn(a.batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (a.batch_size,), device=device)
    loss_sum = torch.zeros((), device=device)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def step(marks=None, wait=True):
        nonlocal loss_sum
        amp = torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with amp:
            loss = criterion(model(x), y)
        loss_sum = loss_sum + loss.detach().float()
        if marks is not None:
            sync()
            marks.append(time.perf_counter())
        scaler.scale(loss).backward()
        if marks is not None:
            sync()
            marks.append(time.perf_counter())
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if wait:
            sync()
        if marks is not None:
            marks.append(time.perf_counter())

    for _ in range(a.warmup):
        step(wait=False)
    sync()
    # The timed steps: a mark at each step's start (a CUDA event on the current stream, the host
    # clock on the CPU) and no wait for the device between them, as lockstep times its own.
    starts = [torch.cuda.Event(enable_timing=True) if cuda else None for _ in range(a.steps + 1)]
    for i, mark in enumerate(starts):
        if cuda:
            mark.record()
        else:
            starts[i] = time.perf_counter()
        if i < a.steps:
            step(wait=False)
    sync()
    if cuda:
        step_s = [starts[i].elapsed_time(starts[i + 1]) / 1e3 for i in range(a.steps)]
    else:
        step_s = [starts[i + 1] - starts[i] for i in range(a.steps)]
    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    start = time.perf_counter()
    for _ in range(a.profile_steps):
        marks = [time.perf_counter()]
        step(marks)
        phases["forward"] += marks[1] - marks[0]
        phases["backward"] += marks[2] - marks[1]
        phases["optimizer"] += marks[3] - marks[2]
    profiled_s = (time.perf_counter() - start) / a.profile_steps if a.profile_steps else None
    total_steps = a.warmup + a.steps + a.profile_steps
    loss = loss_sum.item() / total_steps if total_steps else 0.0

    if cuda:
        # The same measure as lockstep's: device memory in use after the steps less before the
        # model (the caching allocator's reserve, cuDNN's and cuBLAS's workspaces included). The
        # tensors alone are tensor_peak_bytes.
        free, total = torch.cuda.mem_get_info(device)
        peak = max(total - free - used_before, 0)
        peak_kind = "device memory in use after the steps less before setup (cudaMemGetInfo), largest per GPU"
        tensor_peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_kind = "peak resident set of the process (getrusage ru_maxrss)"
    # After the memory reading: the profiler's own buffers are not the step's.
    ops = profile_ops(step, a.profile_ops, cuda) if a.profile_ops > 0 else None

    s = sorted(step_s)
    median = lower_median(step_s)
    gb = a.batch_size
    P = a.profile_steps
    phases_ms = {"data": None, "h2d": None,
                 "forward": phases["forward"] / P * 1e3 if P else None,
                 "backward": phases["backward"] / P * 1e3 if P else None,
                 "comm": None,
                 "optimizer": phases["optimizer"] / P * 1e3 if P else None}
    r = {
        "engine": "pytorch",
        "arch": a.arch,
        "device": str(device),
        "precision": precision,
        "image_size": image_size,
        "classes": classes,
        "batch": a.batch_size,
        "workers": 1,
        "global_batch": gb,
        "threads": torch.get_num_threads(),
        "sync": None,
        "data": "synthetic (one batch made on the device)",
        "warmup": a.warmup,
        "steps": a.steps,
        "step_timing": STEP_TIMING,
        "img_per_s_median": gb / median,
        "img_per_s_min": gb / s[-1],
        "img_per_s_max": gb / s[0],
        "step_ms_median": median * 1e3,
        "step_ms_min": s[0] * 1e3,
        "step_ms_max": s[-1] * 1e3,
        "profiled_steps": P,
        "phases_ms": phases_ms,
        "profiled_step_ms": profiled_s * 1e3 if P else None,
        "peak_memory_bytes": int(peak),
        "peak_memory_kind": peak_kind,
        "tensor_peak_bytes": int(tensor_peak) if cuda else None,
        "loss": loss,
        "channels_last": channels_last,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    if ops is not None:
        r["ops_ms_per_step"] = ops

    print(f"torch_bench: {a.arch}, {image_size}x{image_size} px, {classes} classes, {precision} on {device}, "
          f"batch {gb}, {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}"
          f"{', channels_last' if channels_last else ''}")
    print(f"  {a.warmup} warm-up step(s), {a.steps} timed step(s) ({STEP_TIMING})"
          + (f", then {P} profiled step(s) for the breakdown" if P else "") + "\n")
    print(f"  images/s    median {gb / median:10.1f}   min {gb / s[-1]:10.1f}   max {gb / s[0]:10.1f}")
    print(f"  step time   median {median * 1e3:7.2f} ms   min {s[0] * 1e3:7.2f} ms   max {s[-1] * 1e3:7.2f} ms\n")
    if P:
        print("  phase (profiled steps, mean per step)                ms        %")
        total = 0.0
        for name, label in [("forward", "forward (+ loss)"), ("backward", "backward"), ("optimizer", "optimizer")]:
            v = phases_ms[name]
            total += v
            print(f"    {label:<46} {v:9.3f} {100 * v / (profiled_s * 1e3):8.1f}")
        print(f"    {'sum of phases':<46} {total:9.3f} {100 * total / (profiled_s * 1e3):8.1f}   of the profiled step "
              f"({profiled_s * 1e3:.3f} ms)\n")
    if ops is not None:
        total = sum(o["ms"] for o in ops)
        print(f"  time by op, per step ({a.profile_ops} step(s) under torch.profiler, "
              f"{'device' if cuda else 'host'} self time)")
        print(f"  {'op':<44} {'calls':>8} {'ms':>10} {'%':>7}")
        for o in ops[:25]:
            print(f"  {o['op']:<44} {o['calls']:8.0f} {o['ms']:10.3f} {100 * o['ms'] / total if total else 0:7.1f}")
        print(f"  sum of ops {total:.3f} ms ({len(ops)} op kinds)\n")
    print(f"  peak memory {peak / 2**20:.1f} MiB ({peak_kind})"
          + (f"; tensors alone {tensor_peak / 2**20:.1f} MiB (torch.cuda.max_memory_allocated)" if cuda else ""))
    print(f"  training loss {loss:.4f} (mean over the run)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
            f.write("\n")
        print(f"  wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
