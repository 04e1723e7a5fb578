#!/usr/bin/env bash
# The test suite under sanitizers (separate scratch paths, so the normal build is untouched).
#   bash scripts/sanitize.sh tsan-fast   # ThreadSanitizer on the multi-threaded subset (CI runs this)
#   bash scripts/sanitize.sh tsan        # ThreadSanitizer, every test
#   bash scripts/sanitize.sh asan        # AddressSanitizer, every test
#   bash scripts/sanitize.sh             # tsan and asan
set -euo pipefail
cd "$(dirname "$0")/.."
TSAN_FAST="CoreTests|GEMMTests.testBitIdenticalAcrossThreadCounts|KernelTests.testKernelsAreBitIdenticalForOneAndTwoThreads|AttentionTests|GoldenTests.testGoldenRunsAreBitIdenticalForOneAndTwoThreads|ViTThreadsTests.testForwardIsBitIdentical|DataParallelTests"
case "${1:-all}" in
  tsan-fast) swift test --sanitize=thread --scratch-path .build-tsan --filter "$TSAN_FAST" ;;
  tsan) swift test --sanitize=thread --scratch-path .build-tsan ;;
  # LeakSanitizer is off: its only reports are objects XCTest, Foundation.Process and
  # FoundationXML keep at exit (no frame of ViTMerge's own modules); memory errors still abort.
  asan) ASAN_OPTIONS=detect_leaks=0 swift test --sanitize=address --scratch-path .build-asan ;;
  all) "$0" tsan && "$0" asan ;;
  *) echo "usage: $0 [tsan-fast|tsan|asan|all]" >&2; exit 2 ;;
esac
