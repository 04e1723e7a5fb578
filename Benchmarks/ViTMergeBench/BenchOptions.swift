import ArgumentParser
import ViTMergeCore
import ViTMergeModel
import ViTMergeKernels

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

/// One row of the vit suite: a model preset (ViTConfig.presets) at a batch size.
struct ViTModel: Hashable {
    var name: String
    var batch: Int

    /// The rows `--vit-models` runs by default: every preset at batch 32, ViT-B also at 64.
    static let all: [ViTModel] = [
        ViTModel(name: "vit_mini_patch4_28", batch: 32), ViTModel(name: "vit_tiny_patch16_224", batch: 32),
        ViTModel(name: "vit_small_patch16_224", batch: 32), ViTModel(name: "vit_base_patch16_224", batch: 32),
        ViTModel(name: "vit_base_patch16_224", batch: 64),
    ]

    var config: ViTConfig { ViTConfig.presets[name]! }

    /// ViT-S and ViT-B: a step takes seconds, so they are timed twice after the warm-up and
    /// without the unfused-attention comparison.
    var isLarge: Bool { name == "vit_small_patch16_224" || name == "vit_base_patch16_224" }
    /// Timed runs after the warm-up, at least.
    var minRuns: Int { isLarge ? 2 : 3 }
    /// Whether the unfused attention is timed beside the fused one.
    var comparesUnfused: Bool { !isLarge }
}

/// A comma-separated list of vit suite rows: `name` (its default batches) or `name@batch`.
struct ViTModelList: ExpressibleByArgument {
    var models: [ViTModel]

    init?(argument: String) {
        var models: [ViTModel] = []
        for part in argument.split(separator: ",", omittingEmptySubsequences: false) {
            let fields = part.split(separator: "@", omittingEmptySubsequences: false)
            let name = String(fields[0])
            guard ViTModel.all.contains(where: { $0.name == name }), fields.count <= 2 else { return nil }
            if fields.count == 2 {
                guard let batch = Int(fields[1]), batch > 0 else { return nil }
                models.append(ViTModel(name: name, batch: batch))
            } else {
                models += ViTModel.all.filter { $0.name == name }
            }
        }
        self.models = models.uniqued()
    }

    static var allValueStrings: [String] { ViTModel.all.map(\.name).uniqued() }
}

/// A PyTorch peer of the vit suite, as scripts/bench_torch.py names it.
enum TorchPeer: String, CaseIterable, ExpressibleByArgument {
    /// timm's model as shipped: attention through fused scaled_dot_product_attention.
    case eager
    /// The same with `fused_attn` False on every Attention module (explicit q·kᵀ, softmax, ·v).
    case eagerExplicit = "eager-explicit"
    /// `torch.compile(model)`, default mode (inductor's C++ kernels on the CPU).
    case compile
    /// eager under CPU autocast to bfloat16: the peer of the `--bf16` rows only.
    case eagerBF16 = "eager-bf16"

    /// Whether the peer computes in bfloat16 (compared with our bf16 rows, not the FP32 ones).
    var isBF16: Bool { self == .eagerBF16 }
}

/// A comma-separated list of PyTorch peers (`--torch-peers eager,compile`).
struct TorchPeerList: ExpressibleByArgument {
    var peers: [TorchPeer]

    init?(argument: String) {
        var peers: [TorchPeer] = []
        for name in argument.split(separator: ",", omittingEmptySubsequences: false) {
            guard let p = TorchPeer(rawValue: String(name)) else { return nil }
            peers.append(p)
        }
        self.peers = peers.uniqued()
    }

    static var allValueStrings: [String] { TorchPeer.allCases.map(\.rawValue) }
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

    @Flag(
        help: ArgumentHelp(
            "Also time the GEMM shapes and the vit suite's forward and train step in bfloat16 (--precision bf16, "
                + "AVX512_BF16), against FP32 in the same run, and PyTorch with CPU autocast bf16 when --torch "
                + "is given."))
    var bf16 = false

    @Flag(help: "Smaller shapes and shorter timings (the vit and profile suites on vit_mini_patch4_28 only).")
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

    /// Python with torch and timm: run scripts/bench_torch.py within this run as the vit suite's peers.
    @Option(
        help: ArgumentHelp(
            "Time the vit suite's models with PyTorch too (scripts/bench_torch.py run by this Python right "
                + "before each model's own measurements, at the same thread counts); the best peer is the "
                + "headline ratio.", valueName: "python"))
    var torch: String?

    @Option(
        name: [.customLong("torch-peers")],
        help: "Comma-separated PyTorch peers for --torch (default: the FP32 ones, and eager-bf16 with --bf16).")
    var torchPeerList: TorchPeerList?

    @Option(
        name: [.customLong("vit-models")],
        help: ArgumentHelp(
            "Comma-separated vit suite models, each `name` (ViT-B: batches 32 and 64, the others 32) or "
                + "`name@batch` (default: all of them; vit_mini_patch4_28 with --quick); when given, also the "
                + "profile and fusion suites' models (at batch 32).", valueName: "models"))
    var vitModelList: ViTModelList?

    /// JSON written by scripts/bench_images.py: Pillow + timm img/s to compare the images suite with.
    @Option(
        help: ArgumentHelp(
            "Pillow + timm figures from scripts/bench_images.py, shown as the images suite's peer.", valueName: "file"))
    var pillow: String?

    /// The suites to run, in the order they are run.
    var suites: Set<Suite> { all ? Set(Suite.allCases) : Set(suiteList?.suites ?? [.gemm]) }

    var threads: [Int] { threadList?.counts ?? [1, ThreadPool.shared.capacity].uniqued() }

    /// The vit suite's rows, in the order they are run.
    var vitModels: [ViTModel] { vitModelList?.models ?? (quick ? [ViTModel.all[0]] : ViTModel.all) }

    /// `--torch-peers`, or every FP32 peer and, with `--bf16`, eager-bf16.
    var torchPeers: [TorchPeer] { torchPeerList?.peers ?? TorchPeer.allCases.filter { bf16 || !$0.isBF16 } }

    /// Minimum total time per measurement, in seconds.
    var minSeconds: Double { quick ? 0.1 : 0.4 }

    func validate() throws {
        let capacity = ThreadPool.shared.capacity
        if let t = threadList?.counts, t.isEmpty || !t.allSatisfy({ (1...capacity).contains($0) }) {
            throw ValidationError(
                "--threads takes a list like 1,2 of values in 1...\(capacity) (set VITMERGE_THREADS for more)")
        }
        if all, suiteList != nil { throw ValidationError("--all and --suite exclude each other") }
        if bf16, !GEMM.bf16Supported {
            throw ValidationError("--bf16 needs AVX512_BF16 in this CPU and build (vitmerge doctor shows the ISA)")
        }
        if torchPeerList != nil, torch == nil { throw ValidationError("--torch-peers needs --torch PYTHON") }
    }
}
