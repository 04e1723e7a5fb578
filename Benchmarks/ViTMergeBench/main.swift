import ArgumentParser
import Foundation

/// vitmerge-bench: performance figures as ratios against peers measured in the same run.
struct VitMergeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitmerge-bench",
        abstract: "Benchmarks (release builds only): GFLOP/s, GB/s and img/s against peers measured in the same run.",
        discussion:
            "The profile suite prints the time per kernel category in a training step; the allocations suite "
            + "counts heap allocations per training step after warm-up at 1 and 2 threads.")

    @OptionGroup var options: BenchOptions

    func run() throws {
        #if DEBUG
            FileHandle.standardError.write(
                Data("vitmerge-bench: refusing to run a debug build; use `swift run -c release vitmerge-bench`.\n".utf8)
            )
            throw ExitCode(2)
        #else
            Bench(options: options).run()
        #endif
    }
}

VitMergeBench.main()
