import Foundation
import ViTMergeCore
import ViTMergeKernels

// vitmerge-bench: performance figures as ratios against peers measured in the same run.
// Usage: vitmerge-bench [--suite gemm,...] [--threads 1,2] [--json FILE] [--quick]

if _isDebugAssertConfiguration() {
    FileHandle.standardError.write(
        "vitmerge-bench: refusing to run a debug build; use `swift run -c release vitmerge-bench`.\n".data(
            using: .utf8)!)
    exit(2)
}

var options = BenchOptions()
do { options = try BenchOptions.parse(Array(CommandLine.arguments.dropFirst())) } catch {
    FileHandle.standardError.write("vitmerge-bench: \(error)\n".data(using: .utf8)!)
    exit(2)
}

let bench = Bench(options: options)
bench.run()
