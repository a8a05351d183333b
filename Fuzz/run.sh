#!/usr/bin/env bash
# Fuzz/run.sh SECONDS [TARGET...]
#
# Builds dlog-fuzz optimized, with libFuzzer and AddressSanitizer, into .build/fuzz (never the normal .build), then
# runs every target (or the named ones) for SECONDS each. Prints executions per second and total executions
# per target from libFuzzer's final stats; exits 1 if any target crashed, trapped or broke a contract.
#
# Inputs: the seed corpus Fuzz/corpus/<target>/ (read only; regenerate it with `dlog-fuzz seed Fuzz/corpus`
# from a plain `swift build --product dlog-fuzz`). New inputs libFuzzer finds go to .build/fuzz-corpus/<target>/,
# crash inputs to .build/fuzz-artifacts/<target>-crash-*, full logs to .build/fuzz-artifacts/<target>.log.
# Replay a crash with the plain build: .build/debug/dlog-fuzz replay TARGET FILE.
#
# DLOG_FUZZ_SANITIZERS overrides the sanitizers (default fuzzer,address; "fuzzer" alone runs about twice as
# fast but finds only traps, not memory errors).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:?usage: Fuzz/run.sh SECONDS [TARGET...]}
shift
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "SECONDS must be a positive whole number" >&2; exit 2; }
sanitizers=${DLOG_FUZZ_SANITIZERS:-fuzzer,address}
scratch=.build/fuzz
artifacts=.build/fuzz-artifacts
work=.build/fuzz-corpus
# Optimized, with testing enabled (the internal decoders' targets use `@testable import`): a debug build ran
# 500-1,300 inputs a second on the bookie target, this one about 10,000.
build=(swift build -c release -Xswiftc -enable-testing --scratch-path "$scratch" --product dlog-fuzz
       -Xswiftc "-sanitize=$sanitizers" -Xswiftc -DDLOG_FUZZ)

mkdir -p .build
if ! "${build[@]}" >"$scratch.build.log" 2>&1; then
    # gold warns once per ASan helper symbol it cannot export: noise, left out here.
    grep -v "Cannot export local symbol" "$scratch.build.log" | tail -n 40 >&2
    echo "fuzz build failed (log: $scratch.build.log)" >&2
    exit 2
fi
bin="$("${build[@]}" --show-bin-path)/dlog-fuzz"
mkdir -p "$artifacts"

if [[ $# -gt 0 ]]; then targets=("$@"); else mapfile -t targets < <("$bin" list); fi
failed=()
printf '%-16s %12s %14s  %s\n' target "exec/s" "total execs" result
for target in "${targets[@]}"; do
    mkdir -p "$work/$target"
    log="$artifacts/$target.log"
    status=0
    # SWIFT_BACKTRACE off: the Swift runtime's crash handler reads the stack in a way ASan reports as a stack
    # underflow, and its helper process can keep the output pipe open; libFuzzer's own handler reports traps.
    # The outer timeout only guards against a hung run; -max_total_time ends a normal one.
    SWIFT_BACKTRACE=enable=no DLOG_FUZZ_TARGET="$target" \
        timeout -k 10 $((seconds + 300)) "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -max_len=16384 -artifact_prefix="$artifacts/$target-" \
        "$work/$target" "Fuzz/corpus/$target" >"$log" 2>&1 </dev/null || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    if [[ $status -eq 0 ]]; then
        result=ok
    else
        result="FAILED (exit $status; see $log)"
        failed+=("$target")
    fi
    printf '%-16s %12s %14s  %s\n' "$target" "${rate:-?}" "${execs:-?}" "$result"
    if [[ $status -ne 0 ]]; then
        grep -E "^(==[0-9]+==ERROR|SUMMARY|Fatal error|.*contract broken|artifact_prefix)|Test unit written" "$log" | head -n 8 | sed 's/^/    /'
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
