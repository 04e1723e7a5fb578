import ViTMergeCore
import ViTMergeKernels
import ViTMergeModel

extension Bench {
    /// The bias gradient taken while the weight gradient packs dy against the separate column-sum
    /// pass, interleaved in the same run: at a ViT-Ti layer shape (batch 32) and per training step.
    /// (Bias + GELU and bias + residual fused into the forward GEMMs' write-back were measured here
    /// too and lost, 0.85–0.96× and 0.96–1.07×: GELU is compute-bound, so fusing saves only one
    /// read of the pre-activation; they were taken out.)
    func fusionSuite() {
        let (rows, d, f) = (32 * 197, 192, 768)
        let x = randomBuffer(rows * f, seed: 21), w = randomBuffer(f * d, seed: 22, -0.1, 0.1)
        let residual = randomBuffer(rows * d, seed: 24)
        let dw = Tensor(zeros: [f * d]), db = Tensor(zeros: [f])
        let layers: [(String, [Int], () -> Void)] = [
            (
                "vit-ti fc1 dW + db (TN)", [f, d, rows],
                {
                    Linear.backward(
                        dinp: nil, dweight: dw.pointer, dbias: db.pointer, dout: x.pointer, inp: residual.pointer,
                        weight: w.pointer, rows: rows, inFeatures: d, outFeatures: f)
                }
            )
        ]
        for th in options.threads {
            ThreadPool.shared.threads = th
            for (name, shape, body) in layers {
                let flops = 2.0 * Double(shape[0]) * Double(shape[1]) * Double(shape[2])
                let (fused, separate) = bestTimesInterleaved(
                    {
                        Linear.fused = true; body()
                    },
                    {
                        Linear.fused = false; body()
                    })
                record(
                    "fusion", name, shape, threads: th, value: flops / fused * 1e-9, unit: "GFLOP/s",
                    peer: ("separate kernels", flops / separate * 1e-9))
            }
            for (name, config) in profileConfigs {
                let batch = 32
                let images = randomImages(config, count: batch)
                let model = ViT(config: config, seed: 1)
                let trainer = benchTrainer(model, images, .full)
                let (step, stepSeparate) = bestTimesInterleaved(
                    {
                        Linear.fused = true; _ = trainer.step()
                    },
                    {
                        Linear.fused = false; _ = trainer.step()
                    })
                record(
                    "fusion", "\(name) train step", [batch], threads: th, value: Double(batch) / step, unit: "img/s",
                    peer: ("separate kernels", Double(batch) / stepSeparate))
            }
        }
        Linear.fused = true
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }
}
