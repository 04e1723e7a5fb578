import CSleef
import Foundation
import ViTMergeCore

/// Row-major single-precision GEMM in the BLIS style: five loops around one register-blocked
/// micro-kernel, with A and B packed into aligned, zero-padded panels so edge tiles use the same
/// kernel. Parallel over rows of C (or columns when C has few rows); every element of C is
/// computed by the same sequence of operations whatever the thread count, so results are
/// bit-identical for 1 and N threads.
public enum GEMM {
    /// Register block: MR rows × NR columns of C per micro-kernel call.
    public static let mr = 6
    /// 64 columns (4 × 512-bit) on AVX-512 builds, 16 columns (2 × 256-bit) otherwise.
    public static let nr = vm_build_vector_bits() >= 512 ? 64 : 16
    /// Depth of one packed panel (the k loop inside the micro-kernel).
    public static let kc = 384
    /// Rows of A packed at once (fits the L2 cache with kc).
    public static let mc = 120
    /// Columns of B packed at once (a multiple of nr).
    public static let nc = 3072

    /// Cost units of one M×N×K product for the pool's cost model: 2·M·N·K flops, 8 per unit.
    @inline(__always)
    static func cost(_ m: Int, _ n: Int, _ k: Int) -> Int {
        let flops = 2.0 * Double(m) * Double(n) * Double(k) / 8
        return flops >= Double(Int.max) ? Int.max : Int(flops)
    }
}

/// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C[M,N], all row-major.
/// op(A) is A[M,K] (lda ≥ K) or, with transA, Aᵀ for A stored [K,M] (lda ≥ M); likewise B.
/// With beta == 0, C is not read (NaNs in C do not propagate). K == 0 scales C by beta.
/// With `rowSumsOfA`, also rowSums[i] += Σ_k op(A)[i, k] for every row i, added in k order while A
/// is packed (no extra pass over A): with transA, the bias gradient of the weight gradient dyᵀ·x,
/// bit-identical to `Elementwise.biasAddBackward` over dy (alpha does not scale the sums).
/// `precision` .bf16 rounds op(A) and op(B) to bfloat16 as they are packed and sums in FP32
/// (GEMM+BF16.swift; the row sums stay FP32); the default is `GEMM.precision`.
public func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    rowSumsOfA: UnsafeMutablePointer<Float>? = nil, precision: GEMM.Precision = GEMM.precision,
    pool: ThreadPool = .shared
) {
    let profileStart = Profiler.begin(); defer { Profiler.end(.gemm, profileStart) }
    precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative size m \(m) n \(n) k \(k)")
    precondition(
        lda >= max(1, transA ? m : k) && ldb >= max(1, transB ? k : n) && ldc >= max(1, n),
        "sgemm: leading dimensions lda \(lda) ldb \(ldb) ldc \(ldc) too small for m \(m) n \(n) k \(k)")
    guard m > 0 && k > 0 else {
        if m > 0 && n > 0 { scaleMatrix(c, ldc: ldc, m: m, n: n, beta: beta) }
        return
    }
    if n == 0 {
        // No columns, so A is never packed: the sums alone.
        if let sums = rowSumsOfA {
            for i in 0..<m { for p in 0..<k { sums[i] += transA ? a[p * lda + i] : a[i * lda + p] } }
        }
        return
    }
    precondition(precision == .fp32 || GEMM.bf16Supported, "sgemm: bf16 needs AVX512_BF16 (GEMM.bf16Supported)")
    let p = GEMMProblem(
        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
        a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, rowSums: rowSumsOfA, bf16: precision == .bf16)
    // Cost model (ThreadPool+Parallel.swift): 8 flops per unit.
    let nth = pool.threadCount(work: GEMM.cost(m, n, k))
    GEMMWorkspace.shared.withBuffers(threads: max(nth, 1)) { ws in
        p.run(pool: pool, threads: nth, ws: ws)
    }
}

/// A batch of independent GEMMs with a two-level index (e.g. batch × heads in attention):
/// for i in 0..<batch.0, j in 0..<batch.1, operands start at `x + i·strideX.0 + j·strideX.1`.
/// The batch is split across threads; each GEMM runs on one thread.
public func sgemmBatched(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, strideA: (Int, Int),
    b: UnsafePointer<Float>, ldb: Int, strideB: (Int, Int),
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, strideC: (Int, Int),
    batch: (Int, Int), pool: ThreadPool = .shared
) {
    let profileStart = Profiler.begin(); defer { Profiler.end(.gemm, profileStart) }
    precondition(batch.0 >= 0 && batch.1 >= 0, "sgemmBatched: negative batch \(batch)")
    precondition(m >= 0 && n >= 0 && k >= 0, "sgemmBatched: negative size m \(m) n \(n) k \(k)")
    precondition(
        lda >= max(1, transA ? m : k) && ldb >= max(1, transB ? k : n) && ldc >= max(1, n),
        "sgemmBatched: leading dimensions lda \(lda) ldb \(ldb) ldc \(ldc) too small")
    let count = batch.0 * batch.1
    guard count > 0 && m > 0 && n > 0 else { return }
    let cost = GEMM.cost(m, n, k)
    // `parallel` picks the same nth: min(count, threadCount(work: count · cost)).
    let (work, overflow) = count.multipliedReportingOverflow(by: cost)
    let nth = min(count, pool.threadCount(work: overflow ? Int.max : work))
    GEMMWorkspace.shared.withBuffers(threads: nth) { ws in
        pool.parallel(count, cost: cost) { ith, _, range in
            for index in range {
                let i = index / batch.1, j = index % batch.1
                let c = c + (i * strideC.0 + j * strideC.1)
                if k == 0 { scaleMatrix(c, ldc: ldc, m: m, n: n, beta: beta); continue }
                let p = GEMMProblem(
                    transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                    a: a + (i * strideA.0 + j * strideA.1), lda: lda,
                    b: b + (i * strideB.0 + j * strideB.1), ldb: ldb, beta: beta, c: c, ldc: ldc)
                p.runSerial(ws: ws, ith: ith)
            }
        }
    }
}

/// C = beta · C (beta == 0 writes zeros without reading C).
func scaleMatrix(_ c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int, beta: Float) {
    for i in 0..<m {
        let row = c + i * ldc
        if beta == 0 { row.update(repeating: 0, count: n) } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
    }
}

/// Pack buffers, one set per thread, grown on first use and then reused (no allocation per call).
final class GEMMWorkspace: @unchecked Sendable {
    static let shared = GEMMWorkspace()
    private let lock = NSLock()
    private var aPacks: [UnsafeMutablePointer<Float>] = []
    private var bPacks: [UnsafeMutablePointer<Float>] = []
    private var tiles: [UnsafeMutablePointer<Float>] = []

    struct Buffers {
        let aPack: [UnsafeMutablePointer<Float>]  // per thread: mc × kc
        let bPack: [UnsafeMutablePointer<Float>]  // per thread: kc × nc (index 0 is shared by a parallel GEMM)
        let tile: [UnsafeMutablePointer<Float>]  // per thread: mr × nr
    }

    func withBuffers(threads: Int, _ body: (Buffers) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        while aPacks.count < threads {
            aPacks.append(Memory.allocateFloats(GEMM.mc * GEMM.kc))
            bPacks.append(Memory.allocateFloats(GEMM.kc * GEMM.nc))
            tiles.append(Memory.allocateFloats(GEMM.mr * GEMM.nr))
        }
        body(Buffers(aPack: aPacks, bPack: bPacks, tile: tiles))
    }
}

/// One GEMM call's operands (see `sgemm`).
struct GEMMProblem {
    let transA: Bool, transB: Bool
    let m: Int, n: Int, k: Int
    let alpha: Float
    let a: UnsafePointer<Float>, lda: Int
    let b: UnsafePointer<Float>, ldb: Int
    let beta: Float
    let c: UnsafeMutablePointer<Float>, ldc: Int
    /// Row sums of op(A) accumulated while packing (`sgemm`'s rowSumsOfA), or nil.
    var rowSums: UnsafeMutablePointer<Float>? = nil
    /// Products in bfloat16 with FP32 sums (GEMM+BF16.swift): panels hold words of two bfloat16.
    var bf16 = false

    /// Depth of one packed panel: `GEMM.kc` floats, or as many bytes of bfloat16 pairs. With transA
    /// the bf16 panels keep `GEMM.kc`: packing reads one cache line per depth and row panel, and
    /// `kcBF16` lines (48 KB) would not stay in L1 for the next panel's rows.
    var depthBlock: Int { bf16 && !transA ? GEMM.kcBF16 : GEMM.kc }
    /// Elements per depth step of a packed panel for a depth block of kc: kc floats or ⌈kc/2⌉ words.
    @inline(__always) func panelDepth(_ kc: Int) -> Int { bf16 ? (kc + 1) / 2 : kc }

    /// Packs B's column micro-panel jp of a block into bPack, in this problem's precision.
    @inline(__always)
    func packBPanel(_ jp: Int, jc: Int, nc: Int, pc: Int, kc: Int, _ bPack: UnsafeMutablePointer<Float>) {
        let nr = GEMM.nr, j0 = jc + jp * nr, cols = min(nr, nc - jp * nr)
        let dst = bPack + jp * nr * panelDepth(kc)
        if bf16 {
            packBBF16(j0, cols, pc, kc, UnsafeMutableRawPointer(dst).assumingMemoryBound(to: UInt32.self))
        } else {
            packB(j0, cols, pc, kc, dst)
        }
    }

    /// Loops 5 and 4 (column blocks jc, depth blocks pc) on the calling thread; the B panel is
    /// packed and the macro-kernel run in parallel on `threads` threads.
    func run(pool: ThreadPool, threads: Int, ws: GEMMWorkspace.Buffers) {
        let mr = GEMM.mr, nr = GEMM.nr
        let mPanels = (m + mr - 1) / mr
        for jc in stride(from: 0, to: n, by: GEMM.nc) {
            let nc = min(GEMM.nc, n - jc)
            let nPanels = (nc + nr - 1) / nr
            for pc in stride(from: 0, to: k, by: depthBlock) {
                let kc = min(depthBlock, k - pc)
                let bPack = ws.bPack[0]
                pool.run(threads: threads) { ith, nth in
                    for jp in ThreadPool.split(nPanels, ith, nth) {
                        packBPanel(jp, jc: jc, nc: nc, pc: pc, kc: kc, bPack)
                    }
                }
                // Split rows of C when there are enough; otherwise split columns.
                let splitRows = mPanels >= 4 * threads || mPanels >= nPanels
                pool.run(threads: threads) { ith, nth in
                    let rows = splitRows ? ThreadPool.split(mPanels, ith, nth) : 0..<mPanels
                    let cols = splitRows ? 0..<nPanels : ThreadPool.split(nPanels, ith, nth)
                    guard !rows.isEmpty && !cols.isEmpty else { return }
                    // Each row panel of A is packed once per depth block by the thread that owns it
                    // (by every thread when columns are split: thread 0 then keeps the sums).
                    macroKernel(
                        rowPanels: rows, colPanels: cols, jc: jc, nc: nc, pc: pc, kc: kc,
                        aPack: ws.aPack[ith], bPack: bPack, tile: ws.tile[ith],
                        sums: rowSums != nil && jc == 0 && (splitRows || ith == 0))
                }
            }
        }
    }

    /// The same loops on one thread with that thread's buffers (for batched GEMM).
    func runSerial(ws: GEMMWorkspace.Buffers, ith: Int) {
        let mr = GEMM.mr, nr = GEMM.nr
        let mPanels = (m + mr - 1) / mr
        let bPack = ws.bPack[ith]
        for jc in stride(from: 0, to: n, by: GEMM.nc) {
            let nc = min(GEMM.nc, n - jc)
            let nPanels = (nc + nr - 1) / nr
            for pc in stride(from: 0, to: k, by: depthBlock) {
                let kc = min(depthBlock, k - pc)
                for jp in 0..<nPanels { packBPanel(jp, jc: jc, nc: nc, pc: pc, kc: kc, bPack) }
                macroKernel(
                    rowPanels: 0..<mPanels, colPanels: 0..<nPanels, jc: jc, nc: nc, pc: pc, kc: kc,
                    aPack: ws.aPack[ith], bPack: bPack, tile: ws.tile[ith], sums: rowSums != nil && jc == 0)
            }
        }
    }

    /// Loops 3, 2, 1: row blocks of mc (packing A), column micro-panels, row micro-panels.
    @inline(__always)
    func macroKernel(
        rowPanels: Range<Int>, colPanels: Range<Int>, jc: Int, nc: Int, pc: Int, kc: Int,
        aPack: UnsafeMutablePointer<Float>, bPack: UnsafeMutablePointer<Float>,
        tile: UnsafeMutablePointer<Float>, sums: Bool
    ) {
        let mr = GEMM.mr, nr = GEMM.nr, panelsPerBlock = GEMM.mc / mr
        let first = pc == 0, depth = panelDepth(kc)
        let aWords = UnsafeMutableRawPointer(aPack).assumingMemoryBound(to: UInt32.self)
        var ip0 = rowPanels.lowerBound
        while ip0 < rowPanels.upperBound {
            let ip1 = min(ip0 + panelsPerBlock, rowPanels.upperBound)
            for ip in ip0..<ip1 {
                let offset = (ip - ip0) * mr * depth
                if bf16 {
                    packABF16(ip * mr, min(mr, m - ip * mr), pc, kc, aWords + offset, sums: sums)
                } else {
                    packA(ip * mr, min(mr, m - ip * mr), pc, kc, aPack + offset, sums: sums)
                }
            }
            for jp in colPanels {
                let j0 = jp * nr, ncols = min(nr, nc - j0)
                let bp = bPack + jp * nr * depth
                for ip in ip0..<ip1 {
                    let i0 = ip * mr, nrows = min(mr, m - i0)
                    let ct = c + i0 * ldc + jc + j0
                    for r in 0..<nrows {
                        var j = 0
                        while j < ncols { vm_prefetch_l2(ct + r * ldc + j); j &+= 16 }
                    }
                    let offset = (ip - ip0) * mr * depth
                    if bf16 {
                        microKernel6x64BF16(
                            depth, aWords + offset, UnsafeRawPointer(bp).assumingMemoryBound(to: UInt32.self), tile)
                    } else if nr == 64 {
                        microKernel6x64(kc, aPack + offset, bp, tile)
                    } else {
                        microKernel6x16(kc, aPack + offset, bp, tile)
                    }
                    storeTile(tile, c + i0 * ldc + jc + j0, rows: nrows, cols: ncols, first: first)
                }
            }
            ip0 = ip1
        }
    }

    /// C tile = alpha·tile + beta·C on the first depth block, C tile += alpha·tile after.
    @inline(__always)
    func storeTile(
        _ tile: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>, rows: Int, cols: Int, first: Bool
    ) {
        let nr = GEMM.nr
        let beta: Float = first ? self.beta : 1
        let va = SIMD16<Float>(repeating: alpha), vb = SIMD16<Float>(repeating: beta)
        let vecCols = cols & ~15
        for r in 0..<rows {
            let t = tile + r * nr, crow = c + r * ldc
            var j = 0
            if beta == 0 {
                while j < vecCols {
                    UnsafeMutableRawPointer(crow + j).storeBytes(
                        of: va * UnsafeRawPointer(t + j).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                    j &+= 16
                }
                while j < cols { crow[j] = alpha * t[j]; j &+= 1 }
            } else {
                while j < vecCols {
                    let old = UnsafeRawPointer(crow + j).loadUnaligned(as: SIMD16<Float>.self)
                    let v = (vb * old).addingProduct(va, UnsafeRawPointer(t + j).loadUnaligned(as: SIMD16<Float>.self))
                    UnsafeMutableRawPointer(crow + j).storeBytes(of: v, as: SIMD16<Float>.self)
                    j &+= 16
                }
                while j < cols { crow[j] = (beta * crow[j]).addingProduct(alpha, t[j]); j &+= 1 }
            }
        }
    }
}
