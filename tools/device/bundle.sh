#!/usr/bin/env bash
# Packs what tools/device/check.sh needs on a GPU machine into .device/ (git-ignored): the test
# and tool binaries from a build made here, the bench scripts (torch_bench.py, compare.py), and
# the shared libraries they need that a GPU machine lacks (OpenBLAS, gfortran, gomp...). cuDNN,
# NCCL, cuBLAS and the CUDA runtime are NOT packed: the GPU machine has them (toolkit and
# PyTorch's nvidia/* wheels), and they are large.
# The folder is also packed as .device.tar.xz (about 8 MB instead of 56: the device tool carries
# at most 64 MiB with the working tree).
# Usage: tools/device/bundle.sh [build-dir]; then on the device, with carry [".device.tar.xz"]:
#   tar xJf .device.tar.xz && bash .device/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
[ -d "$build" ] || { echo "bundle: no build directory '$build' (cmake --workflow --preset default first)" >&2; exit 1; }
rm -rf .device
mkdir -p .device/bin .device/lib
find "$build" -type f -executable \( -name '*_tests' -o -name lockstep -o -name fusion_probe \) -exec cp {} .device/bin/ \;
skip='^(libc|libm|libdl|librt|libpthread|ld-linux|libstdc\+\+|libgcc_s|libcuda|libcudnn|libnccl|libcublas|libcublasLt|libcudart)\.'
for b in .device/bin/*; do
  ldd "$b" | awk '/=> \//{print $1, $3}' | while read -r name path; do
    if ! [[ $name =~ $skip ]]; then cp -Ln "$path" .device/lib/ 2>/dev/null || true; fi
  done
done
cp tools/device/check.sh tools/device/env.sh tools/reference/torch_bench.py tools/bench/compare.py .device/
tar cJf .device.tar.xz .device
du -sh .device .device.tar.xz | awk '{print "bundle: " $2 " is " $1}'
ls .device/bin
