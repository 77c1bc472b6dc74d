#!/usr/bin/env bash
# Fuzzes what lockstep reads from outside (tests/fuzz/README.md): builds the fuzz preset (clang,
# libFuzzer, ASan + UBSan, CPU only) into build-fuzz/, then runs each target for SECONDS on the
# committed seeds plus its own growing corpus in build-fuzz/corpus/<target>. A finding is
# written to build-fuzz/findings/<target>/ and makes the script exit 1, naming it; fix it, then
# copy the input into tests/fuzz/corpus/<target>/ so that ctest -L fuzz replays it on every build.
#   tools/fuzz/run.sh [SECONDS] [TARGET...]      (default: 60 s each; safetensors resume image idx cli)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors resume image idx cli)

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz

found=0
for t in "${targets[@]}"; do
  bin=build-fuzz/tests/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz: no target '$t'" >&2; exit 2; }
  corpus=build-fuzz/corpus/$t findings=build-fuzz/findings/$t
  mkdir -p "$corpus" "$findings"
  args=(-max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -artifact_prefix="$findings/")
  case $t in
    cli) args+=(-dict=tests/fuzz/cli.dict) ;;
    resume) args+=(-dict=tests/fuzz/json.dict -max_len=8000) ;;
    safetensors) args+=(-max_len=30000) ;;
  esac
  log=build-fuzz/fuzz_$t.log
  echo "fuzz: $t for ${seconds} s (log: $log)"
  if ! "$bin" "${args[@]}" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    found=1
    grep -E "escaped|ERROR|runtime error|SUMMARY" "$log" | head -5 >&2 || true
    ls "$findings" >&2
  fi
  grep -E "^Done" "$log" || true
done
exit $found
