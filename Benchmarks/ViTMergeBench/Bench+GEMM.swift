import Foundation
import ViTMergeCore
import ViTMergeKernels

extension Bench {
    /// GEMM shapes: squares, and the linear layers of ViT-Ti/S/B at batch 32 (M = 32·197 tokens)
    /// in the three forms training uses (forward NT: y = x·Wᵀ, backward NN: dx = dy·W,
    /// backward TN: dW = dyᵀ·x), plus the batched attention GEMMs.
    func gemmSuite() {
        var shapes: [(String, Bool, Bool, Int, Int, Int)] = []
        for s in (options.quick ? [256, 1024] : [256, 512, 1024, 2048]) {
            shapes.append(("square \(s) NN", false, false, s, s, s))
        }
        let tokens = 32 * 197
        let models: [(String, Int)] =
            options.quick ? [("vit-ti", 192)] : [("vit-ti", 192), ("vit-s", 384), ("vit-b", 768)]
        for (name, d) in models {
            for (layer, k, n) in [("qkv", d, 3 * d), ("proj", d, d), ("fc1", d, 4 * d), ("fc2", 4 * d, d)] {
                shapes.append(("\(name) \(layer) fwd NT", false, true, tokens, n, k))
                if layer == "fc1" || layer == "qkv" {
                    shapes.append(("\(name) \(layer) dx NN", false, false, tokens, k, n))
                    shapes.append(("\(name) \(layer) dW TN", true, false, n, k, tokens))
                }
            }
        }
        if let text = options.gemmFilter { shapes = shapes.filter { $0.0.contains(text) } }
        for t in options.threads {
            ThreadPool.shared.threads = t
            openblas?.setThreads(t)
            for (name, ta, tb, m, n, k) in shapes { measureGEMM(name: name, ta, tb, m, n, k, threads: t) }
            if let python = options.numpy { numpyPeer(python, shapes: shapes, threads: t) }
            let attention = options.quick ? [("vit-ti", 192, 3)] : [("vit-ti", 192, 3), ("vit-b", 768, 12)]
            for (name, d, h) in attention where options.gemmFilter.map({ "\(name) attn".contains($0) }) ?? true {
                measureAttention(name: name, d: d, heads: h, threads: t)
            }
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }

    func measureGEMM(name: String, _ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, threads: Int) {
        let a = Tensor(zeros: [m * k]), b = Tensor(zeros: [k * n]), c = Tensor(zeros: [m * n])
        var rng = RNG(seed: 1)
        for i in 0..<a.count { a.pointer[i] = rng.uniformFloat() - 0.5 }
        for i in 0..<b.count { b.pointer[i] = rng.uniformFloat() - 0.5 }
        let lda = ta ? m : k, ldb = tb ? k : n
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        let ours = bestTime(minSeconds: options.minSeconds) {
            sgemm(
                transA: ta, transB: tb, m: m, n: n, k: k, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb,
                c: c.pointer, ldc: n)
        }
        var rec = Record(
            suite: "gemm", name: name, shape: [m, n, k], threads: threads,
            value: flops / ours * 1e-9, unit: "GFLOP/s")
        if let peak = peaks[threads] { rec.percent_of_peak = 100 * rec.value / peak }
        if let blas = openblas {
            let theirs = bestTime(minSeconds: options.minSeconds) {
                blas.sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: a.pointer, lda: lda,
                    b: b.pointer, ldb: ldb, beta: 0, c: c.pointer, ldc: n)
            }
            rec.peer = "openblas"; rec.peer_value = flops / theirs * 1e-9; rec.ratio = theirs / ours
        }
        records.append(rec)
        if options.bf16 {
            let bf16 = bestTime(minSeconds: options.minSeconds) {
                sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb,
                    c: c.pointer, ldc: n, precision: .bf16)
            }
            var r = Record(
                suite: "gemm", name: name + " bf16", shape: [m, n, k], threads: threads, value: flops / bf16 * 1e-9,
                unit: "GFLOP/s")
            if let peak = peaks[threads] { r.percent_of_peak = 100 * r.value / peak }
            r.peer = "ours fp32"; r.peer_value = rec.value; r.ratio = ours / bf16
            records.append(r)
        }
    }

    /// Attention's two batched GEMMs for batch 32: S = Q·Kᵀ (NT) and O = P·V (NN) per (image, head),
    /// Q, K, V read in place from the fused qkv activation [B, T, 3D].
    func measureAttention(name: String, d: Int, heads: Int, threads: Int) {
        let batch = 32, t = 197, hd = d / heads
        let qkv = Tensor(zeros: [batch * t * 3 * d]), s = Tensor(zeros: [batch * heads * t * t])
        let o = Tensor(zeros: [batch * t * d])
        var rng = RNG(seed: 2)
        for i in 0..<qkv.count { qkv.pointer[i] = rng.uniformFloat() - 0.5 }
        for i in 0..<s.count { s.pointer[i] = rng.uniformFloat() }
        let flops = 2.0 * Double(batch * heads) * Double(t * t * hd)
        let qk = bestTime(minSeconds: options.minSeconds) {
            sgemmBatched(
                transA: false, transB: true, m: t, n: t, k: hd,
                a: qkv.pointer, lda: 3 * d, strideA: (t * 3 * d, hd),
                b: qkv.pointer + d, ldb: 3 * d, strideB: (t * 3 * d, hd),
                c: s.pointer, ldc: t, strideC: (heads * t * t, t * t), batch: (batch, heads))
        }
        let pv = bestTime(minSeconds: options.minSeconds) {
            sgemmBatched(
                transA: false, transB: false, m: t, n: hd, k: t,
                a: s.pointer, lda: t, strideA: (heads * t * t, t * t),
                b: qkv.pointer + 2 * d, ldb: 3 * d, strideB: (t * 3 * d, hd),
                c: o.pointer, ldc: d, strideC: (t * d, hd), batch: (batch, heads))
        }
        for (label, time, shape) in [("\(name) attn QKt NT", qk, [t, t, hd]), ("\(name) attn PV NN", pv, [t, hd, t])] {
            var rec = Record(
                suite: "gemm", name: label, shape: [batch * heads] + shape, threads: threads,
                value: flops / time * 1e-9, unit: "GFLOP/s")
            if let peak = peaks[threads] { rec.percent_of_peak = 100 * rec.value / peak }
            records.append(rec)
        }
    }

    /// Cost of one parallel region with a little real work in it (each thread sums its own 4096
    /// floats, ~0.5 µs), the pool against DispatchQueue.concurrentPerform. With an empty body,
    /// concurrentPerform's caller runs every iteration itself and never engages a second thread.
    func runtimeSuite() {
        let data = randomBuffer(8 * 4096, seed: 12)
        for t in options.threads where t > 1 {
            ThreadPool.shared.threads = t
            let reps = 2000
            var sink = [Float](repeating: 0, count: 64)
            nonisolated(unsafe) let src = UnsafePointer(data.pointer)
            let pool = bestTime(minSeconds: options.minSeconds) {
                sink.withUnsafeMutableBufferPointer { s in
                    let p = s.baseAddress!
                    for _ in 0..<reps { ThreadPool.shared.run(threads: t) { ith, _ in regionWork(src, p, ith) } }
                }
            }
            let dispatch = bestTime(minSeconds: options.minSeconds) {
                sink.withUnsafeMutableBufferPointer { s in
                    nonisolated(unsafe) let p = s.baseAddress!
                    for _ in 0..<reps {
                        DispatchQueue.concurrentPerform(iterations: t) { ith in regionWork(src, p, ith) }
                    }
                }
            }
            let serial = bestTime(minSeconds: options.minSeconds) {
                sink.withUnsafeMutableBufferPointer { s in
                    let p = s.baseAddress!
                    for _ in 0..<reps { for ith in 0..<t { regionWork(src, p, ith) } }
                }
            }
            for (name, time) in [("parallel region, pool", pool), ("parallel region, concurrentPerform", dispatch)] {
                var rec = Record(
                    suite: "runtime", name: name, shape: [t], threads: t, value: time / Double(reps) * 1e6,
                    unit: "us/call")
                rec.peer = "serial loop"; rec.peer_value = serial / Double(reps) * 1e6; rec.ratio = serial / time
                records.append(rec)
            }
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }

    /// Times the same shapes with numpy (scripts/bench_numpy.py, OPENBLAS_NUM_THREADS = threads) and
    /// adds one record per shape with numpy as the peer of the figure measured above.
    func numpyPeer(_ python: String, shapes: [(String, Bool, Bool, Int, Int, Int)], threads: Int) {
        let input = shapes.map {
            ["name": $0.0, "transA": $0.1, "transB": $0.2, "m": $0.3, "n": $0.4, "k": $0.5] as [String: Any]
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [python, "scripts/bench_numpy.py", String(options.minSeconds)]
        var env = ProcessInfo.processInfo.environment
        for key in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"] { env[key] = String(threads) }
        p.environment = env
        let stdin = Pipe(), stdout = Pipe()
        p.standardInput = stdin; p.standardOutput = stdout
        do { try p.run() } catch {
            print("  note: cannot run \(python) scripts/bench_numpy.py (\(error)); numpy peer skipped")
            return
        }
        stdin.fileHandleForWriting.write(try! JSONSerialization.data(withJSONObject: input))
        try? stdin.fileHandleForWriting.close()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let rs = obj["results"] as? [[String: Any]]
        else {
            print("  note: scripts/bench_numpy.py failed (exit \(p.terminationStatus)); numpy peer skipped")
            return
        }
        let version = obj["numpy"] as? String ?? "?"
        for r in rs {
            guard let name = r["name"] as? String, let gf = r["gflops"] as? Double,
                let ours = records.last(where: {
                    $0.suite == "gemm" && $0.name == name && $0.threads == threads && $0.peer != "numpy \(version)"
                })
            else { continue }
            var rec = Record(
                suite: "gemm", name: name, shape: ours.shape, threads: threads, value: ours.value, unit: "GFLOP/s")
            rec.percent_of_peak = ours.percent_of_peak
            rec.peer = "numpy \(version)"; rec.peer_value = gf; rec.ratio = ours.value / gf
            records.append(rec)
        }
    }
}

/// dst[8·ith] += Σ src[4096·ith ..< 4096·(ith + 1)]: a parallel region's worth of real work.
@inline(never)
func regionWork(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ ith: Int) {
    let x = src + ith * 4096
    var acc = SIMD16<Float>()
    for i in stride(from: 0, to: 4096, by: 16) { acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) }
    dst[ith * 8] += acc.sum()
}
