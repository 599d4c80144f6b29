#!/usr/bin/env bash
# Runs every test Kiln has, in two builds:
#   1. build/ (as scripts/setup.sh made it): ctest runs the unit tests, the ONNX node tests (conformance)
#      and the onnxruntime model comparisons (models).
#   2. build-asan/ (clang-14, AddressSanitizer + UndefinedBehaviorSanitizer, libFuzzer targets): ctest
#      again (the same tests, now under the sanitizers), then each fuzzer for a bounded time.
# Every stage runs even if an earlier one failed; the summary at the end lists them and the script exits
# non-zero if any failed.
#
# Usage: bash scripts/test.sh [--long] [--fuzz-seconds N] [--no-sanitize]
#   --long          fuzz for 20 minutes per target instead of 60 seconds (by hand, not in CI)
#   --no-sanitize   only the main build
# Environment: KILN_JOBS (build parallelism, default nproc); KILN_BUILD_DIR and KILN_ASAN_BUILD_DIR (the
# two build folders, default build and build-asan).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzz_seconds=60
sanitize=1
while [ $# -gt 0 ]; do
  case "$1" in
    --long) fuzz_seconds=1200 ;;
    --fuzz-seconds) fuzz_seconds="$2"; shift ;;
    --no-sanitize) sanitize=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

jobs="${KILN_JOBS:-$(nproc)}"
main_dir="${KILN_BUILD_DIR:-build}"
asan_dir="${KILN_ASAN_BUILD_DIR:-build-asan}"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
logs="$(mktemp -d)"
summary=()
failed=0

stage() {  # stage NAME COMMAND...: runs a command, records its result, never stops the script
  local name="$1"; shift
  echo
  echo "=== ${name} ==="
  local start=$SECONDS
  if "$@"; then
    summary+=("PASS  ${name} ($((SECONDS - start)) s)")
  else
    summary+=("FAIL  ${name} ($((SECONDS - start)) s)")
    failed=1
  fi
}

configure() {  # configure DIR EXTRA_ARGS...: first time with the generator, later keeping the cache
  local dir="$1"; shift
  if [ -f "${dir}/CMakeCache.txt" ]; then
    cmake -S . -B "${dir}" "$@"
  else
    cmake -S . -B "${dir}" "${generator[@]}" "${launcher[@]}" "$@"
  fi
}

run_ctest() {  # run_ctest DIR: all tests, output of failures shown, counts kept for the summary
  local log="${logs}/$(basename "$1").ctest" status=0
  ctest --test-dir "$1" --output-on-failure -j "${jobs}" 2>&1 | tee "${log}" || status=1
  # The node-test runner's totals, printed even when it passes (ctest keeps every test's output here).
  grep -h '^Overall: ' "$1/Testing/Temporary/LastTest.log" >>"${log}" 2>/dev/null || true
  return "${status}"
}

build_main() {
  configure "${main_dir}" && cmake --build "${main_dir}" -j "${jobs}"
}

build_asan() {
  # Without tests/fuzz/CMakeLists.txt the build still runs the tests under the sanitizers.
  local fuzz=ON
  [ -f tests/fuzz/CMakeLists.txt ] || fuzz=OFF
  # -O1 -g without NDEBUG: asserts stay on, stacks stay readable, runs stay fast enough for the tests.
  # No Python module here: an ASan-built extension cannot load into the uninstrumented interpreter.
  configure "${asan_dir}" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DKILN_ENABLE_CUDA=OFF \
      -DKILN_SANITIZE=ON -DKILN_FUZZ="${fuzz}" -DKILN_PYTHON=OFF -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" &&
    cmake --build "${asan_dir}" -j "${jobs}"
}

run_fuzzers() {  # every executable in ${asan_dir}/tests/fuzz/ for ${fuzz_seconds} s
  local found=0 status=0 f name corpus seeds
  for f in $(find "${asan_dir}/tests/fuzz" -name CMakeFiles -prune -o -type f -executable -print 2>/dev/null |
             sort); do
    found=1
    name="$(basename "$f")"
    corpus="${logs}/corpus-${name}"
    mkdir -p "${corpus}"
    # Seed folders (see tests/fuzz/CMakeLists.txt) are read only: libFuzzer writes what it finds into the
    # first, temporary folder, so the tree is not changed.
    seeds=()
    case "${name}" in
      importer_fuzz) [ -d tests/fuzz/corpus ] && seeds+=(tests/fuzz/corpus) ;;
      *) [ -d "tests/fuzz/${name%_fuzz}_corpus" ] && seeds+=("tests/fuzz/${name%_fuzz}_corpus") ;;
    esac
    echo "--- ${name}: ${fuzz_seconds} s (log: ${logs}/${name}.fuzz)"
    if "$f" -max_total_time="${fuzz_seconds}" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="${logs}/${name}-" "${corpus}" "${seeds[@]}" \
        >"${logs}/${name}.fuzz" 2>&1; then
      grep -h '^Done \|stat::number_of_executed_units\|stat::peak_rss_mb' "${logs}/${name}.fuzz" || true
    else
      tail -n 60 "${logs}/${name}.fuzz"
      echo "fuzzer ${name} failed; the input that did it: $(ls "${logs}/${name}"-* 2>/dev/null | tr '\n' ' ')"
      status=1
    fi
  done
  if [ "${found}" = 0 ]; then echo "no fuzz targets in ${asan_dir}/tests/fuzz/"; return 1; fi
  return "${status}"
}

stage "build (${main_dir}/)" build_main
stage "ctest ${main_dir}/ (unit, conformance, models)" run_ctest "${main_dir}"

if [ "${sanitize}" = 1 ]; then
  if command -v clang++-14 >/dev/null; then
    export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    export LSAN_OPTIONS="suppressions=${PWD}/tests/lsan.supp:print_suppressions=0"
    stage "build (${asan_dir}/, clang-14, ASan+UBSan, fuzzers)" build_asan
    stage "ctest ${asan_dir}/ (the same tests under ASan+UBSan)" run_ctest "${asan_dir}"
    if [ -f tests/fuzz/CMakeLists.txt ]; then
      stage "fuzz (${fuzz_seconds} s per target)" run_fuzzers
    else
      summary+=("SKIP  fuzz: tests/fuzz/CMakeLists.txt does not exist (no fuzz targets written yet)")
    fi
  else
    summary+=("FAIL  sanitizer build: clang++-14 not found (scripts/setup.sh installs it)")
    failed=1
  fi
fi

# --- summary: the counts CI shows -----------------------------------------------------------------------
echo
echo "=== summary ==="
for f in "${logs}"/*.ctest; do
  [ -f "$f" ] || continue
  echo "$(basename "$f" .ctest) ctest: $(grep -h 'tests passed' "$f" | tail -1)"
  nodes="$(grep -h '^Overall: ' "$f" | tail -1 | sed 's/^Overall: //')"
  echo "$(basename "$f" .ctest) ONNX node tests: ${nodes}"
done
printf '%s\n' "${summary[@]}"
if [ "${failed}" = 0 ]; then echo "test.sh: all stages passed"; else echo "test.sh: FAILED"; fi
exit "${failed}"
