#!/usr/bin/env bash
# lockstep against PyTorch on the CPU, in one command: `lockstep bench train --device cpu` and
# tools/reference/torch_bench.py (same net, batch, image size, classes, fp32, SGD step, and the
# thread count lockstep uses, read from its JSON) for resnet20 at 32x32 and resnet18 at 64x64,
# then one table with the ratio lockstep / PyTorch (tools/bench/compare.py).
#
# Usage: tools/bench/cpu_vs_torch.sh [--lockstep BIN] [--python PY] [--batch-size B] [--warmup N]
#                                    [--steps N] [--profile-steps N] [--cpus LIST] [--out DIR]
#   --lockstep  the lockstep binary (default: build/lockstep, else build-cpu/lockstep)
#   --python    an interpreter with torch and torchvision (default: /usr/bin/python3, Debian's)
#   --cpus      run both under `taskset -c LIST` (lockstep's thread count follows the affinity,
#               PyTorch gets the same count): e.g. 0 for one thread each on a busy machine
#   --out       where the JSON files and logs go (default: a temporary folder, kept and named)
# The runs alternate (lockstep, then PyTorch, per net) so a change in the machine's load hits both.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=""
py=/usr/bin/python3
batch=32 warmup=5 steps=20 profile=5 out="" pin=()
while [ $# -gt 0 ]; do
  case "$1" in
    --lockstep) bin=$2; shift 2 ;;
    --python) py=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --profile-steps) profile=$2; shift 2 ;;
    --cpus) pin=(taskset -c "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cpu_vs_torch: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  for b in "$root/build/lockstep" "$root/build-cpu/lockstep"; do [ -x "$b" ] && { bin=$b; break; }; done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "cpu_vs_torch: no lockstep binary (build it, or give --lockstep BIN)" >&2; exit 2; }
"$py" -c "import torch, torchvision" 2>/dev/null ||
  { echo "cpu_vs_torch: $py cannot import torch and torchvision (python3-torch python3-torchvision)" >&2; exit 2; }
[ -n "$out" ] || out=$(mktemp -d /tmp/cpu-vs-torch-XXXXXX)
mkdir -p "$out"

echo "cpu_vs_torch: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d)"
pairs=()
for spec in "resnet20 32" "resnet18 64"; do
  read -r arch size <<<"$spec"
  common=(--arch "$arch" --image-size "$size" --batch-size "$batch" --warmup "$warmup" --steps "$steps" --profile-steps "$profile")
  echo "== $arch at ${size}x${size}, batch $batch: lockstep"
  "${pin[@]}" "$bin" bench train --device cpu "${common[@]}" --json "$out/lockstep-$arch.json" | tee "$out/lockstep-$arch.log"
  threads=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["threads"])' "$out/lockstep-$arch.json")
  echo "== $arch at ${size}x${size}, batch $batch: PyTorch, $threads thread(s) as lockstep"
  "${pin[@]}" "$py" "$root/tools/reference/torch_bench.py" --device cpu "${common[@]}" --threads "$threads" \
    --json "$out/pytorch-$arch.json" | tee "$out/pytorch-$arch.log"
  pairs+=("$out/lockstep-$arch.json" "$out/pytorch-$arch.json")
done
echo
python3 "$root/tools/bench/compare.py" "${pairs[@]}"
echo
echo "cpu_vs_torch: JSON and logs in $out"
