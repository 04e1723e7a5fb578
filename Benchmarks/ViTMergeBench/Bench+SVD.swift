import Foundation
import ViTMergeCore
import ViTMergeKernels
import ViTMergeMerging
import ViTMergeModel

extension Bench {
    /// Thin SVD (`SVD.decompose`, one-sided Jacobi in Double) of uniform random matrices at the
    /// ViT-B weight shapes 768×768 (qkv/proj blocks) and 3072×768 (fc1; fc2 is its transpose), in
    /// decompositions per second; one timed run after none (a run takes seconds, so the spread is
    /// small next to it). With --numpy, scripts/bench_svd_numpy.py times numpy.linalg.svd
    /// (full_matrices=False, LAPACK gesdd) on the same shapes as the peer.
    func svdSuite() {
        let shapes = options.quick ? [(256, 256), (768, 256)] : [(768, 768), (3072, 768)]
        for th in options.threads {
            ThreadPool.shared.threads = th
            let peers = options.numpy.flatMap { svdNumpyPeer($0, shapes: shapes, threads: th) }
            for (m, n) in shapes {
                let a = randomBuffer(m * n, seed: 1)
                let k = min(m, n)
                let u = Tensor(zeros: [m * k]), s = Tensor(zeros: [k]), vt = Tensor(zeros: [k * n])
                let t0 = DispatchTime.now().uptimeNanoseconds
                let sweeps = SVD.decompose(a: a.pointer, m: m, n: n, u: u.pointer, s: s.pointer, vt: vt.pointer)
                let time = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                let peer = peers.flatMap { p in p.seconds["\(m)x\(n)"].map { ("numpy \(p.version)", 1 / $0) } }
                record("svd", "svd \(m)×\(n)", [m, n], threads: th, value: 1 / time, unit: "SVD/s", peer: peer)
                records[records.count - 1].name += String(format: " (%.2f s, %d sweeps)", time, sweeps)
            }
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }

    /// Every data-free merge of T random task vectors (std 1e-3) over a ViT encoder — ViT-S/16 with T = 8
    /// (22 M floats, 88 MB a vector), with --quick ViT-Ti/16 with T = 4 — at all threads: time and the peak
    /// resident memory above the inputs (VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS
    /// before), in MB and in encoder vectors (the result itself is one). EMR's result is τ_uni, its T byte
    /// masks and scales.
    func mergeMemorySuite() {
        let (config, name, t) = options.quick ? (ViTConfig.vitTiny(), "vit-ti", 4) : (.vitSmall(), "vit-s", 8)
        let table = ParameterTable(config: config)
        let taus = (0..<t).map { t -> EncoderVector in
            let v = EncoderVector(table: table)
            var rng = RNG(seed: 100 + UInt64(t))
            for i in 0..<v.count { v.base[i] = Float(rng.normal() * 1e-3) }
            return v
        }
        let vectorMB = Double(taus[0].count * 4) / 1e6
        let methods: [(String, () -> Any)] = [
            ("sum", { Merges.sum(taus) }), ("average", { Merges.average(taus) }),
            ("ties", { Merges.ties(taus, keep: 0.2) }), ("dare", { Merges.dareSum(taus, drop: 0.9, seed: 1) }),
            ("magmax", { Merges.magMax(taus) }), ("consensus", { Merges.consensus(taus, maskScale: 0.4) }),
            ("breadcrumbs", { Merges.breadcrumbs(taus, density: 0.3, outliers: 0.01) }), ("emr", { Merges.emr(taus) }),
            ("tsv", { Merges.tsv(taus) }), ("iso-c", { Merges.isoC(taus) }),
            ("iso-cts", { Merges.isoCTS(taus, commonFraction: 0.8) }),
        ]
        print(String(format: "merge memory: %d task vectors of %d floats (%.0f MB each)", t, taus[0].count, vectorMB))
        for (method, merge) in methods {
            let reset = resetPeakRSS()
            let before = procStatusKB("VmRSS")
            let t0 = DispatchTime.now().uptimeNanoseconds
            let out = merge()
            let time = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            let peak = procStatusKB("VmHWM")
            withExtendedLifetime(out) {}
            let th = ThreadPool.shared.threads
            record(
                "merge-memory", "\(method) merge, \(t) × \(name) encoder", [t, taus[0].count], threads: th,
                value: time, unit: "s")
            if reset, let before, let peak {
                let extra = Double(peak - before) / 1e3
                records[records.count - 1].name += String(
                    format: " (peak +%.0f MB = %.2f vectors of %.0f MB)", extra, extra / vectorMB, vectorMB)
            }
            print("  \(records[records.count - 1].name): \(String(format: "%.2f", time)) s")
        }
    }

    /// numpy's version and seconds per numpy.linalg.svd for each shape ("MxN" keys), from
    /// scripts/bench_svd_numpy.py with OPENBLAS_NUM_THREADS = threads; nil when it cannot run.
    func svdNumpyPeer(
        _ python: String, shapes: [(Int, Int)], threads: Int
    ) -> (version: String, seconds: [String: Double])? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [python, "scripts/bench_svd_numpy.py"] + shapes.map { "\($0.0)x\($0.1)" }
        var env = ProcessInfo.processInfo.environment
        for key in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"] { env[key] = String(threads) }
        p.environment = env
        let stdout = Pipe()
        p.standardOutput = stdout
        do { try p.run() } catch {
            print("  note: cannot run \(python) scripts/bench_svd_numpy.py (\(error)); numpy peer skipped")
            return nil
        }
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let rs = obj["results"] as? [[String: Any]]
        else {
            print("  note: scripts/bench_svd_numpy.py failed (exit \(p.terminationStatus)); numpy peer skipped")
            return nil
        }
        var out: [String: Double] = [:]
        for r in rs { if let name = r["shape"] as? String, let t = r["seconds"] as? Double { out[name] = t } }
        return (obj["numpy"] as? String ?? "?", out)
    }
}

/// A "VmRSS"/"VmHWM"-style field of /proc/self/status in kB (nil off Linux).
func procStatusKB(_ field: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        return Int(line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
    }
    return nil
}

/// Resets VmHWM to the current VmRSS ("5" into /proc/self/clear_refs, Linux ≥ 4.0); false when it cannot.
func resetPeakRSS() -> Bool {
    guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
    defer { try? h.close() }
    return (try? h.write(contentsOf: Data("5".utf8))) != nil
}
