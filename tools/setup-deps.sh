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
  openmpi-bin libopenmpi-dev  # multi-process / multi-node runs (mpirun), and their tests on CPU
  python3-matplotlib     # tools/plot.py: PNG figures of runs
  python3-venv           # the venv below (TensorBoard is not packaged by Debian)
)

# TensorBoard's own event reader checks our event files (tests/tools). Debian does not package
# TensorBoard, so it comes from PyPI into a venv beside the system Python (which keeps Debian's
# torch, numpy and matplotlib visible). Tests find it at this path and skip, saying so, without it.
tb_venv=/opt/lockstep-py
tb_version=2.21.0
install_tensorboard() {
  if [ -x "$tb_venv/bin/python" ] && "$tb_venv/bin/python" -c "import tensorboard; assert tensorboard.__version__ == '$tb_version'" 2>/dev/null; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$tb_venv")" ]; then
    echo "setup-deps: TensorBoard missing in $tb_venv; run as root (or: sudo $0)" >&2
    return 1
  fi
  echo "setup-deps: installing tensorboard $tb_version into $tb_venv"
  /usr/bin/python3 -m venv --system-site-packages "$tb_venv"
  "$tb_venv/bin/pip" install -q --disable-pip-version-check "tensorboard==$tb_version"
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  install_tensorboard
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
install_tensorboard
