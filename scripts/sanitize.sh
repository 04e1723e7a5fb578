#!/usr/bin/env bash
# The test suite under sanitizers (separate scratch paths, so the normal build is untouched).
#   bash scripts/sanitize.sh tsan-fast   # ThreadSanitizer on the multi-threaded subset (CI runs this)
#   bash scripts/sanitize.sh tsan        # ThreadSanitizer, every test
#   bash scripts/sanitize.sh asan        # AddressSanitizer and LeakSanitizer, every test
#   bash scripts/sanitize.sh             # tsan and asan
set -euo pipefail
cd "$(dirname "$0")/.."
TSAN_FAST="CoreTests|GEMMTests.testBitIdenticalAcrossThreadCounts|KernelTests.testKernelsAreBitIdenticalForOneAndTwoThreads|AttentionTests|GoldenTests.testGoldenRunsAreBitIdenticalForOneAndTwoThreads|ViTThreadsTests.testForwardIsBitIdentical|DataParallelTests"
case "${1:-all}" in
  tsan-fast) swift test --sanitize=thread --scratch-path .build-tsan --filter "$TSAN_FAST" ;;
  tsan) swift test --sanitize=thread --scratch-path .build-tsan ;;
  # With LeakSanitizer: a leak anywhere but the toolchain frames listed (with reasons) in
  # scripts/lsan.supp fails the run. malloc_context_size=8 keeps allocation stacks to the frames
  # nearest the allocation, so a suppression names the allocating function, not the XCTest runner
  # that is under every test; the summary at exit lists which suppressions were used.
  asan)
    ASAN_OPTIONS=detect_leaks=1:malloc_context_size=8 \
      LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=1" \
      swift test --sanitize=address --scratch-path .build-asan ;;
  all) "$0" tsan && "$0" asan ;;
  *) echo "usage: $0 [tsan-fast|tsan|asan|all]" >&2; exit 2 ;;
esac
