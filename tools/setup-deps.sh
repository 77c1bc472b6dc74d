#!/usr/bin/env bash
# Installs every Debian package that building, testing and the default training job need.
# Idempotent and quiet: does nothing when all are present. Run as root on a fresh machine.
# The CUDA toolkit, cuDNN 9 and NCCL 2 are not Debian packages: they come with the machine
# (or PyTorch's wheels); without them lockstep builds its CPU engine alone.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config python3
  libopenblas-dev        # CPU GEMMs (the CPU backend's conv and linear)
  libgtest-dev           # GoogleTest
  libcxxopts-dev         # the lockstep command's options
  nlohmann-json3-dev     # run logs, checkpoint state
  libjpeg62-turbo-dev    # JPEG decoding (libjpeg-turbo)
  libturbojpeg0-dev      # libjpeg-turbo's TurboJPEG API (DCT-scaled decode, CMYK, encode)
  dataset-fashion-mnist  # the default training job's data (IDX files)
  libpng-dev             # PNG decoding (ImageNet has PNGs named .JPEG)
  zlib1g-dev             # gzip'd IDX files (MNIST, Fashion-MNIST)
  python3-torch python3-torchvision  # the interop test: our checkpoints load into torchvision and back
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-deps: missing ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
