import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeTraining
#if MPI
    import ViTMergeMPI
#endif

/// The processes of this run: this one alone, or the ranks of an MPI job (`mpirun -np N
/// vitmerge finetune …`, with a build made with `--traits MPI`).
enum World {
    nonisolated(unsafe) static var group: Collective = SingleProcess.shared
    #if MPI
        nonisolated(unsafe) static var mpi: MPICollective?
    #endif

    /// Whether this binary can join an MPI job.
    static var hasMPI: Bool {
        #if MPI
            true
        #else
            false
        #endif
    }

    /// The number of ranks a launcher started: Open MPI's mpirun, MPICH's Hydra or srun with
    /// PMI-2 say so directly; inside an srun step (any --mpi plugin) Slurm gives the step's task
    /// count. nil when this process was not started by one.
    static var launchedSize: Int? {
        let env = ProcessInfo.processInfo.environment
        if let n = (env["OMPI_COMM_WORLD_SIZE"] ?? env["PMI_SIZE"]).flatMap({ Int($0) }) { return n }
        return env["SLURM_PROCID"] == nil ? nil : env["SLURM_STEP_NUM_TASKS"].flatMap { Int($0) }
    }

    /// Joins the MPI job when started as one of several ranks; else the single process.
    static func join() throws -> Collective {
        guard let n = launchedSize, n > 1 else { return group }
        #if MPI
            let m = MPICollective.initialize()
            mpi = m
            group = m
            return m
        #else
            throw InputError(
                description:
                    "started as one of \(n) MPI ranks, but this vitmerge was built without MPI, so every rank would "
                    + "train alone and write the same files. Build with MPI: apt-get install libopenmpi-dev "
                    + "openmpi-bin; swift build -c release --traits MPI"
            )
        #endif
    }

    /// A line for the log: ranks, threads, batch shares and the MPI library.
    static func describe(globalBatch: Int) -> String {
        let threads = ThreadPool.shared.threads
        let share = globalBatch / group.size
        let shares = globalBatch % group.size == 0 ? "\(share)" : "\(share)–\(share + 1)"
        var line =
            "data-parallel: \(group.size) ranks × \(threads) thread\(threads == 1 ? "" : "s"), "
            + "global batch \(globalBatch) (\(shares) per rank)"
        #if MPI
            if let mpi { line += ", \(mpi.libraryVersion)" }
        #endif
        return line
    }

    /// Leaves the MPI job, if one was joined.
    static func finish() {
        #if MPI
            mpi?.finalize()
        #endif
    }
}

/// `--grad-sync` for the data-parallel commands.
struct ParallelOptions: ParsableArguments {
    @Option(
        help:
            ArgumentHelp(
                "Under mpirun: overlapped (gradient sums in 1 MB buckets, started during the backward) or "
                    + "after-backward (one blocking sum).")
    )
    var gradSync = GradientSync.overlapped
}

extension GradientSync: ExpressibleByArgument {}
