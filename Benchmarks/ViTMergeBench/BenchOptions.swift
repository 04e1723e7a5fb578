import ArgumentParser
import ViTMergeCore

/// A benchmark suite: what `--suite` accepts.
enum Suite: String, CaseIterable, ExpressibleByArgument {
    case gemm, runtime, kernels, vit, merge, profile
    /// Fused vs unfused attention (forward with and without saved probabilities, backward) at ViT shapes.
    case attention
    /// The bias gradient fused into the weight-gradient GEMM vs a separate pass, per layer and per step.
    case fusion
    /// Heap allocations per training step after warm-up, at 1 and 2 threads (0 is the target).
    case allocations
    /// Thin SVD at ViT-B weight shapes (numpy.linalg.svd as the peer with --numpy).
    case svd
    /// Image-folder loading: JPEG/PNG decoding plus timm's eval transform (and `--augment`'s crops), images/s.
    case images
    /// Time and peak memory above the inputs of every data-free merge (T task vectors over a ViT encoder).
    case mergeMemory = "merge-memory"
}

/// A comma-separated list of suites (`--suite gemm,kernels`); `--help` lists the values.
struct SuiteList: ExpressibleByArgument {
    var suites: [Suite]

    init?(argument: String) {
        var suites: [Suite] = []
        for name in argument.split(separator: ",", omittingEmptySubsequences: false) {
            guard let s = Suite(rawValue: String(name)) else { return nil }
            suites.append(s)
        }
        self.suites = suites
    }

    static var allValueStrings: [String] { Suite.allCases.map(\.rawValue) }
}

/// A comma-separated list of thread counts (`--threads 1,2`).
struct ThreadList: ExpressibleByArgument {
    var counts: [Int]

    init?(argument: String) {
        var counts: [Int] = []
        for part in argument.split(separator: ",", omittingEmptySubsequences: false) {
            guard let n = Int(part) else { return nil }
            counts.append(n)
        }
        self.counts = counts
    }
}

/// What one benchmark run measures and where it writes.
struct BenchOptions: ParsableArguments {
    @Option(
        name: [.customLong("suite"), .customLong("suites")],
        help: "Comma-separated suites to run (default: gemm).")
    var suiteList: SuiteList?

    @Flag(help: "Run every suite.")
    var all = false

    @Option(
        name: [.customLong("threads")],
        help: "Comma-separated thread counts, each in 1...the pool's size (default: 1 and one per core).")
    var threadList: ThreadList?

    @Option(
        name: [.customLong("json")],
        help: ArgumentHelp("Also write the results as JSON to this file.", valueName: "file"))
    var jsonPath: String?

    @Option(
        help: ArgumentHelp(
            "Only the GEMM shapes whose name contains this text (e.g. 'dW TN').", valueName: "text"))
    var gemmFilter: String?

    @Flag(help: "Smaller shapes and shorter timings (ViT-Ti left out).")
    var quick = false

    /// Python with numpy: run scripts/bench_numpy.py as a second GEMM peer.
    @Option(
        help: ArgumentHelp(
            "Also time the GEMM shapes with numpy (scripts/bench_numpy.py) and the SVD shapes with "
                + "numpy.linalg.svd (scripts/bench_svd_numpy.py) as peers.", valueName: "python"))
    var numpy: String?

    /// JSON written by scripts/bench_torch.py: PyTorch img/s to compare the vit suite with.
    @Option(
        help: ArgumentHelp(
            "PyTorch figures from scripts/bench_torch.py, shown as the vit suite's peer.", valueName: "file"))
    var compare: String?

    /// JSON written by scripts/bench_images.py: Pillow + timm img/s to compare the images suite with.
    @Option(
        help: ArgumentHelp(
            "Pillow + timm figures from scripts/bench_images.py, shown as the images suite's peer.", valueName: "file"))
    var pillow: String?

    /// The suites to run, in the order they are run.
    var suites: Set<Suite> { all ? Set(Suite.allCases) : Set(suiteList?.suites ?? [.gemm]) }

    var threads: [Int] { threadList?.counts ?? [1, ThreadPool.shared.capacity].uniqued() }

    /// Minimum total time per measurement, in seconds.
    var minSeconds: Double { quick ? 0.1 : 0.4 }

    func validate() throws {
        let capacity = ThreadPool.shared.capacity
        if let t = threadList?.counts, t.isEmpty || !t.allSatisfy({ (1...capacity).contains($0) }) {
            throw ValidationError(
                "--threads takes a list like 1,2 of values in 1...\(capacity) (set VITMERGE_THREADS for more)")
        }
        if all, suiteList != nil { throw ValidationError("--all and --suite exclude each other") }
    }
}
