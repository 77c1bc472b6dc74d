#!/usr/bin/env bash
# Runs every lockstep test on a GPU machine and prints a summary: each test binary in full,
# then the kernel tests once under compute-sanitizer (memcheck), then the throughput race:
# `lockstep bench train` against the PyTorch reference (tools/reference/torch_bench.py) for
# resnet50 and resnet18, bf16, batch 256, synthetic data, one GPU, in one table with the ratio
# (tools/bench/compare.py; what goes into bench/RESULTS.md). LOCKSTEP_CHECK_BENCH=0 skips the race.
# A bench that fails counts as a failure; a slow one does not. Two ways to get binaries:
#   - carried: tools/device/bundle.sh here, then on the device `bash .device/check.sh`
#     (device tool: carry [".device"]); GPU machines have no OpenBLAS or GoogleTest to build with;
#   - built there: `tools/device/check.sh --build` when the machine can build lockstep itself.
# Logs go to $OUT (or ./device-logs) so the device tool brings them back.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)          # repository root when run as .device/check.sh
out=${OUT:-$root/device-logs}
mkdir -p "$out"

bin="$root/.device/bin"
if [ "${1:-}" = "--build" ]; then
  root=$(cd "$here/../.." && pwd)
  cmake -S "$root" -B "$root/build-device" -G Ninja -DLOCKSTEP_CUDA=ON -DCMAKE_BUILD_TYPE=Release || exit 1
  cmake --build "$root/build-device" || exit 1
  bin="$root/build-device/bin-all"
  mkdir -p "$bin"
  find "$root/build-device" -type f -executable \( -name '*_tests' -o -name lockstep \) -exec cp {} "$bin/" \;
fi
[ -d "$bin" ] || { echo "check: no binaries in $bin (run tools/device/bundle.sh first)"; exit 1; }

# Libraries: packed ones first, then PyTorch's nvidia wheels (cuDNN, NCCL, cuBLAS), then the toolkit.
libs="$root/.device/lib"
py=$(command -v python3 || true)
if [ -n "$py" ]; then
  for d in $("$py" -c "import site; print(' '.join(site.getsitepackages()))" 2>/dev/null); do
    for l in "$d"/nvidia/*/lib; do [ -d "$l" ] && libs="$libs:$l"; done
  done
fi
for l in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [ -d "$l" ] && libs="$libs:$l"; done
export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
status=0
summary=""
for t in "$bin"/*_tests; do
  name=$(basename "$t")
  "$t" --gtest_brief=1 >"$out/$name.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  passed=$(grep -c '^\[       OK \]' "$out/$name.log" || true)
  line=$(grep -E '^\[  (PASSED|FAILED)  \]|tests? ran' "$out/$name.log" | tr '\n' ' ')
  skipped=$(grep -E '^\[  SKIPPED \] [0-9]+ test' "$out/$name.log" | tr '\n' ' ')
  summary="$summary\n$name: rc=$rc $line $skipped"
  grep -E '^\[  FAILED  \]' "$out/$name.log" | head -20
done

if command -v compute-sanitizer >/dev/null 2>&1 && [ -x "$bin/kernels_tests" ]; then
  compute-sanitizer --tool memcheck --error-exitcode 9 "$bin/kernels_tests" --gtest_brief=1 \
    >"$out/kernels_tests.memcheck.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  summary="$summary\nkernels_tests under compute-sanitizer memcheck: rc=$rc $(grep -E 'ERROR SUMMARY' "$out/kernels_tests.memcheck.log" | tail -1)"
else
  summary="$summary\ncompute-sanitizer: not run (not found or no kernels_tests)"
fi

# The multi-process path on one GPU: `mpirun -np 1 lockstep train --gpus 1` joins MPI, broadcasts
# the NCCL unique id over it and builds the NCCL communicator as a span (issue 11). Needs Open MPI
# on the machine (its mpirun and orted); without it this is reported as not run.
if [ -x "$bin/lockstep" ] && command -v mpirun >/dev/null 2>&1; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun -np 1 "$bin/lockstep" train \
    --gpus 1 --arch resnet18 --synthetic --steps-per-epoch 20 --eval-steps 2 --epochs 1 --batch-size 64 \
    --out "$out/mpirun-np1" >"$out/mpirun-np1.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  summary="$summary
mpirun -np 1 lockstep train --gpus 1: rc=$rc $(grep -m1 -E '^workers:|nccl' "$out/mpirun-np1.log" | head -1) $(grep -m1 '^done:' "$out/mpirun-np1.log")"
else
  summary="$summary
mpirun -np 1 lockstep train --gpus 1: not run (no mpirun on this machine)"
fi

# The throughput race. torch_bench.py and compare.py come with the bundle (.device/) or the tree.
find_script() { for f in "$here/$1" "$root/$2/$1"; do [ -f "$f" ] && { echo "$f"; return; }; done; }
if [ "${LOCKSTEP_CHECK_BENCH:-1}" != 0 ] && [ -x "$bin/lockstep" ]; then
  torch_bench=$(find_script torch_bench.py tools/reference)
  compare=$(find_script compare.py tools/bench)
  pairs=()
  for arch in resnet50 resnet18; do
    args=(--device cuda --arch "$arch" --batch-size 256 --precision bf16 --warmup 5 --steps 20 --profile-steps 5)
    "$bin/lockstep" bench train "${args[@]}" --json "$out/bench-lockstep-$arch.json" >"$out/bench-lockstep-$arch.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && status=1
    summary="$summary\nlockstep bench train $arch bf16 batch 256: rc=$rc $(grep -m1 'images/s' "$out/bench-lockstep-$arch.log" || tail -1 "$out/bench-lockstep-$arch.log")"
    if [ -n "$py" ] && [ -n "$torch_bench" ] && "$py" -c "import torch, torchvision" 2>/dev/null; then
      "$py" "$torch_bench" "${args[@]}" --json "$out/bench-pytorch-$arch.json" >"$out/bench-pytorch-$arch.log" 2>&1
      rc=$?
      summary="$summary\ntorch_bench.py $arch bf16 batch 256: rc=$rc $(grep -m1 'images/s' "$out/bench-pytorch-$arch.log" || tail -1 "$out/bench-pytorch-$arch.log")"
    else
      summary="$summary\ntorch_bench.py $arch: not run (no python3 with torch and torchvision, or no torch_bench.py)"
    fi
    pairs+=("$out/bench-lockstep-$arch.json" "$out/bench-pytorch-$arch.json")
  done
  if [ -n "$py" ] && [ -n "$compare" ]; then
    "$py" "$compare" "${pairs[@]}" >"$out/bench-table.md" 2>&1
    summary="$summary\n\n$(cat "$out/bench-table.md")"
  fi
fi

printf "\n== lockstep device check ==%b\n" "$summary"
[ $status -eq 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL"
exit $status
