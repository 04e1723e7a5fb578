import Foundation
import ViTMergeCore
import ViTMergeKernels

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
