import Foundation
import CClosure
import Synchronization

// CClosure's two functions, declared with the Swift types they are called with: a closure
// argument is passed as the (function, context) pair the C side stores and calls.
@_silgen_name("vm_closure_store")
private func closureStore(_ slot: UnsafeMutablePointer<vm_closure>, _ body: (Int, Int) -> Void)
@_silgen_name("vm_closure_call")
private func closureCall(_ slot: UnsafePointer<vm_closure>, _ ith: Int, _ nth: Int)

/// A persistent pool of worker threads for coarse data-parallel work (ggml-style ith/nth).
///
/// `run` costs a few microseconds (workers spin briefly before sleeping), against ~100 µs for
/// `DispatchQueue.concurrentPerform` on this class of machine (the benchmark measures both), so
/// even small elementwise kernels can be split. A call made while the pool is busy (a nested call,
/// or a second thread) runs serially on the calling thread, which keeps every call safe.
///
/// `run` is the region primitive (exactly nth threads); kernels split work with `parallel`
/// (ThreadPool+Parallel.swift), which holds the one cost model and the one partition rule.
public final class ThreadPool: @unchecked Sendable {
    /// The process-wide pool: `VITMERGE_THREADS` threads if set, else one per active core,
    /// shared out among the processes an MPI launcher started on this node.
    public static let shared = ThreadPool(threads: ThreadPool.defaultThreadCount)

    public static var defaultThreadCount: Int {
        let env = ProcessInfo.processInfo.environment
        if let s = env["VITMERGE_THREADS"], let n = Int(s), n > 0 {
            return min(n, 256)
        }
        // Open MPI's mpirun and MPICH's Hydra say how many ranks share this node.
        let local = (env["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? env["MPI_LOCALNRANKS"]).flatMap { Int($0) } ?? 1
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(local, 1))
    }

    /// Number of threads (including the caller) that `run` uses; at most `capacity`.
    public var threads: Int {
        get { activeThreads.load(ordering: .relaxed) }
        set { activeThreads.store(max(1, min(newValue, capacity)), ordering: .relaxed) }
    }
    /// The calling thread plus the workers.
    public let capacity: Int

    private let activeThreads: Atomic<Int>
    private let generation = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let shutdown = Atomic<Bool>(false)
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>
    /// The running region's body: the caller's closure as its two words (CClosure), valid while
    /// `run` waits. Stored this way, not as a closure property, because `withoutActuallyEscaping`
    /// boxes the closure in a heap thunk on every call (one allocation per parallel region).
    private let job: UnsafeMutablePointer<vm_closure>
    private nonisolated(unsafe) var jobThreads = 1
    private static let spinLimit = 20_000

    public init(threads: Int) {
        precondition(threads >= 1, "ThreadPool needs at least one thread, got \(threads)")
        capacity = threads
        activeThreads = Atomic(threads)
        job = .allocate(capacity: 1)
        job.initialize(to: vm_closure(function: nil, context: nil))
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
        for w in 1..<max(threads, 1) {
            // The worker must not own the pool: a strong reference (which calling a method through
            // `unowned(unsafe) self` takes for the call's duration) would keep it alive forever and
            // deinit, which stops the workers, would never run.
            let me = Unmanaged.passUnretained(self)
            let t = Thread { me._withUnsafeGuaranteedRef { $0.workerLoop(ith: w) } }
            t.name = "vitmerge-worker-\(w)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    deinit {
        // The shared pool lives for the process; pools made in tests are shut down here.
        remaining.store(capacity - 1, ordering: .relaxed)
        shutdown.store(true, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex); pthread_cond_broadcast(cond); pthread_mutex_unlock(mutex)
        // Workers hold an unretained `self`: wait until they have all left their loops.
        while remaining.load(ordering: .acquiring) > 0 { sched_yield() }
        pthread_cond_destroy(cond); pthread_mutex_destroy(mutex)
        cond.deallocate(); mutex.deallocate(); job.deallocate()
    }

    /// Runs `body(ith, nth)` for ith in 0..<nth on nth threads (the caller runs ith 0) and returns
    /// when all are done. nth defaults to `threads`.
    public func run(threads nth: Int? = nil, _ body: (_ ith: Int, _ nth: Int) -> Void) {
        let n = max(1, min(nth ?? threads, capacity))
        if n == 1 || !busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            for i in 0..<(n == 1 ? 1 : n) { body(i, n) }
            return
        }
        closureStore(job, body)
        jobThreads = n
        remaining.store(capacity - 1, ordering: .relaxed)
        generation.add(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex); pthread_cond_broadcast(cond); pthread_mutex_unlock(mutex)
        }
        body(0, n)
        var spins = 0
        while remaining.load(ordering: .acquiring) > 0 {
            spins &+= 1
            if spins > ThreadPool.spinLimit { sched_yield() }
        }
        job.pointee = vm_closure(function: nil, context: nil)
        busy.store(false, ordering: .releasing)
    }

    private func workerLoop(ith: Int) {
        // Workers are created in init, when the generation is 0. Reading it here instead would
        // race with a first `run` that starts before this thread does, and that run would wait
        // for this worker forever.
        var seen = 0
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins &+= 1
                if spins > ThreadPool.spinLimit {
                    pthread_mutex_lock(mutex)
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while generation.load(ordering: .sequentiallyConsistent) == seen {
                        pthread_cond_wait(cond, mutex)
                    }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                    pthread_mutex_unlock(mutex)
                    break
                }
            }
            seen = generation.load(ordering: .acquiring)
            if shutdown.load(ordering: .acquiring) {
                remaining.subtract(1, ordering: .releasing)
                return
            }
            if ith < jobThreads { closureCall(job, ith, jobThreads) }
            remaining.subtract(1, ordering: .releasing)
        }
    }
}
