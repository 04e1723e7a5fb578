import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeKernels

/// `vitmerge doctor`: what this machine and this build can do, measured.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report CPU, ISA, threads, SLEEF and the measured FMA peak; check the GEMM.")

    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        runtime.apply()
        let threads = ThreadPool.shared.threads
        var problems: [String] = []
        func line(_ key: String, _ value: String) {
            print(key.padding(toLength: 20, withPad: " ", startingAt: 0) + value)
        }

        line("vitmerge", VitMerge.version)
        line("cpu", Machine.cpuModel)
        line("cpu features", Machine.cpuFeatures.joined(separator: " "))
        line("build ISA", "\(Machine.buildISA) (\(Machine.buildVectorBits)-bit vectors)")
        if Machine.buildVectorBits >= 512 && !Machine.cpuHasAVX512 {
            problems.append("this build uses AVX-512 but the CPU lacks it; rebuild with VITMERGE_TARGET_CPU=haswell")
        }
        line(
            "threads",
            "\(threads) of \(ThreadPool.shared.capacity) (cores: \(ProcessInfo.processInfo.activeProcessorCount))")
        let sleefOK = Machine.sleefWorks
        line("SLEEF", "\(Machine.sleefVersion) \(sleefOK ? "ok" : "WRONG RESULTS")")
        if !sleefOK { problems.append("SLEEF returns wrong values; reinstall libsleef-dev") }
        let peak1 = Machine.measureFMAPeak(threads: 1)
        line("FMA peak, 1 thread", String(format: "%.1f GFLOP/s", peak1))
        if threads > 1 {
            line(
                "FMA peak, \(threads) threads", String(format: "%.1f GFLOP/s", Machine.measureFMAPeak(threads: threads))
            )
        }
        let (gflops, gemmError) = gemmCheck(.fp32)
        line(
            "sgemm 512³",
            String(
                format: "%.1f GFLOP/s (%.0f%% of 1-thread peak × %d), error %.1e (relative to max |C|)",
                gflops, 100 * gflops / (peak1 * Double(threads)), threads, gemmError))
        if !(gemmError <= 1e-5) {
            problems.append("sgemm disagrees with the reference GEMM (error \(gemmError) relative to max |C|)")
        }
        if GEMM.bf16Supported {
            let (bf16, bf16Error) = gemmCheck(.bf16)
            line(
                "sgemm 512³ bf16",
                String(
                    format: "%.1f GFLOP/s (%.2f× fp32), error %.1e against its bfloat16 reference (--precision bf16)",
                    bf16, bf16 / gflops, bf16Error))
            if !(bf16Error <= 1e-5) {
                problems.append("bf16 sgemm disagrees with its reference (error \(bf16Error) relative to max |C|)")
            }
        } else {
            line("sgemm bf16", "not available (no AVX512_BF16 in this CPU or build; --precision bf16 is refused)")
        }
        #if DEBUG
            line("note", "debug build: kernels are slow; use swift run -c release")
        #else
            // A release SGEMM reaches 60–95% of this peak on the machines we measured (README,
            // Performance). Far below that, the machine is busy or this ISA's kernel needs work.
            if gflops < 0.4 * peak1 * Double(threads) {
                line(
                    "note",
                    "sgemm is under 40% of the FMA peak: if the machine is idle, please report it with the output of "
                        + "`vitmerge-bench --suite gemm`"
                )
            }
        #endif
        if problems.isEmpty {
            print("all checks passed")
        } else {
            for p in problems { print("problem: \(p)") }
            throw ExitCode.failure
        }
    }

    /// Times a 512³ SGEMM in `precision` (best of a few) and compares a corner of it with that
    /// precision's reference GEMM.
    private func gemmCheck(_ precision: GEMM.Precision) -> (gflops: Double, maxRelError: Double) {
        let n = 512
        var rng = RNG(seed: 1)
        let a = (0..<n * n).map { _ in rng.uniformFloat() - 0.5 }, b = (0..<n * n).map { _ in rng.uniformFloat() - 0.5 }
        var c = [Float](repeating: 0, count: n * n)
        var best = Double.infinity
        for _ in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            sgemm(
                transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: b, ldb: n, beta: 0, c: &c,
                ldc: n, precision: precision)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0))
        }
        // Reference on the first 16 rows only (it is slow).
        let rows = 16
        var r = [Float](repeating: 0, count: rows * n)
        let reference = precision == .bf16 ? sgemmBF16Reference : sgemmReference
        reference(false, false, rows, n, n, 1, a, n, b, n, 0, &r, n)
        var worst = 0.0, scale = 0.0
        for i in 0..<rows * n {
            worst = max(worst, Double(abs(c[i] - r[i])))
            scale = max(scale, Double(abs(r[i])))
        }
        return (2 * Double(n * n * n) / best, worst / scale)
    }
}
