import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
import ViTMergeTraining

/// One figure of scripts/bench_torch.py: images per second of `name` ("<model> forward" or
/// "<model> train step") at `batch` and `threads` for one PyTorch peer.
struct TorchFigure {
    let name: String
    let threads: Int
    let batch: Int
    /// A `TorchPeer` raw value; files written before the peers existed are eager.
    let peer: String
    let value: Double
    /// PyTorch's version without the build suffix ("2.15.0").
    let version: String
    /// torch.compile's first calls (forward, then train step), not timed; compile only.
    let compileSeconds: Double?
    /// "cpu" (vitmerge-bench's clock) or "wall"; files written before the clock was recorded: wall.
    let clock: String

    /// The peer's name in the table: "torch 2.15.0 compile".
    var label: String { "torch \(version) \(peer)" }
}

extension Bench {
    // MARK: ViT

    /// Best seconds with the fused attention, and with the unfused one when it was timed.
    typealias FusedTimes = (fused: Double, unfused: Double?)

    /// Per row of `--vit-models` (a model at a batch size) and thread count, images per second of
    /// the forward pass (inference), the training step (forward, cross-entropy, backward, AdamW)
    /// and the linearized step (primal forward + JVP + backward at θ0, AdamW on θ). With `--torch`
    /// the PyTorch peers of the row are timed right before it; a record's peer is the fastest of
    /// them, and a record per peer follows. The unfused-attention rows are left out for ViT-S/B.
    func vitSuite() {
        for row in options.vitModels {
            if let python = options.torch { runTorch(python, row) }
            let images = randomImages(row.config, count: row.batch)
            let ips = { (seconds: Double) in Double(row.batch) / seconds }
            for th in options.threads {
                ThreadPool.shared.threads = th
                let (fwd, fwdUnfused) = timeForward(row, images)
                recordViT(row, "forward", threads: th, seconds: fwd)
                if let t = fwdUnfused {
                    record(
                        "vit", "\(row.name) forward, unfused attn", [row.batch], threads: th, value: ips(t),
                        unit: "img/s", peer: ("fused", ips(fwd)))
                }
                let (step, stepUnfused) = timeStep(row, images, .full)
                recordViT(row, "train step", threads: th, seconds: step)
                if let t = stepUnfused {
                    record(
                        "vit", "\(row.name) train step, unfused attn", [row.batch], threads: th, value: ips(t),
                        unit: "img/s", peer: ("fused", ips(step)))
                }
                let (lin, linUnfused) = timeStep(row, images, .linearized)
                record(
                    "vit", String(format: "%@ linearized train step (%.2f× its time)", row.name, lin / step),
                    [row.batch], threads: th, value: ips(lin), unit: "img/s", peer: ("normal train step", ips(step)))
                if let t = linUnfused {
                    record(
                        "vit", "\(row.name) linearized train step, unfused attn", [row.batch], threads: th,
                        value: ips(t), unit: "img/s", peer: ("fused", ips(lin)))
                }
                if options.bf16 {
                    for (what, body) in [("forward", forwardBody(row, images)), ("train step", stepBody(row, images))] {
                        // FP32 and bf16 timed alternately, so their ratio holds on a busy machine.
                        let (fp32, bf16) = bestTimesInterleaved(
                            minRuns: row.minRuns,
                            {
                                GEMM.precision = .fp32; body()
                            },
                            {
                                GEMM.precision = .bf16; body()
                            })
                        GEMM.precision = .fp32
                        record(
                            "vit", "\(row.name) \(what) bf16", [row.batch], threads: th, value: ips(bf16),
                            unit: "img/s",
                            peer: ("ours fp32", ips(fp32)))
                        recordViT(row, what, threads: th, seconds: bf16, bf16: true)
                    }
                }
                let figures = torchFigures("\(row.name) forward", threads: th, batch: row.batch)
                if let s = figures.compactMap(\.compileSeconds).first {
                    record(
                        "vit", "\(row.name) torch.compile time (first calls)", [row.batch], threads: th,
                        value: s, unit: "s")
                }
            }
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }

    /// Best time of one forward pass of `row`'s model over all of `images` (`timeFusedAndUnfused`).
    func timeForward(_ row: ViTModel, _ images: LabeledImages) -> FusedTimes {
        timeFusedAndUnfused(row, forwardBody(row, images))
    }

    /// One forward pass of `row`'s model over all of `images`, ready to time.
    func forwardBody(_ row: ViTModel, _ images: LabeledImages) -> () -> Void {
        let batch = images.count
        let model = ViT(config: row.config, seed: 1)
        let acts = model.makeActivations(capacity: batch)
        var input = [Float](repeating: 0, count: batch * images.imageSize)
        input.withUnsafeMutableBufferPointer { images.fill(0..<batch, input: $0.baseAddress!, labels: nil) }
        return {
            input.withUnsafeBufferPointer {
                model.forward(input: $0.baseAddress!, batch: batch, acts: acts, forBackward: false)
            }
        }
    }

    /// Best time of one training step (`mode`) of `row`'s model on all of `images` (`timeFusedAndUnfused`).
    func timeStep(_ row: ViTModel, _ images: LabeledImages, _ mode: TrainMode) -> FusedTimes {
        timeFusedAndUnfused(row, stepBody(row, images, mode))
    }

    /// One training step (`mode`) of `row`'s model on all of `images`, ready to time.
    func stepBody(_ row: ViTModel, _ images: LabeledImages, _ mode: TrainMode = .full) -> () -> Void {
        let trainer = benchTrainer(ViT(config: row.config, seed: 1), images, mode)
        return { _ = trainer.step() }
    }

    /// Best time of `body` with the fused attention, `row.minRuns` timed runs at least; if the row
    /// compares the unfused attention, also with it, the two timed alternately (`bestTimesInterleaved`).
    func timeFusedAndUnfused(_ row: ViTModel, _ body: () -> Void) -> FusedTimes {
        Attention.fused = true
        guard row.comparesUnfused else { return (bestCPUTime(minRuns: row.minRuns, body), nil) }
        let (fused, plain) = bestTimesInterleaved(
            minRuns: row.minRuns,
            {
                Attention.fused = true; body()
            },
            {
                Attention.fused = false; body()
            })
        Attention.fused = true
        return (fused, plain)
    }

    /// Records "<model> <what>" at `seconds` per batch; its peer is the fastest PyTorch peer for
    /// the row ("… (best of 3)"), and with more than one peer a record per peer follows. With
    /// `bf16`, the row is "<model> <what> bf16" and its peers the bfloat16 ones (and the other way round).
    func recordViT(_ row: ViTModel, _ what: String, threads: Int, seconds: Double, bf16: Bool = false) {
        let name = "\(row.name) \(what)" + (bf16 ? " bf16" : ""), value = Double(row.batch) / seconds
        let figures = torchFigures("\(row.name) \(what)", threads: threads, batch: row.batch).filter {
            (TorchPeer(rawValue: $0.peer)?.isBF16 ?? false) == bf16
        }
        if bf16 && figures.isEmpty { return }  // the bf16 row against our FP32 is recorded already
        let best = figures.max { $0.value < $1.value }
        record(
            "vit", name, [row.batch], threads: threads, value: value, unit: "img/s",
            peer: best.map { (figures.count > 1 ? "\($0.label) (best of \(figures.count))" : $0.label, $0.value) })
        guard figures.count > 1 else { return }
        for f in figures {
            record("vit", name, [row.batch], threads: threads, value: value, unit: "img/s", peer: (f.label, f.value))
        }
    }

    // MARK: PyTorch peers

    /// The PyTorch figures for `name` at `threads` and `batch`, one per peer in `TorchPeer` order
    /// (then any other peer a file names); a figure measured in this run replaces one from `--compare`.
    func torchFigures(_ name: String, threads: Int, batch: Int) -> [TorchFigure] {
        let matching = torchResults.filter { $0.name == name && $0.threads == threads && $0.batch == batch }
        let order = TorchPeer.allCases.map(\.rawValue)
        let peers = matching.map(\.peer).uniqued().sorted {
            (order.firstIndex(of: $0) ?? order.count) < (order.firstIndex(of: $1) ?? order.count)
        }
        return peers.compactMap { peer in matching.last { $0.peer == peer } }
    }

    /// Runs scripts/bench_torch.py with `python` on `row` at the run's thread counts and
    /// `--torch-peers`, and adds its figures. Its progress goes to our standard output; if it
    /// cannot run, a note says so and the suite goes on without PyTorch figures for the row.
    func runTorch(_ python: String, _ row: ViTModel) {
        let script = "scripts/bench_torch.py"
        guard FileManager.default.fileExists(atPath: script) else {
            print("  note: \(script) not found (run vitmerge-bench from the repository's root); PyTorch peers skipped")
            return
        }
        let out = FileManager.default.temporaryDirectory
            .appendingPathComponent("vitmerge-bench-torch-\(getpid()).json").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [
            python, script, "--models", row.name, "--batches", String(row.batch),
            "--threads", options.threads.map(String.init).joined(separator: ","),
            "--peers", options.torchPeers.map(\.rawValue).joined(separator: ","),
            "--min-seconds", String(options.minSeconds), "--clock", "cpu", "--out", out,
        ]
        print("  PyTorch peers of \(row.name), batch \(row.batch): \(python) \(script)")
        fflush(nil)  // our lines before the script's
        let start = DispatchTime.now().uptimeNanoseconds
        do { try p.run() } catch {
            print("  note: cannot run \(python) \(script) (\(error)); PyTorch peers skipped")
            return
        }
        p.waitUntilExit()
        guard p.terminationStatus == 0, let figures = readTorch(out) else {
            print("  note: \(script) failed (exit \(p.terminationStatus)); PyTorch peers of \(row.name) skipped")
            return
        }
        torchResults += figures
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        print(String(format: "  PyTorch peers: %d figures in %.0f s", figures.count, seconds))
    }

    /// Reads `--compare FILE`, scripts/bench_torch.py's JSON, or exits with a message.
    func loadTorch(_ path: String) {
        guard let figures = readTorch(path) else {
            FileHandle.standardError.write(
                "vitmerge-bench: cannot read \(path) (expected scripts/bench_torch.py output)\n".data(using: .utf8)!)
            exit(1)
        }
        torchResults += figures
        let peers = figures.map(\.peer).uniqued().joined(separator: ", ")
        print("  peer: PyTorch \(figures.first?.version ?? "?") (\(peers)) from \(path) (\(figures.count) figures)")
        if figures.contains(where: { $0.clock != "cpu" }) {
            print("  note: \(path) was timed on the wall clock, ours on CPU time (the same on an idle machine)")
        }
    }

    /// Parses scripts/bench_torch.py's JSON: {"torch": version, "batch"?, "clock"?, "results": [{"name",
    /// "threads", "value", "peer"?, "batch"?, "compile_seconds"?}], "failures"?: [{"name",
    /// "threads", "peer", "batch", "error"}]}, a missing peer read as eager and a missing batch
    /// as the file's (else 32), a missing clock as wall. Prints each failure; nil if the file is not such JSON.
    func readTorch(_ path: String) -> [TorchFigure]? {
        guard let data = FileManager.default.contents(atPath: path),
            let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let rs = obj["results"] as? [[String: Any]]
        else { return nil }
        let version = (obj["torch"] as? String ?? "?").split(separator: "+").first.map(String.init) ?? "?"
        let fileBatch = obj["batch"] as? Int ?? 32, clock = obj["clock"] as? String ?? "wall"
        for f in obj["failures"] as? [[String: Any]] ?? [] {
            let v = { (key: String) in f[key].map { "\($0)" } ?? "?" }
            print(
                "  note: torch \(v("peer")) failed on \(v("name")), batch \(v("batch")), \(v("threads")) thread(s): "
                    + v("error"))
        }
        return rs.compactMap { r in
            guard let n = r["name"] as? String, let t = r["threads"] as? Int, let v = r["value"] as? Double else {
                return nil
            }
            return TorchFigure(
                name: n, threads: t, batch: r["batch"] as? Int ?? fileBatch, peer: r["peer"] as? String ?? "eager",
                value: v, version: version, compileSeconds: r["compile_seconds"] as? Double, clock: clock)
        }
    }
}
