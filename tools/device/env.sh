#!/usr/bin/env bash
# Sourced by check.sh (and by hand on a GPU machine: `source .device/env.sh`): points
# LD_LIBRARY_PATH at the libraries the carried binaries need: the packed ones (.device/lib),
# then PyTorch's nvidia/* wheels (cuDNN, NCCL, cuBLAS), then the toolkit, then wherever else
# cuDNN 9, NCCL 2 and cuBLAS 13 live (wheel layouts differ between CUDA majors).
_ls_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_ls_root=$(cd "$_ls_here/.." && pwd)
_ls_libs="$_ls_root/.device/lib"
_ls_py=$(command -v python3 || true)
if [ -n "$_ls_py" ]; then
  for d in $("$_ls_py" -c "import site; print(' '.join(site.getsitepackages()))" 2>/dev/null); do
    for l in "$d"/nvidia/*/lib; do [ -d "$l" ] && _ls_libs="$_ls_libs:$l"; done
  done
fi
for l in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [ -d "$l" ] && _ls_libs="$_ls_libs:$l"; done
for so in libcudnn.so.9 libnccl.so.2 libcublas.so.13; do
  d=$(find /usr/local /opt /usr/lib -name "$so" 2>/dev/null | head -1)
  [ -n "$d" ] && _ls_libs="$_ls_libs:$(dirname "$d")"
done
export LD_LIBRARY_PATH="$_ls_libs:${LD_LIBRARY_PATH:-}"
unset _ls_here _ls_root _ls_libs _ls_py
