import CSleef
import Foundation

/// Facts about the machine and the build, for `vitmerge doctor` and benchmark records.
public enum Machine {
    /// CPU model name from /proc/cpuinfo ("unknown" elsewhere).
    public static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown"
    }

    /// Vector extensions the CPU reports (subset relevant to ViTMerge).
    public static var cpuFeatures: [String] {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return [] }
        let flags = Set(line.split(separator: " ").map(String.init))
        return ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile"]
            .filter(flags.contains)
    }

    /// Width in bits of the vector ISA this build was compiled for (512, 256, 128, or 0).
    public static var buildVectorBits: Int { Int(vm_build_vector_bits()) }

    /// A short name for the ISA this build targets.
    public static var buildISA: String {
        switch buildVectorBits {
        case 512: "AVX-512"
        case 256: "AVX2+FMA"
        case 128: "SSE2"
        default: "scalar"
        }
    }

    public static var cpuHasAVX512: Bool { vm_cpu_has_avx512f() != 0 }

    /// SLEEF's version, from the header this build was compiled against.
    public static var sleefVersion: String {
        "\(SLEEF_VERSION_MAJOR).\(SLEEF_VERSION_MINOR).\(SLEEF_VERSION_PATCHLEVEL)"
    }

    /// Whether SLEEF answers correctly at run time (exp(1) and erf(0.5) within 1e-6).
    public static var sleefWorks: Bool {
        var x = [Float](repeating: 1, count: 16), y = [Float](repeating: 0, count: 16)
        vm_expf16(&x, &y)
        let e = y[15]
        x = [Float](repeating: 0.5, count: 16)
        vm_erff16(&x, &y)
        return abs(e - 2.7182817) < 1e-6 && abs(y[3] - 0.5204999) < 1e-6
    }

    /// Measured single-precision FMA throughput in GFLOP/s on `threads` threads of `pool`
    /// (independent FMA chains in registers, best of `repeats`).
    public static func measureFMAPeak(threads: Int, pool: ThreadPool = .shared, seconds: Double = 0.2) -> Double {
        let iterations = 2_000_000
        var best = 0.0
        let deadline = Date().addingTimeInterval(seconds)
        var sink: [Float] = Array(repeating: 0, count: threads * 16)
        repeat {
            let start = DispatchTime.now().uptimeNanoseconds
            sink.withUnsafeMutableBufferPointer { out in
                let out = out.baseAddress!
                pool.run(threads: threads) { ith, _ in
                    out[ith * 16] =
                        buildVectorBits >= 512
                        ? fmaChains(SIMD16<Float>.self, iterations) : fmaChains(SIMD8<Float>.self, iterations)
                }
            }
            let ns = Double(DispatchTime.now().uptimeNanoseconds - start)
            let lanes = buildVectorBits >= 512 ? 16.0 : 8.0
            best = max(best, Double(threads) * Double(iterations) * 10 * lanes * 2 / ns)
        } while Date() < deadline
        precondition(sink.allSatisfy { $0.isFinite })
        return best
    }

    @inline(never)
    static func fmaChains<V: SIMD>(_: V.Type, _ n: Int) -> Float where V.Scalar == Float {
        // a ← a·m + c: ten independent chains that converge to c/(1−m), never denormal or infinite.
        let m = V(repeating: 0.999_9), c = V(repeating: 1e-4)
        var a0 = V(repeating: 1), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c
        var a5 = a4 + c, a6 = a5 + c, a7 = a6 + c, a8 = a7 + c, a9 = a8 + c
        for _ in 0..<n {
            a0 = c.addingProduct(a0, m); a1 = c.addingProduct(a1, m); a2 = c.addingProduct(a2, m)
            a3 = c.addingProduct(a3, m); a4 = c.addingProduct(a4, m); a5 = c.addingProduct(a5, m)
            a6 = c.addingProduct(a6, m); a7 = c.addingProduct(a7, m); a8 = c.addingProduct(a8, m)
            a9 = c.addingProduct(a9, m)
        }
        return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9).sum()
    }
}
