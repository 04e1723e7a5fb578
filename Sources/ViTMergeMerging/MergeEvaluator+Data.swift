import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
import ViTMergeTraining

/// Merges that use data: Fisher merging and RegMean (RegMean++) from each task's `samples` (training
/// images), AdaMerging from unlabeled test images. Each returns a direction τ_m like the data-free
/// merges (the model is θ_pre + λ·τ_m; these are weighted averages or learned combinations, so λ = 1
/// unless one is given). With a linearized evaluator, Fisher and AdaMerging differentiate the
/// linearized model (its gradient is J(θ_pre)ᵀ·∂loss/∂output, the backward at θ_pre); RegMean needs
/// the inputs of linear layers, which a linearized model does not have, and refuses.
extension MergeEvaluator {
    /// The gradient arena (the parameters' layout) of the model for task `index`'s class count.
    func gradients(task index: Int) -> Arena {
        let k = tasks[index].classes
        if let g = gradientArenas[k] { return g }
        // (`model(classes:)`, not `load`: the model's arena may hold the encoder being differentiated.)
        let g = Arena(layout: model(classes: k).model.table.layout)
        gradientArenas[k] = g
        return g
    }

    /// The model for task `index` at θ_pre + τ_index (its fine-tuned encoder; linearized: θ_pre with τ as
    /// the tangent), with its head.
    func loadFinetuned(task index: Int) -> Loaded {
        load(encoder: encoder([tasks[index].tau], [1]), task: index)
    }

    func samples(task index: Int) throws -> LabeledImages {
        guard let s = tasks[index].samples, s.count > 0 else {
            throw MergeError.incompatible(
                "task '\(tasks[index].name)' has no training samples for a merge that uses data: give "
                    + "--samples N (N ≥ 1)")
        }
        return s
    }

    // MARK: Fisher merging

    /// The diagonal Fisher of task `index`'s fine-tuned model over the encoder, on its samples:
    /// F = (1/N) Σ_x (∂ log p(y|x)/∂θ)², with y drawn from the model's own p(·|x) (seed `seed &+ index`,
    /// stream 0xF15E; one label per image, so E_y of the estimate is the true Fisher), one backward per image.
    public func fisher(task index: Int, seed: UInt64) throws -> EncoderVector {
        let data = try samples(task: index)
        let l = loadFinetuned(task: index)
        let g = gradients(task: index)
        let acts = l.evaluator.acts, k = tasks[index].classes, n = encoderCount
        let f = EncoderVector(table: pretrained.table)
        var rng = RNG(seed: seed &+ UInt64(index), stream: 0xF15E)
        let label = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        defer { label.deallocate() }
        for j in 0..<data.count {
            let tangent = l.tangent.map { UnsafePointer($0.base) }
            l.evaluator.forEachBatch(data, range: j..<(j + 1), tangent: tangent, forBackward: true) { _, _, _ in
                label.pointee = Int32(sampleCategorical(acts.output, count: k, rng: &rng))
                _ = l.model.crossEntropy(labels: label, batch: 1, acts: acts)
                g.zero()
                l.model.backward(
                    input: l.evaluator.input, batch: 1, acts: acts, grads: g,
                    options: BackwardOptions(head: false, encoder: true))
                let gp = g.base, fp = f.base
                for i in 0..<n { fp[i] = fp[i].addingProduct(gp[i], gp[i]) }
            }
        }
        Elementwise.scale(f.base, alpha: 1 / Float(data.count), count: n, pool: pool)
        return f
    }

    /// Fisher merging (Matena & Raffel 2022): per entry Σ_t F̂_t τ_t / Σ_t F̂_t, with each task's Fisher
    /// normalized by its L2 norm over the encoder plus `minimalWeight` (MergeLM's and FusionBench's
    /// defaults: normalized, 1e-6), so entries no task's Fisher sees get the mean τ. Streams: holds the
    /// numerator, the denominator and one Fisher.
    public func fisherDirection(seed: UInt64 = 0, minimalWeight: Float = 1e-6) throws -> EncoderVector {
        let num = EncoderVector(table: pretrained.table), den = EncoderVector(table: pretrained.table)
        let n = encoderCount
        for (i, t) in tasks.enumerated() {
            let f = try fisher(task: i, seed: seed)
            let norm = Float(GradientNorm.l2(f.base, count: n, pool: pool))
            let s: Float = norm > 0 ? 1 / norm : 0
            let fp = f.base, tp = t.tau.base, np = num.base, dp = den.base
            for j in 0..<n {
                let w = fp[j] * s + minimalWeight
                np[j] = np[j].addingProduct(w, tp[j])
                dp[j] += w
            }
        }
        for j in 0..<n { num.base[j] /= den.base[j] }
        return num
    }

    // MARK: RegMean

    /// A Linear layer of the encoder as RegMean sees it: its weight [out, in] at `offset` in the
    /// parameters, and where its input Gram [in, in] lives in a Gram arena.
    struct LinearSite {
        let offset, outFeatures, inFeatures, gram: Int
        /// nil: the patch embedding (its input is the im2col patches); else the block and which of its
        /// four Linear layers (0 qkv, 1 proj, 2 fc1, 3 fc2).
        let block: Int?, layer: Int
    }

    /// The encoder's Linear layers (patch embedding, then per block qkv, proj, fc1, fc2) and the size
    /// of a Gram arena holding their input Gram matrices.
    func linearSites() -> (sites: [LinearSite], gramCount: Int) {
        let c = pretrained.config, tab = pretrained.table
        let (d, f) = (c.embedDim, c.hiddenDim)
        var sites: [LinearSite] = [], g = 0
        func add(_ offset: Int, _ out: Int, _ inp: Int, _ block: Int?, _ layer: Int) {
            sites.append(
                LinearSite(offset: offset, outFeatures: out, inFeatures: inp, gram: g, block: block, layer: layer))
            g += inp * inp
        }
        add(tab.patchW, d, c.patchDim, nil, 0)
        for (b, o) in tab.blocks.enumerated() {
            add(o.qkvW, 3 * d, d, b, 0)
            add(o.projW, d, d, b, 1)
            add(o.fc1W, f, d, b, 2)
            add(o.fc2W, d, f, b, 3)
        }
        return (sites, g)
    }

    /// Accumulates into `grams` the mean over rows (images × tokens) of XᵀX for each site's input X, from
    /// forwards of `data` through the model `l` as loaded.
    func accumulateGrams(_ l: Loaded, data: LabeledImages, sites: [LinearSite], into grams: UnsafeMutablePointer<Float>)
    {
        let c = pretrained.config, acts = l.evaluator.acts
        let rowsPerImage = (patch: c.numPatches, block: c.tokens)
        l.evaluator.forEachBatch(data, range: 0..<data.count, throughHead: false) { _, b, _ in
            for s in sites {
                let x: UnsafeMutablePointer<Float>, rows: Int
                if let blk = s.block {
                    let inputs = acts.linearInputs(block: blk)
                    x = [inputs.qkv, inputs.proj, inputs.fc1, inputs.fc2][s.layer]
                    rows = b * rowsPerImage.block
                } else {
                    x = acts.patchesPointer
                    rows = b * rowsPerImage.patch
                }
                let total = data.count * (s.block == nil ? rowsPerImage.patch : rowsPerImage.block)
                sgemm(
                    transA: true, transB: false, m: s.inFeatures, n: s.inFeatures, k: rows, alpha: 1 / Float(total),
                    a: x, lda: s.inFeatures, b: x, ldb: s.inFeatures, beta: 1, c: grams + s.gram, ldc: s.inFeatures,
                    pool: pool)
            }
        }
    }

    /// RegMean (Jin et al. 2023): each Linear weight W (timm's [out, in]) becomes the solution of
    /// min Σ_t ‖X_t Wᵀ − X_t W_tᵀ‖², i.e. Wᵀ = (Σ_t G̃_t)⁻¹ Σ_t G̃_t W_tᵀ
    /// with G_t = X_tᵀX_t / rows,
    /// the inputs X_t of that layer on task t's samples, and G̃_t = α·G_t + (1 − α)·diag(G_t) (`alpha`, the
    /// paper's off-diagonal scaling). In task-vector form the direction is (Σ G̃_t)⁻¹ Σ G̃_t τ_tᵀ (θ_pre
    /// cancels); every other tensor is the mean τ, as in the reference code. The solve is Cholesky in Double with a
    /// ridge of 1e-6·mean(diag) (×10 until positive definite).
    ///
    /// `plusPlus` is RegMean++ (Nguyen et al. 2025): the inputs of block b's layers come from the merged
    /// model — the merged embeddings and blocks < b feed task t's own block b — so each block's merge sees
    /// the merge before it (one pass per block instead of one per task).
    public func regMeanDirection(alpha: Double, plusPlus: Bool = false) throws -> EncoderVector {
        guard !linearized else {
            throw MergeError.incompatible(
                "RegMean needs the inputs of linear layers, which a linearized model does not have; "
                    + "use it on task vectors from (non-linearized) fine-tuning")
        }
        precondition(alpha >= 0 && alpha <= 1, "regMean: alpha in [0, 1]")
        let data = try tasks.indices.map { try samples(task: $0) }
        let (sites, gramCount) = linearSites()
        let dir = Merges.average(tasks.map(\.tau), pool: pool)
        let depth = pretrained.config.depth
        // Stages: all sites at once (RegMean), or the patch embedding then each block (RegMean++).
        let stages: [[LinearSite]] =
            plusPlus
            ? [sites.filter { $0.block == nil }] + (0..<depth).map { b in sites.filter { $0.block == b } }
            : [sites]
        let gramSum = UnsafeMutablePointer<Float>.allocate(capacity: gramCount)
        let gramTask = UnsafeMutablePointer<Float>.allocate(capacity: gramCount)
        defer { gramSum.deallocate(); gramTask.deallocate() }
        for stage in stages {
            // The stage's own tensors start here: its block's first tensor (norm1), or the patch embedding.
            let first = stage[0].block.map { pretrained.table.blocks[$0].norm1W } ?? stage[0].offset
            var rhs = stage.map { [Float](repeating: 0, count: $0.inFeatures * $0.outFeatures) }
            for s in stage { (gramSum + s.gram).update(repeating: 0, count: s.inFeatures * s.inFeatures) }
            for i in tasks.indices {
                let l = loadFinetuned(task: i)
                if plusPlus {
                    // The merged model before this stage: θ_pre + dir over [0, first).
                    withExtendedLifetime(dir) {
                        Elementwise.linearCombination(
                            out: l.model.parameters.base, base: pretrained.base, xs: [UnsafePointer(dir.base)],
                            coefficients: [1], count: first, pool: pool)
                    }
                }
                for s in stage { (gramTask + s.gram).update(repeating: 0, count: s.inFeatures * s.inFeatures) }
                accumulateGrams(l, data: data[i], sites: stage, into: gramTask)
                for (j, s) in stage.enumerated() {
                    let n = s.inFeatures, g = gramTask + s.gram
                    for r in 0..<n { for c in 0..<n where r != c { g[r * n + c] *= Float(alpha) } }
                    Elementwise.add(out: gramSum + s.gram, a: gramSum + s.gram, b: g, count: n * n, pool: pool)
                    // rhs[in, out] += G̃_t · τ_tᵀ (τ_t is [out, in])
                    rhs[j].withUnsafeMutableBufferPointer {
                        sgemm(
                            transA: false, transB: true, m: n, n: s.outFeatures, k: n, a: g, lda: n,
                            b: tasks[i].tau.base + s.offset, ldb: n, beta: 1, c: $0.baseAddress!, ldc: s.outFeatures,
                            pool: pool)
                    }
                }
            }
            for (j, s) in stage.enumerated() {
                try solveRegMean(gram: gramSum + s.gram, rhs: rhs[j], site: s, into: dir.base + s.offset)
            }
        }
        return dir
    }

    // out[out, in] = ((gram + ridge·I)⁻¹ · rhs[in, out])ᵀ
    func solveRegMean(
        gram: UnsafePointer<Float>, rhs: [Float], site s: LinearSite, into out: UnsafeMutablePointer<Float>
    )
        throws
    {
        let n = s.inFeatures, m = s.outFeatures
        var diag = 0.0
        for i in 0..<n { diag += Double(gram[i * n + i]) }
        var ridge = Float(max(diag / Double(n), 1e-12) * 1e-6)
        var x = [Float](repeating: 0, count: n * m)
        for _ in 0..<12 {
            let ok = rhs.withUnsafeBufferPointer { b in
                x.withUnsafeMutableBufferPointer {
                    Cholesky.solveRidge(a: gram, n: n, ridge: ridge, b: b.baseAddress!, r: m, x: $0.baseAddress!)
                }
            }
            if ok {
                for o in 0..<m { for i in 0..<n { out[o * n + i] = x[i * m + o] } }
                return
            }
            ridge *= 10
        }
        throw MergeError.incompatible("RegMean: the Gram matrix of a \(m)×\(n) layer is not positive definite")
    }
}

/// A class drawn from softmax(logits[0..<count]) with one uniform draw (inverse CDF in Double).
func sampleCategorical(_ logits: UnsafePointer<Float>, count k: Int, rng: inout RNG) -> Int {
    var mx = -Float.infinity
    for j in 0..<k { mx = max(mx, logits[j]) }
    var total = 0.0
    for j in 0..<k { total += Foundation.exp(Double(logits[j] - mx)) }
    var u = rng.uniformDouble() * total
    for j in 0..<k {
        u -= Foundation.exp(Double(logits[j] - mx))
        if u < 0 { return j }
    }
    return k - 1
}
