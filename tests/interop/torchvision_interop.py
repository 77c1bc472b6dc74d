#!/usr/bin/env python3
"""lockstep <-> torchvision checkpoint interop (run with an interpreter that has torch and torchvision).

a. ours -> torchvision: a checkpoint written by `lockstep train` loads into
   torchvision.models.resnet18 with load_state_dict(strict=True) as it is (same keys in the same
   order, num_batches_tracked included) and gives the logits lockstep gives for the same batch.
b. torchvision -> ours: state_dicts saved from torchvision (F32, and BF16) with BN made non-trivial
   load into lockstep (lockstep_forward) and give torchvision's eval-mode logits; `lockstep eval`
   accepts the F32 file; a file whose conv kernels are transposed must NOT match (the comparison
   can fail).

Logits are compared by max |ours - theirs| / max |theirs|. Each check prints one line; the exit
status is 1 when any fails. The safetensors format is read and written here by hand: an 8-byte
little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} with an optional
"__metadata__", then the data buffer.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import torch
import torchvision

TOL = 1e-4          # f32 vs f32: only summation order differs
TOL_ROUNDED = 5e-2  # bf16-rounded weights vs the original f32 ones (torchvision itself: ~2.7e-2 here)
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def read_safetensors(path):
    """(tensors in data-offset order, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = bytearray(raw[8 + n:])
    tensors = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        flat = torch.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]])
        tensors[name] = flat.reshape(info["shape"]).clone()
    return tensors, meta


def write_safetensors(path, tensors, metadata=None):
    names = {v: k for k, v in DTYPES.items()}
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        b = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def torch_state(model, dtype=torch.float32):
    """The state_dict as a file holds it: floats in `dtype`, num_batches_tracked as I64."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}


def rel_err(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def lockstep_logits(args, arch, classes, weights, x, name):
    """lockstep_forward on x (N, 3, S, S) given as NHWC; returns (N, classes)."""
    xin = os.path.join(args.workdir, name + "-input.safetensors")
    out = os.path.join(args.workdir, name + "-logits.safetensors")
    write_safetensors(xin, {"input": x.permute(0, 2, 3, 1).contiguous()})
    run([args.forward, "--arch", arch, "--classes", str(classes), "--image-size", str(x.shape[-1]),
         "--weights", weights, "--input", xin, "--output", out])
    return read_safetensors(out)[0]["logits"]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}{p.stderr}")
    return p.stdout


class Checks:
    def __init__(self):
        self.failed = 0

    def expect(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what, flush=True)
        self.failed += not ok

    def logits(self, ours, theirs, tol, what):
        e = rel_err(ours, theirs)
        self.expect(ours.shape == theirs.shape and e < tol, f"{what}: max rel error {e:.2e} (< {tol:g})")


def ours_to_torchvision(args, checks):
    out = os.path.join(args.workdir, "train")
    shutil.rmtree(out, ignore_errors=True)
    # Residual gammas stay at 1 so every conv of every block shapes the logits.
    run([args.lockstep, "train", "--arch", "resnet18", "--synthetic", "--device", "cpu", "--classes", "10",
         "--image-size", "64", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--eval-steps", "1",
         "--no-zero-init-residual", "--out", out])
    with open(os.path.join(out, "checkpoints", "latest")) as f:
        step = f.read().strip()
    path = os.path.join(out, "checkpoints", step, "model.safetensors")
    sd, meta = read_safetensors(path)

    model = torchvision.models.resnet18(num_classes=10)
    result = model.load_state_dict(sd, strict=True)  # raises on any missing, unexpected or misshapen key
    checks.expect(not result.missing_keys and not result.unexpected_keys,
                  f"ours -> torchvision: {path} loads into resnet18(num_classes=10) strictly ({len(sd)} tensors)")
    checks.expect(list(model.state_dict().keys()) == list(sd.keys()),
                  "ours -> torchvision: the file's keys equal torchvision's state_dict keys, in order")
    nbt = [k for k in sd if k.endswith("num_batches_tracked")]
    checks.expect(all(sd[k].dtype == torch.int64 and sd[k].shape == () and sd[k].item() == 2 for k in nbt)
                  and all(v.dtype == torch.float32 for k, v in sd.items() if k not in nbt),
                  f"ours -> torchvision: floats are F32, the {len(nbt)} num_batches_tracked are I64 scalars = 2")
    checks.expect(meta.get("arch") == "resnet18" and meta.get("classes") == "10" and meta.get("image_size") == "64",
                  f"ours -> torchvision: metadata names the network ({meta})")

    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = model.eval()(x)
    checks.logits(lockstep_logits(args, "resnet18", 10, path, x, "ours"), theirs, TOL,
                  "ours -> torchvision: resnet18 logits, lockstep vs torchvision (eval)")


def randomized(arch, classes, seed):
    """torchvision's net with every BN made non-trivial: running statistics from one train-mode batch
    (momentum 1), then random gamma, beta and fc bias; num_batches_tracked = 5."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(num_classes=classes)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.momentum = 1.0
        model.train()(torch.randn(8, 3, 64, 64) * 2 + 0.5)
        for bn in bns:
            bn.momentum = 0.1
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.2)
            bn.num_batches_tracked.fill_(5)
        model.fc.bias.normal_(0, 0.1)
    return model.eval()


def torchvision_to_ours(args, checks):
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    for arch, classes in (("resnet18", 10), ("resnet50", 7)):
        model = randomized(arch, classes, seed=3)
        path = os.path.join(args.workdir, f"torchvision-{arch}-f32.safetensors")
        write_safetensors(path, torch_state(model))
        with torch.no_grad():
            theirs = model(x)
        checks.logits(lockstep_logits(args, arch, classes, path, x, arch), theirs, TOL,
                      f"torchvision -> ours: {arch} ({classes} classes) F32 file, lockstep vs torchvision logits")

        if arch == "resnet18":
            # The comparison has teeth: every conv kernel transposed (R <-> S keeps the shape, so the
            # file still loads) must give other logits.
            bad = {k: v.transpose(2, 3) if v.dim() == 4 else v for k, v in torch_state(model).items()}
            bad_path = os.path.join(args.workdir, "torchvision-resnet18-transposed.safetensors")
            write_safetensors(bad_path, bad)
            e = rel_err(lockstep_logits(args, arch, classes, bad_path, x, "transposed"), theirs)
            checks.expect(e > 100 * TOL, f"torchvision -> ours: transposed conv kernels are caught (rel error {e:.2e})")

            out = run([args.lockstep, "eval", "--weights", path, "--arch", arch, "--synthetic", "--device", "cpu",
                       "--eval-steps", "1", "--image-size", "64"])
            checks.expect("eval" in out, "torchvision -> ours: `lockstep eval --weights` accepts the PyTorch file"
                          f" (classes from fc.weight): {out.strip().splitlines()[-1] if out.strip() else ''}")

            # BF16: lockstep widens the rounded weights exactly, so it matches torchvision run with the
            # same rounded weights at the f32 tolerance, and the original only to the rounding.
            path16 = os.path.join(args.workdir, "torchvision-resnet18-bf16.safetensors")
            write_safetensors(path16, torch_state(model, torch.bfloat16))
            ours16 = lockstep_logits(args, arch, classes, path16, x, "bf16")
            rounded = getattr(torchvision.models, arch)(num_classes=classes)
            rounded.load_state_dict({k: v.float() if v.is_floating_point() else v
                                     for k, v in torch_state(model, torch.bfloat16).items()})
            with torch.no_grad():
                theirs16 = rounded.eval()(x)
            checks.logits(ours16, theirs16, TOL, "torchvision -> ours: resnet18 BF16 file vs torchvision with the same rounded weights")
            checks.logits(ours16, theirs, TOL_ROUNDED, "torchvision -> ours: resnet18 BF16 file vs the original F32 weights"
                          f" (torchvision's own rounding error {rel_err(theirs16, theirs):.2e})")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lockstep", required=True, help="the lockstep binary")
    p.add_argument("--forward", required=True, help="the lockstep_forward binary")
    p.add_argument("--workdir", required=True, help="a folder for the files made here (emptied first)")
    args = p.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}", flush=True)
    checks = Checks()
    start = time.monotonic()
    for check in (ours_to_torchvision, torchvision_to_ours):
        try:
            check(args, checks)
        except Exception as e:  # a crash is a failed check, reported with what ran
            checks.expect(False, f"{check.__name__}: {type(e).__name__}: {e}")
    print(f"{'FAILED' if checks.failed else 'passed'}: {checks.failed} failure(s) in {time.monotonic() - start:.1f} s")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
