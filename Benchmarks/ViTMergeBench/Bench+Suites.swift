import CSleef
import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeMerging
import ViTMergeModel
import ViTMergeTraining

/// A buffer of `count` floats, uniform in [lo, hi).
func randomBuffer(_ count: Int, seed: UInt64, _ lo: Float = -1, _ hi: Float = 1) -> Tensor {
    let t = Tensor(zeros: [count])
    var rng = RNG(seed: seed)
    for i in 0..<count { t.pointer[i] = lo + (hi - lo) * rng.uniformFloat() }
    return t
}

extension Bench {
    // MARK: Bandwidth

    /// STREAM-like "scale" (b = s·a) over 2 × 256 MB: the machine's sustainable bandwidth in GB/s,
    /// counting 8 bytes per element (read a, write b), the reference for the bandwidth-bound kernels.
    func measureBandwidth(threads: Int) -> Double {
        let n = 64 << 20
        let a = randomBuffer(n, seed: 3), b = Tensor(zeros: [n])
        ThreadPool.shared.threads = threads
        let t = bestTime(minSeconds: options.minSeconds) {
            Elementwise.linearCombination(out: b.pointer, base: a.pointer, xs: [], coefficients: [], count: n)
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
        return 8.0 * Double(n) / t * 1e-9
    }

    func record(
        _ suite: String, _ name: String, _ shape: [Int], threads: Int, value: Double, unit: String,
        peer: (String, Double)? = nil, ofBandwidth: Bool = false
    ) {
        var r = Record(suite: suite, name: name, shape: shape, threads: threads, value: value, unit: unit)
        if unit == "GFLOP/s", let peak = peaks[threads] { r.percent_of_peak = 100 * value / peak }
        if ofBandwidth, let bw = bandwidths[threads] { r.percent_of_peak = 100 * value / bw }
        if let (name, v) = peer { r.peer = name; r.peer_value = v; r.ratio = value / v }
        records.append(r)
    }

    // MARK: Kernels

    /// The non-GEMM kernels at ViT-Ti shapes for batch 32 (6304 tokens × 192, hidden 768).
    func kernelSuite() {
        let (rows, d, hidden, heads, t) = (32 * 197, 192, 768, 3, 197)
        let x = randomBuffer(rows * hidden, seed: 1), y = Tensor(zeros: [rows * hidden]),
            dy = randomBuffer(rows * hidden, seed: 2)
        let w = randomBuffer(d, seed: 3, 0.5, 1.5), bias = randomBuffer(d, seed: 4)
        let mean = Tensor(zeros: [rows]), rstd = Tensor(zeros: [rows]), dw = Tensor(zeros: [d]), db = Tensor(zeros: [d])
        for th in options.threads {
            ThreadPool.shared.threads = th
            let gb = { (bytes: Double, time: Double) in bytes / time * 1e-9 }
            let ln = bestTime(minSeconds: options.minSeconds) {
                LayerNorm.forward(
                    out: y.pointer, mean: mean.pointer, rstd: rstd.pointer, inp: x.pointer, weight: w.pointer,
                    bias: bias.pointer,
                    rows: rows, cols: d, eps: 1e-6)
            }
            record(
                "kernels", "layernorm fwd", [rows, d], threads: th, value: gb(8.0 * Double(rows * d), ln), unit: "GB/s",
                ofBandwidth: true)
            let lnb = bestTime(minSeconds: options.minSeconds) {
                LayerNorm.backward(
                    dinp: y.pointer, dweight: dw.pointer, dbias: db.pointer, dout: dy.pointer, inp: x.pointer,
                    weight: w.pointer,
                    mean: mean.pointer, rstd: rstd.pointer, rows: rows, cols: d)
            }
            record(
                "kernels", "layernorm bwd", [rows, d], threads: th, value: gb(12.0 * Double(rows * d), lnb),
                unit: "GB/s", ofBandwidth: true)

            let n = rows * hidden
            let ours = bestTime(minSeconds: options.minSeconds) {
                GELU.forward(out: y.pointer, inp: x.pointer, count: n)
            }
            let sleef = bestTime(minSeconds: options.minSeconds) {
                geluWithSleefErf(out: y.pointer, inp: x.pointer, count: n)
            }
            record(
                "kernels", "gelu fwd (own erf)", [n], threads: th, value: Double(n) / ours * 1e-9, unit: "Gelem/s",
                peer: ("sleef erff16_u10", Double(n) / sleef * 1e-9))
            let gb2 = bestTime(minSeconds: options.minSeconds) {
                GELU.backward(dinp: y.pointer, inp: x.pointer, dout: dy.pointer, count: n)
            }
            record("kernels", "gelu bwd", [n], threads: th, value: Double(n) / gb2 * 1e-9, unit: "Gelem/s")

            let srows = 32 * heads * t
            let s = randomBuffer(srows * t, seed: 5, -4, 4), so = Tensor(zeros: [srows * t])
            let sm = bestTime(minSeconds: options.minSeconds) {
                Softmax.forward(out: so.pointer, inp: s.pointer, rows: srows, cols: t)
            }
            record(
                "kernels", "softmax fwd", [srows, t], threads: th, value: gb(8.0 * Double(srows * t), sm), unit: "GB/s",
                ofBandwidth: true)

            attentionKernels(threads: th, batch: 32, tokens: t, dim: d, heads: heads)

            let logits = randomBuffer(32 * 1000, seed: 7, -3, 3), probs = Tensor(zeros: [32 * 1000]),
                losses = Tensor(zeros: [32])
            let labels = (0..<32).map { Int32($0 * 31 % 1000) }
            let ce = bestTime(minSeconds: options.minSeconds) {
                _ = CrossEntropy.forward(
                    probs: probs.pointer, losses: losses.pointer, logits: logits.pointer, labels: labels, rows: 32,
                    classes: 1000)
            }
            record("kernels", "cross-entropy fwd", [32, 1000], threads: th, value: gb(8.0 * 32_000, ce), unit: "GB/s")

            let np = 5_717_416  // ViT-Ti/16 parameters
            let p = randomBuffer(np, seed: 8), g = randomBuffer(np, seed: 9), m = Tensor(zeros: [np]),
                v = Tensor(zeros: [np])
            var step = 0
            let adam = bestTime(minSeconds: options.minSeconds) {
                step += 1
                AdamW.update(
                    params: p.pointer, grads: g.pointer, m: m.pointer, v: v.pointer, count: np, step: step, lr: 1e-3,
                    beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05)
            }
            record(
                "kernels", "adamw update (vit-ti)", [np], threads: th, value: gb(28.0 * Double(np), adam), unit: "GB/s",
                ofBandwidth: true)
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }

    /// Attention at ViT-Ti/16 and ViT-B/16 shapes, batch 32, 224 (T = 197): fused vs unfused.
    func attentionSuite() {
        for th in options.threads {
            ThreadPool.shared.threads = th
            for (d, heads) in options.quick ? [(192, 3)] : [(192, 3), (768, 12)] {
                attentionKernels(threads: th, batch: 32, tokens: 197, dim: d, heads: heads)
            }
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }

    /// Attention at batch × tokens × dim / heads, the fused kernels and the unfused path timed
    /// alternately in the same loop (the machine's load hits both alike): forward saving the
    /// probabilities (training), forward without them (inference), backward. GFLOP/s counts the
    /// matrix products: 4·B·H·T²·hd forward, 8·B·H·T²·hd backward.
    func attentionKernels(threads th: Int, batch: Int, tokens t: Int, dim d: Int, heads: Int) {
        let qkv = randomBuffer(batch * t * 3 * d, seed: 6), att = Tensor(zeros: [batch * heads * t * t]),
            datt = Tensor(zeros: [batch * heads * t * t]), out = Tensor(zeros: [batch * t * d]),
            dout = randomBuffer(batch * t * d, seed: 7), dqkv = Tensor(zeros: [batch * t * 3 * d])
        let shape = [batch, t, d, heads]
        let fwdFlops = 4.0 * Double(batch * heads * t * t * (d / heads)), bwdFlops = 2 * fwdFlops
        let gflops = { (flops: Double, time: Double) in flops / time * 1e-9 }
        let (fused, unfused) = bestTimesInterleaved(
            {
                Attention.forwardFused(
                    out: out.pointer, att: att.pointer, qkv: qkv.pointer, batch: batch, tokens: t, dim: d,
                    heads: heads)
            },
            {
                Attention.forwardUnfused(
                    out: out.pointer, att: att.pointer, qkv: qkv.pointer, batch: batch, tokens: t, dim: d,
                    heads: heads)
            })
        let (inference, _) = bestTimesInterleaved(
            {
                Attention.forwardFused(
                    out: out.pointer, att: nil, qkv: qkv.pointer, batch: batch, tokens: t, dim: d, heads: heads)
            },
            {
                Attention.forwardUnfused(
                    out: out.pointer, att: att.pointer, qkv: qkv.pointer, batch: batch, tokens: t, dim: d,
                    heads: heads)
            })
        let (bwd, bwdUnfused) = bestTimesInterleaved(
            {
                Attention.backwardFused(
                    dqkv: dqkv.pointer, dout: dout.pointer, qkv: qkv.pointer, att: att.pointer, batch: batch,
                    tokens: t, dim: d, heads: heads)
            },
            {
                Attention.backwardUnfused(
                    dqkv: dqkv.pointer, datt: datt.pointer, dout: dout.pointer, qkv: qkv.pointer, att: att.pointer,
                    batch: batch, tokens: t, dim: d, heads: heads)
            })
        // Training with P recomputed in the backward instead of saved: forward without att + backward.
        let (recompute, saved) = bestTimesInterleaved(
            {
                Attention.forwardFused(
                    out: out.pointer, att: nil, qkv: qkv.pointer, batch: batch, tokens: t, dim: d, heads: heads)
                Attention.backwardFused(
                    dqkv: dqkv.pointer, dout: dout.pointer, qkv: qkv.pointer, att: nil, batch: batch, tokens: t,
                    dim: d, heads: heads)
            },
            {
                Attention.forwardFused(
                    out: out.pointer, att: att.pointer, qkv: qkv.pointer, batch: batch, tokens: t, dim: d,
                    heads: heads)
                Attention.backwardFused(
                    dqkv: dqkv.pointer, dout: dout.pointer, qkv: qkv.pointer, att: att.pointer, batch: batch,
                    tokens: t, dim: d, heads: heads)
            })
        let unfusedPeer = { (time: Double, flops: Double) in ("unfused", gflops(flops, time)) }
        record(
            "kernels", "attention fwd (fused, att saved)", shape, threads: th, value: gflops(fwdFlops, fused),
            unit: "GFLOP/s", peer: unfusedPeer(unfused, fwdFlops))
        record(
            "kernels", "attention fwd (fused, no att)", shape, threads: th, value: gflops(fwdFlops, inference),
            unit: "GFLOP/s", peer: unfusedPeer(unfused, fwdFlops))
        record(
            "kernels", "attention bwd (fused)", shape, threads: th, value: gflops(bwdFlops, bwd), unit: "GFLOP/s",
            peer: unfusedPeer(bwdUnfused, bwdFlops))
        record(
            "kernels", "attention fwd+bwd (fused)", shape, threads: th,
            value: gflops(fwdFlops + bwdFlops, fused + bwd), unit: "GFLOP/s",
            peer: unfusedPeer(unfused + bwdUnfused, fwdFlops + bwdFlops))
        // The same useful flops (the recomputed S is not counted), so the ratio is the time ratio.
        record(
            "kernels", "attention fwd+bwd (P recomputed)", shape, threads: th,
            value: gflops(fwdFlops + bwdFlops, recompute), unit: "GFLOP/s",
            peer: ("P saved", gflops(fwdFlops + bwdFlops, saved)))
    }

    /// Best times of `a` and `b` run alternately (a, b, a, b, …) until each has run ≥ `minSeconds`
    /// in total and at least 3 times, so that a change in the machine's load affects both alike.
    /// The time is CPU time, not the wall clock (on a loaded machine the wall clock also counts
    /// the time other processes had the cores): with one thread the calling thread's, with n the
    /// process's divided by n (the pool's workers spin while they wait, so this counts waits
    /// for a preempted peer too, but not time the whole process was off the cores).
    /// `minRuns` (at least 1) lowers the 3 timed runs for bodies that take seconds each.
    func bestTimesInterleaved(minRuns: Int = 3, _ a: () -> Void, _ b: () -> Void) -> (Double, Double) {
        a(); b()  // warm-up
        var best = (Double.infinity, Double.infinity), total = (0.0, 0.0), runs = 0
        let time = cpuTimer(threads: ThreadPool.shared.threads)
        while min(total.0, total.1) < options.minSeconds || runs < minRuns {
            let ta = time(a), tb = time(b)
            best = (min(best.0, ta), min(best.1, tb)); total = (total.0 + ta, total.1 + tb); runs += 1
        }
        return best
    }

    /// Best CPU time of `body` (the clock of `bestTimesInterleaved`) over runs lasting at least
    /// `minSeconds` in total and at least `minRuns`, after one warm-up.
    func bestCPUTime(minRuns: Int = 3, _ body: () -> Void) -> Double {
        body()  // warm-up
        var best = Double.infinity, total = 0.0, runs = 0
        let time = cpuTimer(threads: ThreadPool.shared.threads)
        while total < options.minSeconds || runs < minRuns {
            let t = time(body)
            best = min(best, t); total += t; runs += 1
        }
        return best
    }

    // MARK: ViT profile

    /// Time per kernel category in one training step (forward, loss, backward, AdamW), as a table.
    func profileSuite() {
        let batch = 32
        let precisions: [GEMM.Precision] = options.bf16 ? [.fp32, .bf16] : [.fp32]
        for (model, config) in profileConfigs {
            let images = randomImages(config, count: batch)
            for th in options.threads {
                for precision in precisions {
                    GEMM.precision = precision
                    defer { GEMM.precision = .fp32 }
                    let name = model + (precision == .bf16 ? " bf16" : "")
                    ThreadPool.shared.threads = th
                    let trainer = benchTrainer(ViT(config: config, seed: 1), images, .full)
                    for _ in 0..<2 { _ = trainer.step() }
                    let steps = config.imageHeight > 100 ? 3 : 20
                    Profiler.reset()
                    Profiler.enabled = true
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<steps { _ = trainer.step() }
                    let total = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(steps)
                    Profiler.enabled = false
                    print(
                        String(
                            format: "\nprofile: %@, batch %d, %d thread(s): %.2f ms per training step", name, batch, th,
                            total * 1e3))
                    var accounted = 0.0
                    for c in ProfileCategory.allCases {
                        let sec = Profiler.seconds[c.rawValue] / Double(steps)
                        accounted += sec
                        printProfileLine(c.name, sec, total, Profiler.calls[c.rawValue] / steps)
                        record("profile", "\(name) \(c.name)", [batch], threads: th, value: sec * 1e3, unit: "ms/step")
                        records[records.count - 1].percent_of_peak = nil
                    }
                    printProfileLine("other (embedding, residual adds, pooling, copies)", total - accounted, total, nil)
                    record(
                        "profile", "\(name) other", [batch], threads: th, value: (total - accounted) * 1e3,
                        unit: "ms/step")
                }
            }
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }

    func printProfileLine(_ label: String, _ sec: Double, _ total: Double, _ calls: Int?) {
        print(
            "  " + label.padding(toLength: 52, withPad: " ", startingAt: 0)
                + String(format: "%9.3f ms  %5.1f%%", sec * 1e3, 100 * sec / total)
                + (calls.map { "  \($0) calls" } ?? ""))
    }

    /// The profile and fusion suites' models: those of `--vit-models` when given, else the 28×28
    /// demo model and ViT-Ti/16 at 224 unless --quick.
    var profileConfigs: [(String, ViTConfig)] {
        if options.vitModelList != nil {
            return options.vitModels.map(\.name).uniqued().map { ($0, ViTConfig.presets[$0]!) }
        }
        return [("vit_mini_patch4_28", .mini28())] + (options.quick ? [] : [("vit_tiny_patch16_224", .vitTiny())])
    }

    /// A trainer whose batch is all of `images` (batch 32), run for as many steps as timed.
    func benchTrainer(_ model: ViT, _ images: LabeledImages, _ mode: TrainMode) -> Trainer {
        Trainer(
            model: model, train: images, mode: mode,
            settings: TrainSettings(steps: 1_000_000, batchSize: images.count, lr: 1e-4, seed: 1))
    }

    func randomImages(_ c: ViTConfig, count: Int) -> LabeledImages {
        var rng = RNG(seed: 11)
        let size = c.inChannels * c.imageHeight * c.imageWidth
        return LabeledImages(
            count: count, channels: c.inChannels, height: c.imageHeight, width: c.imageWidth,
            images: (0..<(count * size)).map { _ in UInt8(rng.next() & 0xFF) },
            labels: (0..<count).map { Int32($0 % c.numClasses) })
    }

    // MARK: Merge

    /// Task addition θ = θ_pre + λ·Σ τ over a ViT-B-sized arena (86.6 M floats) for 1 and 4 task
    /// vectors: GB/s counting each input read once and the output written once.
    func mergeSuite() {
        let n = 86_567_656  // vit_base_patch16_224 parameters
        let base = randomBuffer(n, seed: 1), out = Tensor(zeros: [n])
        let taus = (0..<4).map { i in randomBuffer(n, seed: 2 + UInt64(i), -0.01, 0.01) }
        for th in options.threads {
            ThreadPool.shared.threads = th
            for k in [1, 4] {
                let xs = taus.prefix(k).map { UnsafePointer($0.pointer) }
                let time = bestTime(minSeconds: options.minSeconds) {
                    Elementwise.linearCombination(
                        out: out.pointer, base: base.pointer, xs: xs, coefficients: [Float](repeating: 0.3, count: k),
                        count: n)
                }
                record(
                    "merge", "task addition, \(k) vector(s)", [n], threads: th,
                    value: 4.0 * Double(n * (k + 2)) / time * 1e-9, unit: "GB/s",
                    ofBandwidth: true)
                records[records.count - 1].name += String(format: " (%.0f ms)", time * 1e3)
            }
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }
}

/// GELU through SLEEF's erf (the peer of our own erf polynomial).
func geluWithSleefErf(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    let pool = ThreadPool.shared
    pool.run { ith, nth in
        let r = ThreadPool.split(count / 16, ith, nth)
        var buf = [Float](repeating: 0, count: 16)
        buf.withUnsafeMutableBufferPointer { b in
            for blk in r {
                let i = blk * 16
                let x = UnsafeRawPointer(inp + i).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(b.baseAddress!).storeBytes(of: x * 0.70710678, as: SIMD16<Float>.self)
                vm_erff16(b.baseAddress!, b.baseAddress!)
                let e = UnsafeRawPointer(b.baseAddress!).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(out + i).storeBytes(of: 0.5 * x * (1 + e), as: SIMD16<Float>.self)
            }
        }
    }
}

/// A stopwatch in CPU seconds for work on `threads` threads: the calling thread's CPU time with
/// one thread, the process's divided by `threads` with more (see `Bench.bestTimesInterleaved`).
func cpuTimer(threads: Int) -> (() -> Void) -> Double {
    let now = { () -> Double in
        var ts = timespec()
        clock_gettime(threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID, &ts)
        return (Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9) / Double(threads)
    }
    return { body in
        let t0 = now()
        body()
        return now() - t0
    }
}
