/// The one way kernels split work across threads (ggml's ith/nth), with one cost model.
///
/// A parallel region costs a few microseconds to start and join, so a region is split only
/// when every thread gets at least `minWorkPerThread` units of work. A unit is one float read
/// or written by a streaming kernel; an arithmetic-bound kernel counts 8 flops as one unit
/// (GEMM, exp-heavy rows). Kernels state the cost of one item; nothing else decides the split.
///
/// Splitting never changes results: elementwise and row-wise kernels compute each output the
/// same way whichever thread runs it, and reductions whose partial sums are combined use fixed
/// chunks as items (chunk boundaries that do not depend on `nth`) and combine the partials in
/// chunk order on the calling thread.
extension ThreadPool {
    /// Cost units each thread should get before a region is split (≈ 32 K floats streamed).
    public static let minWorkPerThread = 1 << 15

    /// Threads worth using for `work` cost units in total: at most `threads`, at least 1.
    @inlinable
    public func threadCount(work: Int) -> Int {
        max(1, min(threads, work / ThreadPool.minWorkPerThread))
    }

    /// Runs `body(ith, nth, range)` for ith in 0..<nth, where the ranges are the contiguous,
    /// near-equal parts of 0..<count (`ThreadPool.split`) with bounds at multiples of `align`
    /// (except the last, which ends at count), and nth = `threadCount(work: count · cost)`
    /// limited to the number of aligned blocks. `cost` is the work of one item in cost units.
    /// With nth == 1 the body runs once, on the calling thread, with 0..<count. Ranges are never
    /// empty; count ≤ 0 runs nothing.
    @inlinable
    public func parallel(
        _ count: Int, cost: Int, align: Int = 1, _ body: (_ ith: Int, _ nth: Int, _ range: Range<Int>) -> Void
    ) {
        guard count > 0 else { return }
        precondition(cost >= 0 && align >= 1, "parallel: cost \(cost) must be ≥ 0 and align \(align) ≥ 1")
        let blocks = (count &+ align &- 1) / align
        let (work, overflow) = count.multipliedReportingOverflow(by: cost)
        let nth = min(blocks, threadCount(work: overflow ? Int.max : work))
        if nth == 1 { body(0, 1, 0..<count); return }
        run(threads: nth) { ith, nth in
            let r = ThreadPool.split(blocks, ith, nth)
            body(ith, nth, (r.lowerBound &* align)..<min(count, r.upperBound &* align))
        }
    }

    /// The ith of nth contiguous, near-equal parts of 0..<count: the one partition rule.
    @inlinable
    public static func split(_ count: Int, _ ith: Int, _ nth: Int) -> Range<Int> {
        (count * ith / nth)..<(count * (ith + 1) / nth)
    }
}
