#!/usr/bin/env bash
# Runs lockstep's GPU checks on a GPU machine and prints a summary: the kernel and net tests in
# full and the GPU tests of the engine and CLI suites; short `lockstep train` runs of each sync
# mode on the GPU, and the allreduce run twice per BN kernel set to compare the weights written;
# `mpirun -np 1` through the NCCL span (where Open MPI is there); the throughput
# race, `lockstep bench train` per option variant (--conv-algo, --cuda-graph, ...) against the PyTorch reference
# (tools/reference/torch_bench.py), resnet50 and resnet18, bf16, batch 256, synthetic data, in
# one table with the ratio (tools/bench/compare.py; what goes into bench/RESULTS.md), and
# `bench ops` of the first arch; last, the kernel tests under compute-sanitizer (memcheck).
# A bench that fails counts as a failure; a slow one does not. Two ways to get binaries:
#   - carried: tools/device/bundle.sh here, then on the device
#     `tar xJf .device.tar.xz && bash .device/check.sh` (device tool: carry [".device.tar.xz"]);
#     GPU machines have no OpenBLAS or GoogleTest to build with;
#   - built there: `tools/device/check.sh --build` when the machine can build lockstep itself.
# Knobs (for a short lease): LOCKSTEP_CHECK_DEADLINE=S ends every step within S seconds;
# LOCKSTEP_CHECK_TESTS="nets_tests ..." runs only those binaries; LOCKSTEP_CHECK_ALL=1 runs every
# suite in full; LOCKSTEP_CHECK_TRAIN=0, LOCKSTEP_CHECK_BENCH=0, LOCKSTEP_CHECK_OPS=0,
# LOCKSTEP_CHECK_DATA=0 (the race from real JPEGs), LOCKSTEP_CHECK_FUSION=0 (tools/device/
# fusion_probe), LOCKSTEP_CHECK_SANITIZER=0 skip those steps; LOCKSTEP_CHECK_ARCHS and LOCKSTEP_CHECK_VARIANTS
# choose the race's rows (LOCKSTEP_CHECK_VARIANTS: lockstep option sets separated by ';');
# LOCKSTEP_CHECK_SANITIZER_FILTER (a gtest filter) narrows the memcheck run;
# LOCKSTEP_CHECK_OPS_VARIANTS (';'-separated, default --stem-space-to-depth) adds bench ops runs
# beside the first variant's; LOCKSTEP_CHECK_*_TIMEOUT cap single steps.
# Logs go to one $OUT/device-logs.tar.gz (the device tool brings back at most 8 files), the
# summary and the race's table beside it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)          # repository root when run as .device/check.sh
# The device tool brings back at most 8 files from $OUT: logs are written to a work folder and
# packed into one $OUT/device-logs.tar.gz at the end (plus the summary and the race's table).
final_out=${OUT:-$root/device-logs}
out=$(mktemp -d /tmp/lockstep-check.XXXXXX)
mkdir -p "$final_out"
pack_logs() { tar czf "$final_out/device-logs.tar.gz" --exclude=checkpoints --exclude='*tfevents*' -C "$out" . 2>/dev/null; }
trap pack_logs EXIT

bin="$root/.device/bin"
if [ "${1:-}" = "--build" ]; then
  root=$(cd "$here/../.." && pwd)
  cmake -S "$root" -B "$root/build-device" -G Ninja -DLOCKSTEP_CUDA=ON -DCMAKE_BUILD_TYPE=Release || exit 1
  cmake --build "$root/build-device" || exit 1
  bin="$root/build-device/bin-all"
  mkdir -p "$bin"
  find "$root/build-device" -type f -executable \( -name '*_tests' -o -name lockstep -o -name fusion_probe \) -exec cp {} "$bin/" \;
fi
[ -d "$bin" ] || { echo "check: no binaries in $bin (run tools/device/bundle.sh first)"; exit 1; }

# Libraries (packed ones, PyTorch's nvidia wheels, the toolkit): env.sh, beside this script.
source "$here/env.sh"
py=$(command -v python3 || true)

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
ldd "$bin/lockstep" 2>&1 | grep -E 'not found|cudnn|nccl|cublas\.|cudart' | sed 's/^/lib: /'
status=0
summary=""
# Each result is printed as it comes (so a run cut short still shows what it reached) and again
# in the summary at the end.
note() { summary="$summary\n$1"; printf '%b\n' "$1"; }
trap 'pack_logs; exit 143' TERM
# LOCKSTEP_CHECK_DEADLINE=S: every step's timeout is cut so that the whole check ends within S
# seconds (a device lease is short; a hung step must not eat the summary).
deadline=${LOCKSTEP_CHECK_DEADLINE:-100000}
tmo() { local t=$1 r=$((deadline - SECONDS - 10)); [ $r -lt "$t" ] && t=$r; [ $t -lt 5 ] && t=5; echo $t; }
# What runs where: the kernel and net tests in full (each CUDA op against the CPU op); from the
# engine and CLI suites only the tests that use a GPU (the rest are CPU-only and run in CI), so
# the check fits a lease. LOCKSTEP_CHECK_ALL=1 runs every suite in full.
gpu_filter() {
  case "$1" in
    engine_tests) echo 'Config.*:LossScaler.*:Distributed.WorkersSharingAGpu*:Nccl*:LocalCommunicator.TwoRanksSharingOneGpu*:*Cuda*:*Gpu*' ;;
    tools_tests) echo 'CliTrain.DeviceDefault*:CliTrain.Cuda*:*Cuda*:*Gpu*' ;;
    data_tests|resume_tests) echo '-*' ;;
    *) echo '*' ;;
  esac
}
for t in "$bin"/*_tests; do
  name=$(basename "$t")
  filter=$(gpu_filter "$name")
  [ "${LOCKSTEP_CHECK_ALL:-0}" = 1 ] && filter='*'
  [ "$filter" = '-*' ] && continue
  # LOCKSTEP_CHECK_TESTS="nets_tests ...": only these binaries (a rerun after a fix).
  [ -n "${LOCKSTEP_CHECK_TESTS:-}" ] && [[ " $LOCKSTEP_CHECK_TESTS " != *" $name "* ]] && continue
  timeout "$(tmo "${LOCKSTEP_CHECK_TEST_TIMEOUT:-180}")" "$t" --gtest_brief=1 --gtest_filter="$filter" >"$out/$name.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  line=$(grep -E '^\[  (PASSED|FAILED)  \]|tests? ran' "$out/$name.log" | tr '\n' ' ')
  skipped=$(grep -E '^\[  SKIPPED \] [0-9]+ test' "$out/$name.log" | tr '\n' ' ')
  note "$name: rc=$rc $line $skipped"
  # --gtest_brief prints only failures: show their messages (bounded), or the tail of a hang.
  [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -v '^\[==\|^\[--\|^Running main' "$out/$name.log" | head -c 6000
  [ $rc -ge 124 ] && tail -20 "$out/$name.log"
done

# Training end to end on the GPU: short synthetic runs of each sync mode that fits one GPU (two or
# three workers share it for the multi-worker modes; the server modes keep their shards on it),
# and the allreduce run again under --cuda-graph. Each must finish and report.
if [ -x "$bin/lockstep" ] && [ "${LOCKSTEP_CHECK_TRAIN:-1}" != 0 ]; then
  base=(train --device cuda --arch resnet18 --synthetic --steps-per-epoch 12 --eval-steps 2 --epochs 2
        --batch-size 32 --image-size 64 --classes 10)
  for mode in allreduce allreduce-graph sign average async backup coded; do
    case "$mode" in
      allreduce) extra=() ;;
      allreduce-graph) extra=(--cuda-graph) ;;
      backup) extra=(--workers-per-gpu 3 --backup-workers 1) ;;
      coded) extra=(--workers-per-gpu 3 --stragglers 1) ;;
      *) extra=(--workers-per-gpu 2) ;;
    esac
    timeout "$(tmo 240)" "$bin/lockstep" "${base[@]}" --sync "${mode%-graph}" "${extra[@]}" --out "$out/train-$mode" \
      >"$out/train-$mode.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && { status=1; tail -5 "$out/train-$mode.log"; }
    note "lockstep train --device cuda --sync ${mode%-graph} ${extra[*]}: rc=$rc $(grep -m1 '^done:' "$out/train-$mode.log") $(grep -m1 '^eval:' "$out/train-$mode.log") $(grep -m1 '^batch norm kernels:' "$out/train-$mode.log")"
  done
fi

# Run to run: the allreduce run twice with the same seed, per BN kernel set; the weights written
# at the end must be the same bytes for lockstep's kernels (they promise it: no float atomics),
# and for cuDNN's the result says whether they are (a finding, not a failure). 10 classes: the fc
# bias's 10 values once left cuDNN's BN parameters misaligned (nets/params.h).
if [ -x "$bin/lockstep" ] && [ "${LOCKSTEP_CHECK_TRAIN:-1}" != 0 ]; then
  for kernels in lockstep cudnn; do
    sums=()
    for run in 1 2; do
      d="$out/train-repeat-$kernels-$run"
      timeout "$(tmo 120)" "$bin/lockstep" "${base[@]}" --sync allreduce --bn-kernels "$kernels" --out "$d" \
        >"$d.log" 2>&1 || { status=1; tail -5 "$d.log"; }
      sums+=("$(sha256sum "$(ls -d "$d"/checkpoints/step-* 2>/dev/null | sort -V | tail -1)/model.safetensors" 2>/dev/null | cut -c1-16)")
    done
    same=no
    [ -n "${sums[0]}" ] && [ "${sums[0]}" = "${sums[1]}" ] && same=yes
    [ "$kernels" = lockstep ] && [ "$same" != yes ] && status=1
    note "lockstep train --device cuda --bn-kernels $kernels, twice, same seed: same weights: $same (${sums[*]}) $(grep -m1 '^eval:' "$out/train-repeat-$kernels-1.log")"
  done
fi

# The multi-process path on one GPU: `mpirun -np 1 lockstep train --gpus 1` joins MPI, broadcasts
# the NCCL unique id over it and builds the NCCL communicator as a span (issue 11). Needs Open MPI
# on the machine (its mpirun and orted); without it this is reported as not run.
if [ -x "$bin/lockstep" ] && [ "${LOCKSTEP_CHECK_TRAIN:-1}" != 0 ] && mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout "$(tmo 300)" mpirun -np 1 "$bin/lockstep" train \
    --gpus 1 --arch resnet18 --synthetic --steps-per-epoch 20 --eval-steps 2 --epochs 1 --batch-size 64 \
    --out "$out/mpirun-np1" >"$out/mpirun-np1.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  note "mpirun -np 1 lockstep train --gpus 1: rc=$rc $(grep -m1 -E '^workers:|nccl' "$out/mpirun-np1.log" | head -1) $(grep -m1 '^done:' "$out/mpirun-np1.log")"
else
  note "mpirun -np 1 lockstep train --gpus 1: not run (no Open MPI mpirun on this machine, or LOCKSTEP_CHECK_TRAIN=0)"
fi

# The throughput race. torch_bench.py and compare.py come with the bundle (.device/) or the tree.
find_script() { for f in "$here/$1" "$root/$2/$1"; do [ -f "$f" ] && { echo "$f"; return; }; done; }
if [ "${LOCKSTEP_CHECK_BENCH:-1}" != 0 ] && [ -x "$bin/lockstep" ]; then
  torch_bench=$(find_script torch_bench.py tools/reference)
  compare=$(find_script compare.py tools/bench)
  pairs=()
  # Each arch: PyTorch once, lockstep once per variant (extra `bench train` options, separated by
  # ';'; the first arch only), so the table shows what each choice buys: the defaults (BN kernels
  # auto: cuDNN's in bf16), the stem's space-to-depth form, cuDNN's algorithm choice (--conv-algo:
  # our timing of the legacy API's candidates, or the graph API's engines ranked or timed as
  # PyTorch's cudnn.benchmark does), CUDA graphs, the promising ones together, our BN kernels
  # (--bn-kernels lockstep); most telling first, as the lease may end. Then each layer of the
  # first arch (bench ops, slowest first) under the first variant and under each of
  # LOCKSTEP_CHECK_OPS_VARIANTS (';'-separated).
  IFS=';' read -r -a variants <<<"${LOCKSTEP_CHECK_VARIANTS:---conv-algo heuristic;--stem-space-to-depth;--conv-algo measure;--conv-algo graph-measure;--conv-algo graph;--cuda-graph;--stem-space-to-depth --conv-algo measure --cuda-graph;--stem-space-to-depth --conv-algo graph-measure --cuda-graph;--bn-kernels lockstep}"
  for arch in ${LOCKSTEP_CHECK_ARCHS:-resnet50 resnet18}; do
    args=(--device cuda --arch "$arch" --batch-size 256 --precision bf16 --warmup 5 --steps 20 --profile-steps 5)
    if [ -n "$py" ] && [ -n "$torch_bench" ] && "$py" -c "import torch, torchvision" 2>/dev/null; then
      # The first arch also gets PyTorch's time by op, to set beside bench ops' (below).
      prof=()
      [ "$arch" = "$(echo ${LOCKSTEP_CHECK_ARCHS:-resnet50 resnet18} | awk '{print $1}')" ] && prof=(--profile-ops 3)
      timeout "$(tmo "${LOCKSTEP_CHECK_BENCH_TIMEOUT:-200}")" "$py" "$torch_bench" "${args[@]}" "${prof[@]}" --json "$out/bench-pytorch-$arch.json" >"$out/bench-pytorch-$arch.log" 2>&1
      rc=$?
      note "torch_bench.py $arch bf16 batch 256: rc=$rc $(grep -m1 'images/s' "$out/bench-pytorch-$arch.log" || tail -1 "$out/bench-pytorch-$arch.log")"
      [ ${#prof[@]} -gt 0 ] && note "$(sed -n '/time by op/,/sum of ops/p' "$out/bench-pytorch-$arch.log")"
    else
      note "torch_bench.py $arch: not run (no python3 with torch and torchvision, or no torch_bench.py)"
    fi
    # Every variant for the first arch; the others run the first variant only (the lease is short).
    idx=("${!variants[@]}")
    [ "$arch" != "$(echo ${LOCKSTEP_CHECK_ARCHS:-resnet50 resnet18} | awk '{print $1}')" ] && idx=(0)
    for i in "${idx[@]}"; do
      read -r -a extra <<<"${variants[$i]}"
      j="$out/bench-lockstep-$arch-$i.json"
      # LOCKSTEP_CONV_LOG: each conv's cuDNN algorithms (and rank) go into the variant's log.
      LOCKSTEP_CONV_LOG=1 timeout "$(tmo "${LOCKSTEP_CHECK_BENCH_TIMEOUT:-200}")" "$bin/lockstep" bench train "${args[@]}" "${extra[@]}" \
        --json "$j" >"$out/bench-lockstep-$arch-$i.log" 2>&1
      rc=$?
      [ $rc -ne 0 ] && status=1
      note "lockstep bench train $arch bf16 batch 256 ${variants[$i]}: rc=$rc $(grep -m1 'images/s' "$out/bench-lockstep-$arch-$i.log" || tail -1 "$out/bench-lockstep-$arch-$i.log")"
      pairs+=("$j" "$out/bench-pytorch-$arch.json")
    done
  done
  if [ "${LOCKSTEP_CHECK_OPS:-1}" != 0 ]; then
    first=$(echo ${LOCKSTEP_CHECK_ARCHS:-resnet50} | awk '{print $1}')
    IFS=';' read -r -a ops_variants <<<"${variants[0]};${LOCKSTEP_CHECK_OPS_VARIANTS---stem-space-to-depth}"
    for i in "${!ops_variants[@]}"; do
      read -r -a extra <<<"${ops_variants[$i]}"
      timeout "$(tmo 120)" "$bin/lockstep" bench ops --device cuda --arch "$first" --batch-size 256 --precision bf16 \
        "${extra[@]}" --top "${LOCKSTEP_CHECK_OPS_TOP:-25}" --json "$out/bench-ops-$first-$i.json" >"$out/bench-ops-$first-$i.log" 2>&1
      rc=$?
      [ $rc -ne 0 ] && status=1
      note "lockstep bench ops $first ${ops_variants[$i]}: rc=$rc\n$(cat "$out/bench-ops-$first-$i.log")"
    done
  fi
  if [ -n "$py" ] && [ -n "$compare" ]; then
    "$py" "$compare" "${pairs[@]}" >"$out/bench-table.md" 2>&1
    note "\n$(cat "$out/bench-table.md")"
  fi
fi

# Whether cuDNN here runs BN statistics and the BN + ReLU prologue inside the convolutions (the
# fusions MLPerf's ResNets use), and at what cost against the plain convolutions.
if [ "${LOCKSTEP_CHECK_FUSION:-1}" != 0 ] && [ -x "$bin/fusion_probe" ]; then
  timeout "$(tmo "${LOCKSTEP_CHECK_FUSION_TIMEOUT:-150}")" "$bin/fusion_probe" >"$out/fusion_probe.log" 2>&1
  note "fusion_probe: rc=$?\n$(cat "$out/fusion_probe.log")"
fi

# Real JPEGs: can this machine's cores feed the GPU? A synthetic folder of ImageNet-sized JPEGs
# (outside the logs), the loader alone (bench data), then the ResNet-50 step reading it.
if [ "${LOCKSTEP_CHECK_DATA:-1}" != 0 ] && [ "${LOCKSTEP_CHECK_BENCH:-1}" != 0 ] && [ -x "$bin/lockstep" ]; then
  jpegs=$(mktemp -d /tmp/lockstep-jpegs.XXXXXX)
  threads=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
  if timeout "$(tmo 90)" "$bin/lockstep" dataset make-synthetic --out "$jpegs" --classes 10 --per-class 520 \
      >"$out/make-synthetic.log" 2>&1; then
    timeout "$(tmo 60)" "$bin/lockstep" bench data --data "$jpegs" --loader-threads "$threads" >"$out/bench-data.log" 2>&1
    note "lockstep bench data, $threads loader threads: rc=$? $(grep -m1 -E 'images/s|img/s' "$out/bench-data.log")"
    timeout "$(tmo 120)" "$bin/lockstep" bench train --device cuda --arch resnet50 --batch-size 256 --precision bf16 \
      --data "$jpegs" --loader-threads "$threads" --warmup 3 --steps 10 --profile-steps 2 \
      --json "$out/bench-lockstep-resnet50-jpegs.json" >"$out/bench-train-jpegs.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && status=1
    note "lockstep bench train resnet50 bf16 batch 256 from JPEGs, $threads loader threads: rc=$rc $(grep -m1 'images/s' "$out/bench-train-jpegs.log" || tail -1 "$out/bench-train-jpegs.log") $(grep -m1 'data wait' "$out/bench-train-jpegs.log")"
  else
    note "dataset make-synthetic: failed or timed out ($(tail -1 "$out/make-synthetic.log"))"
  fi
  rm -rf "$jpegs"
fi

# Last, as it is the slowest: the kernel tests under compute-sanitizer (memcheck).
if [ "${LOCKSTEP_CHECK_SANITIZER:-1}" = 0 ]; then
  note "compute-sanitizer: skipped (LOCKSTEP_CHECK_SANITIZER=0)"
elif command -v compute-sanitizer >/dev/null 2>&1 && [ -x "$bin/kernels_tests" ]; then
  # SgdCuda.GraphCaptureRefusesHostSync makes CUDA calls fail on purpose (a host sync inside a
  # capture must be refused), and memcheck counts every failed API call as an error.
  # LOCKSTEP_CHECK_SANITIZER_FILTER narrows it (a gtest filter), e.g. to the kernels new since the
  # last memcheck.
  timeout "$(tmo "${LOCKSTEP_CHECK_SANITIZER_TIMEOUT:-240}")" compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$bin/kernels_tests" --gtest_brief=1 \
    --gtest_filter="${LOCKSTEP_CHECK_SANITIZER_FILTER:-*}:-SgdCuda.GraphCaptureRefusesHostSync" \
    >"$out/kernels_tests.memcheck.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  note "kernels_tests under compute-sanitizer memcheck: rc=$rc $(grep -E 'ERROR SUMMARY' "$out/kernels_tests.memcheck.log" | tail -1)"
else
  note "compute-sanitizer: not run (not found or no kernels_tests)"
fi


printf "\n== lockstep device check ==%b\n" "$summary" | tee "$out/summary.txt"
# Beside the packed logs (which hold every JSON), only what is read first: more than 8 files in
# $OUT and the device tool leaves some behind.
cp "$out"/summary.txt "$out"/bench-table.md "$final_out"/ 2>/dev/null
[ $status -eq 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL"
exit $status
