import Foundation

/// The processes of a data-parallel job and the few collective operations that data-parallel
/// training needs. Every rank must make the same calls in the same order (as in MPI).
///
/// The calls do not throw: a failed collective leaves the ranks in states that cannot be
/// reconciled, so an implementation reports the failure on standard error and ends the whole
/// job with a non-zero exit code (MPI's own policy), rather than let the other ranks wait.
public protocol Collective: AnyObject {
    /// This process's index, 0..<size; rank 0 writes the files and the logs.
    var rank: Int { get }
    var size: Int { get }
    /// In-place sum over all ranks.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// Starts an in-place sum that `finishStarted` completes; `buffer` must not be touched until then.
    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// Lets started sums advance (MPI progresses them only inside MPI calls).
    func progress()
    /// Completes every started sum.
    func finishStarted()
    /// Rank `root`'s `bytes` bytes at `buffer`, on every rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int)
    /// Ends every process of the job with `code` after `message` went to standard error.
    func abort(code: Int32, message: String) -> Never
}

extension Collective {
    public var isRoot: Bool { rank == 0 }

    /// The slice `lo..<hi` of `0..<count` that this rank owns: contiguous, in rank order,
    /// sizes differing by at most one.
    public func share(of count: Int) -> Range<Int> {
        (count * rank / size)..<(count * (rank + 1) / size)
    }
}

/// The job of one process: every collective is the identity.
public final class SingleProcess: Collective, Sendable {
    public static let shared = SingleProcess()
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func progress() {}
    public func finishStarted() {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {}
    public func abort(code: Int32, message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(code)
    }
}

/// `size` ranks as threads of one process, for tests of data-parallel code without MPI: make
/// one group, then `member(rank)` on each thread. Sums add the ranks' values in rank order
/// (0 + 1 + …), so results are deterministic and identical on every rank.
public final class ThreadGroup: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var floatBuffers: [UnsafeMutablePointer<Float>?]
    private var doubleBuffers: [UnsafeMutablePointer<Double>?]
    private var rawBuffers: [UnsafeMutableRawPointer?]

    public init(size: Int) {
        precondition(size >= 1, "ThreadGroup needs at least one rank")
        self.size = size
        floatBuffers = Array(repeating: nil, count: size)
        doubleBuffers = Array(repeating: nil, count: size)
        rawBuffers = Array(repeating: nil, count: size)
    }

    public func member(_ rank: Int) -> Collective { Member(group: self, rank: rank) }

    /// Blocks until all `size` ranks arrived.
    func barrier() {
        condition.lock()
        let g = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == g { condition.wait() }
        }
        condition.unlock()
    }

    func sum<T: FloatingPoint>(
        _ buffer: UnsafeMutablePointer<T>, count: Int, rank: Int,
        slots: ReferenceWritableKeyPath<ThreadGroup, [UnsafeMutablePointer<T>?]>
    ) {
        condition.lock(); self[keyPath: slots][rank] = buffer; condition.unlock()
        barrier()
        condition.lock(); let all = self[keyPath: slots].map { $0! }; condition.unlock()
        let total = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        defer { total.deallocate() }
        for i in 0..<count {
            var s = all[0][i]
            for r in 1..<size { s += all[r][i] }
            total[i] = s
        }
        barrier()  // every rank has read every buffer
        buffer.update(from: total, count: count)
        barrier()
    }

    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int, rank: Int) {
        condition.lock(); rawBuffers[rank] = buffer; condition.unlock()
        barrier()
        condition.lock(); let source = rawBuffers[root]!; condition.unlock()
        if rank != root { buffer.copyMemory(from: source, byteCount: bytes) }
        barrier()
    }

    final class Member: Collective {
        let group: ThreadGroup
        let rank: Int
        var size: Int { group.size }
        init(group: ThreadGroup, rank: Int) {
            precondition((0..<group.size).contains(rank), "ThreadGroup: rank \(rank) out of range")
            self.group = group
            self.rank = rank
        }
        func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
            group.sum(buffer, count: count, rank: rank, slots: \.floatBuffers)
        }
        func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
            group.sum(buffer, count: count, rank: rank, slots: \.doubleBuffers)
        }
        /// Completed at once (the ranks are threads; there is nothing to overlap).
        func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { allreduceSum(buffer, count: count) }
        func progress() {}
        func finishStarted() {}
        func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {
            group.broadcast(buffer, bytes: bytes, root: root, rank: rank)
        }
        func abort(code: Int32, message: String) -> Never { fatalError("ThreadGroup rank \(rank): \(message)") }
    }
}
