#!/usr/bin/python3
"""torchvision's loader on the same folder and augmentation as `lockstep bench data`.

Needs Debian's python3-torchvision (with python3-torch and python3-pil), which
tools/setup-deps.sh does NOT install (about 1 GB installed):
    sudo apt-get install --no-install-recommends python3-torchvision

    /usr/bin/python3 tools/reference/torchvision_loader.py --data DIR --loader-threads T \
        [--image-size 224] [--batch-size 64] [--batches 20] [--warmup 3]

ImageFolder(DIR/train or DIR) + DataLoader(num_workers=T, shuffle) with
RandomResizedCrop(size) + RandomHorizontalFlip + PILToTensor (u8, as lockstep hands out u8;
no normalisation, which lockstep does on the device). Reports images/s over --batches after
--warmup, and per worker process (per core when there are no more workers than cores). Unreadable
files are skipped by a loader that returns the next sample, like lockstep's skip policy.
"""
import argparse
import os
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--loader-threads", type=int, required=True)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()

    import torch
    from torchvision import datasets, transforms

    torch.set_num_threads(1)
    root = os.path.join(a.data, "train") if os.path.isdir(os.path.join(a.data, "train")) else a.data
    tf = transforms.Compose([transforms.RandomResizedCrop(a.image_size), transforms.RandomHorizontalFlip(),
                             transforms.PILToTensor()])

    class Skipping(datasets.ImageFolder):
        def __getitem__(self, i):
            for k in range(len(self.samples)):
                try:
                    return super().__getitem__((i + k) % len(self.samples))
                except Exception:  # truncated / empty files: the next sample, as lockstep does
                    continue
            raise RuntimeError("no sample decodes")

    ds = Skipping(root, transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, drop_last=True,
                                     num_workers=a.loader_threads, persistent_workers=True,
                                     prefetch_factor=4)
    print(f"torchvision loader: {root}, {len(ds)} images, {len(dl)} batches of {a.batch_size} per epoch, "
          f"{a.image_size}x{a.image_size}, {a.loader_threads} worker process(es)")
    it = iter(dl)

    def take():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(dl)
            return next(it)

    for _ in range(a.warmup):
        take()
    t0, images = time.perf_counter(), 0
    for _ in range(a.batches):
        images += take()[0].shape[0]
    secs = time.perf_counter() - t0
    print(f"  {images} images in {secs:.2f} s after {a.warmup} warm-up batches: {images / secs:.1f} images/s, "
          f"{images / secs / a.loader_threads:.1f} images/s per worker")


if __name__ == "__main__":
    main()
