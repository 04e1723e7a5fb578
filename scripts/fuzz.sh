#!/usr/bin/env bash
# Coverage-guided fuzzing of the file readers with libFuzzer and AddressSanitizer (SECURITY.md).
#   bash scripts/fuzz.sh [SECONDS [TARGET ...]]   # default: 60 s for each of every target
# Builds vitmerge-fuzz with -sanitize=fuzzer,address (scratch path .build-fuzz, release: -O keeps
# Swift's bounds and overflow checks and every precondition, the sources use no assert; about 2.5×
# the executions per second of a debug build; FUZZ_CONFIG=debug for -Onone), then runs each target for SECONDS from fuzz/corpus/<target>/ and
# fuzz/regressions/<target>/ (the working corpus grows in .build-fuzz/corpus/<target>/), with
# fuzz/dict/<target>.dict. A crash, a sanitizer report, a timeout or an allocation over the limits is
# minimized into fuzz/regressions/<target>/ (commit it with a regression test) and makes the script
# exit 1. Prints the executions per target and appends them to <scratch>/totals.tsv (date, target,
# wall seconds, executions, corpus files, status), so repeated runs add up. FUZZ_JOBS=N runs N targets
# at once (default 1); FUZZ_SCRATCH=DIR builds and keeps the corpus in DIR instead of .build-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
seconds="${1:-60}"
shift || true
all=(safetensors checkpoint config hub idx task image golden recipe)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (targets: ${all[*]})" >&2; exit 2; }
done
scratch="${FUZZ_SCRATCH:-.build-fuzz}"
# SwiftPM's --sanitize=fuzzer --sanitize=address reaches the compiler as two flags, of which the
# driver keeps only the last (no coverage instrumentation); one combined flag works.
config="${FUZZ_CONFIG:-release}"
swift build -c "$config" --scratch-path "$scratch" --product vitmerge-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DVITMERGE_LIBFUZZER -Xcc -fsanitize=fuzzer-no-link,address \
    2>&1 | grep -v "Cannot export local symbol" | tail -1
bin="$scratch/$config/vitmerge-fuzz"
# LeakSanitizer off as in scripts/sanitize.sh (Foundation keeps objects at exit); Swift's own
# backtracer off, so a trap reaches libFuzzer's handler at once.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=0" SWIFT_BACKTRACE="enable=no"
dict() {
    local d="$scratch/dict/$1.dict"
    mkdir -p "$scratch/dict"
    case "$1" in
        config | hub) cat fuzz/dict/json.dict >"$d" ;;
        safetensors | checkpoint | task | golden) cat fuzz/dict/safetensors.dict fuzz/dict/json.dict >"$d" ;;
        idx | image) cp "fuzz/dict/$1.dict" "$d" ;;
        recipe) cp fuzz/dict/yaml.dict "$d" ;;
    esac
    echo "$d"
}
run() {
    local t="$1" log="$scratch/logs/$1.log" art="$scratch/artifacts/$1/"
    mkdir -p "$scratch/corpus/$t" "$art" "$scratch/logs" "fuzz/regressions/$t"
    rm -f "$art"/*
    local status=0 t0
    t0=$(date +%s)
    # -rss_limit_mb and -malloc_limit_mb: an input that makes a reader allocate over 2 GB is a find
    # (the readers must refuse sizes before allocating); -timeout: one input may take at most 10 s.
    VITMERGE_FUZZ_TARGET="$t" "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
        -malloc_limit_mb=2048 -print_final_stats=1 -dict="$(dict "$t")" -artifact_prefix="$art" \
        "$scratch/corpus/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" >"$log" 2>&1 || status=$?
    local execs files
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    files=$(find "$scratch/corpus/$t" -type f | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$(($(date +%s) - t0))" "${execs:-0}" \
        "$files" "$status" >>"$scratch/totals.tsv"
    if [ "$status" -ne 0 ]; then
        for crash in "$art"*; do
            [ -f "$crash" ] || continue
            # slow-unit-* files are libFuzzer's notes of slow inputs, not failures (the timeout-* one is).
            case "$(basename "$crash")" in slow-unit-*) continue ;; esac
            local out="fuzz/regressions/$t/$(basename "$crash")"
            # -timeout as in the run, so a timeout input is minimized as a timeout (and each try ends).
            VITMERGE_FUZZ_TARGET="$t" timeout 120 "$bin" -minimize_crash=1 -max_total_time=60 -runs=100000 \
                -timeout=10 -exact_artifact_path="$out" "$crash" >"$log.minimize" 2>&1 || true
            [ -f "$out" ] || cp "$crash" "$out"
            echo "$t: FOUND $(grep -m1 -E 'ERROR|Fatal error|deadly signal|out-of-memory|timeout' "$log" || true)"
            echo "$t:   input minimized to $out (log: $log)"
        done
        echo "$t: ${execs:-?} executions in ${seconds} s, exit status $status"
        return 1
    fi
    echo "$t: ${execs:-?} executions in ${seconds} s ($((${execs:-0} / seconds))/s), corpus $files files, no crash"
}
failed=0
jobs="${FUZZ_JOBS:-1}"
pids=()
for t in "${targets[@]}"; do
    run "$t" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$jobs" ]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit "$failed"
