import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeKernels

/// The `vitmerge` command line: one subcommand per file.
@main
struct VitMerge: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "vitmerge",
        abstract: "Vision Transformers, fine-tuning and task arithmetic on the CPU, in pure Swift.",
        version: version,
        subcommands: [
            Demo.self, Experiment.self, Doctor.self, VerifyGolden.self, Init.self, Forward.self, Export.self,
            Pretrain.self,
            Probe.self, FineTune.self, Eval.self, ZeroShot.self, TaskVectorCommand.self, MergeCommand.self,
            Disentangle.self,
        ])

    /// ArgumentParser's `main`, plus the MPI job's life cycle: only `finetune` and `pretrain` run
    /// as several ranks; a rank that fails ends the whole job (no rank is left waiting).
    static func main() {
        // A file size limit (ulimit -f) then fails the write with EFBIG, reported like a full disk,
        // instead of killing the process.
        signal(SIGXFSZ, SIG_IGN)
        do {
            var command = try parseAsRoot()
            if let n = World.launchedSize, n > 1, !(command is FineTune || command is Pretrain) {
                throw InputError(
                    description:
                        "started as one of \(n) MPI ranks, but only `finetune` and `pretrain` are data-parallel: run "
                        + "this command as one process (without mpirun)"
                )
            }
            try command.run()
            World.finish()
        } catch {
            if World.group.size > 1 {
                World.group.abort(
                    code: exitCode(for: error).rawValue,
                    message: "vitmerge (rank \(World.group.rank)): \(fullMessage(for: error))")
            }
            if let n = World.launchedSize, n > 1, exitCode(for: error) != .success {
                // The ranks share mpirun's stderr: the message goes out in one write(2), atomic on a
                // pipe below PIPE_BUF, so two ranks' copies cannot interleave mid-line.
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
    }
}

/// Options shared by commands that compute.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Worker threads (default: VITMERGE_THREADS or one per core).")
    var threads: Int?

    @Option(
        help: ArgumentHelp(
            "Arithmetic of the matrix products: fp32 (the reference) or bf16 (operands rounded to bfloat16, "
                + "FP32 sums and FP32 master weights; needs AVX512_BF16; attention's products stay FP32).",
            valueName: "fp32|bf16"))
    var precision: GEMM.Precision = .fp32

    func validate() throws {
        if let t = threads, !(1...ThreadPool.shared.capacity).contains(t) {
            throw ValidationError(
                "--threads must be between 1 and \(ThreadPool.shared.capacity) (the pool's size; set VITMERGE_THREADS "
                    + "to change it)"
            )
        }
        if precision == .bf16 && !GEMM.bf16Supported {
            throw ValidationError(
                "--precision bf16 needs AVX512_BF16 in this CPU and build (\(Machine.cpuModel)); use fp32, or build "
                    + "on such a CPU (vitmerge doctor shows what this one has)")
        }
    }

    func apply() {
        if let t = threads { ThreadPool.shared.threads = t }
        GEMM.precision = precision
        if precision == .bf16 {
            FileHandle.standardError.write(Data("precision: bf16 matrix products (FP32 sums and weights)\n".utf8))
        }
    }
}
