import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// Self-distillation with no labels (Caron et al. 2021, `TrainMode.dino`). The model is the
/// student (num_classes 0: its output is the pooled feature); the teacher is a second copy of the
/// encoder and of the projection head (`DINOHead`), started equal to the student's and never
/// trained by AdamW: after every update (`didUpdate`) θt ← m·θt + (1 − m)·θs, with m on DINO's
/// cosine schedule from `teacherMomentum` to 1 (`DINOSettings.teacherMomentum(step:of:)`).
///
/// Per image, `MultiCrop` draws 2 global views and `localCrops` local ones (all at the model's
/// input size, see there). The teacher sees the 2 global views, the student all V of them. With
/// teacher logits t, student logits s, centre c and temperatures τt, τs:
///   p_i = softmax((t_i − c)/τt) (centred and sharpened), log q_v = log_softmax(s_v/τs),
///   loss = mean over the global batch of (1/P) Σ_{i ∈ {0, 1}} Σ_{v ≠ i} −⟨p_i, log q_v⟩, P = 2(V − 1),
/// with no gradient through the teacher. The centre c ← m_c·c + (1 − m_c)·(mean of the teacher's
/// logits over both global views of the whole global batch) after the step: every rank's rows go
/// into a zero-filled [2·globalBatch, K] buffer summed across ranks (adding zeros is exact) and are
/// summed in one fixed order, so the centre is the same bits on every rank and in one process.
///
/// `metrics`: the teacher's entropy (mean over images and global views of H(p_i), in nats; it
/// falls to 0 when the teacher collapses to one prototype and stays at ln K when it collapses to
/// the uniform distribution) and KL(teacher ‖ student) averaged over the same pairs as the loss
/// (= loss − entropy).
///
/// `state` holds the teacher's encoder ("teacher." + timm names), its head ("teacher.dino_head.…")
/// and "dino.center" [1, K]; the student's head is `auxiliary` ("dino_head.…"). Simplifications
/// against the reference: no freezing of the last layer in the first epoch, no gradient clipping
/// per layer (the run's global clip applies), a constant weight decay, τt warm-up over steps.
public final class DINOObjective: TrainingObjective {
    public var trainsHead: Bool { false }
    public let settings: DINOSettings
    public let head: DINOHead
    /// The student's head: parameters, gradients and AdamW state.
    public let headParameters: AuxiliaryParameters
    public var auxiliary: AuxiliaryParameters? { headParameters }
    /// Teacher encoder, teacher head, centre (see the type's comment).
    public let teacherState: Arena
    public var state: Arena? { teacherState }
    public private(set) var metrics: [(name: String, value: Double)] = [("entropy", 0), ("kl", 0)]
    /// Where the teacher's head and the centre start in `teacherState`; the encoder is [0, headOffset).
    public let headOffset: Int, centerOffset: Int
    let student: ViT
    /// Runs the teacher's encoder: its parameters are copied from `teacherState` before each use.
    let teacher: ViT
    let crops: MultiCrop
    let capacity: Int, maxGlobalBatch: Int
    let studentActs: ViTActivations, teacherActs: ViTActivations
    let studentHeadActs: DINOHeadActivations, teacherHeadActs: DINOHeadActivations
    /// Views [V·capacity, C, H, W]; teacher probabilities [2·capacity, K]; student log-probabilities
    /// and logit gradients [V·capacity, K]; gathered teacher logits [2·maxGlobalBatch, K]; next centre [K].
    let views: UnsafeMutablePointer<Float>, teacherProbs: UnsafeMutablePointer<Float>
    let studentLogProbs: UnsafeMutablePointer<Float>, dlogits: UnsafeMutablePointer<Float>
    let gathered: UnsafeMutablePointer<Float>, nextCenter: UnsafeMutablePointer<Float>
    /// Per image: its loss and its teacher entropy [capacity]; the global sums [2].
    let imageLoss: UnsafeMutablePointer<Double>, imageEntropy: UnsafeMutablePointer<Double>
    let sums: UnsafeMutablePointer<Double>

    /// For shares of up to `capacity` images of global batches of up to `settings.batchSize`; the
    /// head from `settings.dino` (or its defaults), initialized from `settings.seed`; teacher = student.
    public init(model: ViT, capacity b: Int, settings s: TrainSettings) {
        let c = model.config
        let dino = s.dino ?? DINOSettings()
        precondition(dino.problem == nil, "DINOObjective: \(dino.problem ?? "")")
        precondition(c.numClasses == 0, "DINO trains an encoder without a head (num_classes 0), not \(c.numClasses)")
        settings = dino
        student = model
        capacity = b
        maxGlobalBatch = max(s.batchSize, b)
        crops = MultiCrop(settings: dino)
        head = DINOHead(
            inFeatures: c.embedDim, hidden: dino.hidden, bottleneck: dino.bottleneck, prototypes: dino.prototypes)
        headParameters = AuxiliaryParameters(layout: head.layout, weightDecay: s.weightDecay)
        head.initialize(headParameters.parameters, seed: s.seed)
        var l = Arena.Layout()
        for r in model.table.layout.regions { l.add("teacher." + r.name, r.shape) }
        headOffset = l.count
        for r in head.layout.regions { l.add("teacher." + r.name, r.shape) }
        centerOffset = l.add("dino.center", [1, dino.prototypes])
        teacherState = Arena(layout: l)
        teacherState.base.update(from: model.parameters.base, count: model.table.layout.count)
        (teacherState.base + headOffset).update(from: headParameters.parameters.base, count: head.layout.count)
        teacher = ViT(parameters: model.parameters.copy(), pool: model.pool)
        let v = dino.views, k = dino.prototypes
        studentActs = model.makeActivations(capacity: v * b)
        teacherActs = model.makeActivations(capacity: 2 * b)
        studentHeadActs = head.makeActivations(capacity: v * b)
        teacherHeadActs = head.makeActivations(capacity: 2 * b)
        func buffer<T: Numeric>(_ n: Int) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            return p
        }
        views = buffer(v * b * c.inChannels * c.imageHeight * c.imageWidth)
        teacherProbs = buffer(2 * b * k)
        studentLogProbs = buffer(v * b * k)
        dlogits = buffer(v * b * k)
        gathered = buffer(2 * maxGlobalBatch * k)
        nextCenter = buffer(k)
        imageLoss = buffer(b)
        imageEntropy = buffer(b)
        sums = buffer(2)
    }

    deinit {
        for p in [views, teacherProbs, studentLogProbs, dlogits, gathered, nextCenter] { p.deallocate() }
        for p in [imageLoss, imageEntropy, sums] { p.deallocate() }
    }

    /// The centre [K] the next step's loss uses.
    public var center: UnsafeMutablePointer<Float> { teacherState.base + centerOffset }

    /// The teacher's encoder as parameters of its own (the checkpoint's encoder).
    public func teacherEncoder() -> ViTParameters {
        let p = ViTParameters(table: student.table)
        p.base.update(from: teacherState.base, count: student.table.layout.count)
        return p
    }

    /// The teacher's head under the student head's names (`dino_head.…`), for the checkpoint.
    public func teacherHead() -> Arena {
        let a = Arena(layout: head.layout)
        a.base.update(from: teacherState.base + headOffset, count: head.layout.count)
        return a
    }

    public func loss(_ batch: TrainingBatch) -> Float {
        let model = batch.model, b = batch.count, pool = model.pool
        precondition(b <= capacity, "DINOObjective: \(b) images exceed the capacity \(capacity)")
        precondition(batch.globalBatch <= maxGlobalBatch, "DINOObjective: global batch \(batch.globalBatch) too large")
        let v = settings.views
        let aux = headParameters
        crops.fill(
            batch.indices, data: batch.data, seed: batch.seed, step: batch.step, firstPosition: batch.share.lowerBound,
            into: views, pool: pool)
        // Teacher on the 2 global views [2b]: encoder, then its head → tlogits [2b, K].
        teacher.parameters.base.update(from: teacherState.base, count: student.table.layout.count)
        teacher.forward(input: views, batch: 2 * b, acts: teacherActs)
        let tlogits = head.forward(
            features: teacherActs.output, rows: 2 * b, params: teacherState.base + headOffset, acts: teacherHeadActs,
            pool: pool)
        // Student on every view [V·b] → slogits [V·b, K].
        model.forward(input: views, batch: v * b, acts: studentActs)
        let slogits = head.forward(
            features: studentActs.output, rows: v * b, params: aux.parameters.base, acts: studentHeadActs, pool: pool)
        let tauT = settings.teacherTemperature(step: batch.step)
        let scale = 1 / (Double(2 * (v - 1)) * Double(batch.globalBatch))
        selfDistillation(
            tlogits: tlogits, slogits: slogits, images: b, tauT: tauT, tauS: settings.studentTemperature, scale: scale,
            pool: pool)
        var lossSum = 0.0, entropySum = 0.0
        for i in 0..<b {
            lossSum += imageLoss[i]
            entropySum += imageEntropy[i]
        }
        updateCenter(tlogits: tlogits, batch: batch)
        sums[0] = lossSum
        sums[1] = entropySum
        if batch.group.size > 1 { batch.group.allreduceSum(sums, count: 2) }
        let g = Double(batch.globalBatch)
        metrics[0].value = sums[1] / g
        metrics[1].value = (sums[0] - sums[1]) / g
        // Head backward (into `auxiliary`), then the student's encoder from d(pooled features).
        head.backward(
            dlogits: dlogits, dfeatures: studentActs.outputGradient, features: studentActs.output, rows: v * b,
            params: aux.parameters.base, grads: aux.gradients.base, acts: studentHeadActs, pool: pool)
        batch.reducer?.begin()
        model.backward(
            input: views, batch: v * b, acts: studentActs, grads: batch.grads, gradientReady: batch.reducer?.hook)
        return shareOfMean(Float(lossSum / Double(b)), count: b, global: batch.globalBatch)
    }

    /// Per image i of the share: p = softmax((t − c)/τt) of its 2 global views (into
    /// `teacherProbs`), log q = log_softmax(s/τs) of its V views, its loss (1/P)·Σ pairs −⟨p, log q⟩
    /// and mean teacher entropy (into `imageLoss`, `imageEntropy`), and
    /// dlogits[v, i] = scale/τs · Σ_{i' ≠ v} (q_v − p_i') (overwritten). Images are split over the
    /// threads, each done by one, in Double.
    func selfDistillation(
        tlogits: UnsafePointer<Float>, slogits: UnsafePointer<Float>, images b: Int, tauT: Double, tauS: Double,
        scale: Double, pool: ThreadPool
    ) {
        let (v, k) = (settings.views, settings.prototypes)
        let c = UnsafePointer(center)
        let pairs = Double(2 * (v - 1))
        pool.run(threads: max(1, min(pool.threads, b))) { ith, nth in
            for i in ThreadPool.split(b, ith, nth) {
                var entropy = 0.0
                for iq in 0..<2 {
                    let t = tlogits + (iq * b + i) * k, p = teacherProbs + (iq * b + i) * k
                    var m = -Double.infinity
                    for j in 0..<k { m = max(m, (Double(t[j]) - Double(c[j])) / tauT) }
                    var sum = 0.0
                    for j in 0..<k { sum += Foundation.exp((Double(t[j]) - Double(c[j])) / tauT - m) }
                    let logSum = Foundation.log(sum)
                    for j in 0..<k {
                        let logp = (Double(t[j]) - Double(c[j])) / tauT - m - logSum
                        let pj = Foundation.exp(logp)
                        p[j] = Float(pj)
                        entropy -= pj * logp
                    }
                }
                imageEntropy[i] = entropy / 2
                var loss = 0.0
                for view in 0..<v {
                    let s = slogits + (view * b + i) * k, lq = studentLogProbs + (view * b + i) * k
                    let ds = dlogits + (view * b + i) * k
                    var m = -Double.infinity
                    for j in 0..<k { m = max(m, Double(s[j]) / tauS) }
                    var sum = 0.0
                    for j in 0..<k { sum += Foundation.exp(Double(s[j]) / tauS - m) }
                    let logSum = Foundation.log(sum)
                    let teachers = view < 2 ? 1.0 : 2.0  // the other global view, or both
                    for j in 0..<k {
                        let logq = Double(s[j]) / tauS - m - logSum
                        lq[j] = Float(logq)
                        var pSum = 0.0
                        for iq in 0..<2 where iq != view { pSum += Double(teacherProbs[(iq * b + i) * k + j]) }
                        loss -= pSum * logq
                        ds[j] = Float(scale / tauS * (teachers * Foundation.exp(logq) - pSum))
                    }
                }
                imageLoss[i] = loss / pairs
            }
        }
    }

    /// The next centre into `nextCenter`: this rank's teacher logits at their global-batch rows of
    /// the zero-filled `gathered` [2·G, K] (view-major), summed across ranks, then over the rows in order.
    func updateCenter(tlogits: UnsafePointer<Float>, batch: TrainingBatch) {
        let (k, b, g) = (settings.prototypes, batch.count, batch.globalBatch)
        gathered.update(repeating: 0, count: 2 * g * k)
        for iq in 0..<2 {
            (gathered + (iq * g + batch.share.lowerBound) * k).update(from: tlogits + iq * b * k, count: b * k)
        }
        if batch.group.size > 1 { batch.group.allreduceSum(gathered, count: 2 * g * k) }
        let m = settings.centerMomentum, rows = Double(2 * g)
        for j in 0..<k {
            var sum = 0.0
            for r in 0..<(2 * g) { sum += Double(gathered[r * k + j]) }
            nextCenter[j] = Float(m * Double(center[j]) + (1 - m) * sum / rows)
        }
    }

    /// After update `step` of `steps`: the teacher's EMA (encoder and head) and the new centre.
    public func didUpdate(step: Int, of steps: Int) {
        let m = Float(settings.teacherMomentum(step: step, of: steps))
        let pool = student.pool
        func ema(_ t: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) {
            Elementwise.scale(t, alpha: m, count: n, pool: pool)
            Elementwise.axpy(y: t, x: s, alpha: 1 - m, count: n, pool: pool)
        }
        ema(teacherState.base, student.parameters.base, student.table.layout.count)
        ema(teacherState.base + headOffset, headParameters.parameters.base, head.layout.count)
        center.update(from: nextCenter, count: settings.prototypes)
    }
}
