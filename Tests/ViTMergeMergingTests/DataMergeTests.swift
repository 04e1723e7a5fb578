import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel
import ViTMergeTraining

@testable import ViTMergeMerging

/// Breadcrumbs and EMR on hand-computed cases; Fisher, RegMean, RegMean++ and AdaMerging against
/// independent computations on the tiny fixture model.
final class DataMergeTests: XCTestCase {
    func testBreadcrumbsKeepsTheBandBelowTheOutliers() {
        // n = 10: outliers 0.1 masks the largest, density 0.3 keeps ranks 1…3 (-9, 8, -7).
        let t: [Float] = [10, -9, 8, -7, 6, 5, 4, 3, 2, 1]
        XCTAssertEqual(Merges.breadcrumbs([t], density: 0.3, outliers: 0.1), [0, -9, 8, -7, 0, 0, 0, 0, 0, 0])
        // Two tasks: masked per task, then summed. u's band is [1, 3): 2 and both 1s (equal to the threshold).
        let u: [Float] = [1, 1, -3, 0, 0, 0, 0, 0, 0, 2]
        XCTAssertEqual(Merges.breadcrumbs([t, u], density: 0.2, outliers: 0.1), [1, -8, 8, 0, 0, 0, 0, 0, 0, 2])
        // outliers 0, density 1: the plain sum.
        XCTAssertEqual(Merges.breadcrumbs([t, u], density: 1, outliers: 0), zip(t, u).map(+))
    }

    func testBreadcrumbsMasksEachTensorSeparately() throws {
        let pre = MergeFixture.pretrained()
        let tau = EncoderVector(table: pre.table)
        var rng = RNG(seed: 9)
        for r in tau.arena.layout.regions {
            for i in 0..<r.shape.count { tau.base[r.offset + i] = Float(rng.normal()) }
        }
        let out = Merges.breadcrumbs([tau], density: 0.5, outliers: 0.1)
        for r in tau.arena.layout.regions {
            let region = Array(UnsafeBufferPointer(start: tau.base + r.offset, count: r.shape.count))
            let expected = Merges.breadcrumbs([region], density: 0.5, outliers: 0.1)
            XCTAssertEqual(
                Array(UnsafeBufferPointer(start: out.base + r.offset, count: r.shape.count)), expected, r.name)
        }
    }

    func testEMRElectsMasksAndRescales() throws {
        let pre = MergeFixture.pretrained()
        let n = pre.table.encoderEnd
        var a = [Float](repeating: 0, count: n), b = a
        (a[0], a[1], a[2]) = (1, -2, 3)
        (b[0], b[1], b[2]) = (2, 1, -1)
        let e = Merges.emr([EncoderVector(a, table: pre.table), EncoderVector(b, table: pre.table)])
        // Σ = (3, −1, 2): signs +, −, +; τ_uni = (2, −2, 3).
        XCTAssertEqual(Array(e.unified.prefix(3)), [2, -2, 3])
        XCTAssertEqual(Array(e.masks[0].prefix(3)), [1, 1, 1])
        XCTAssertEqual(Array(e.masks[1].prefix(3)), [1, 0, 0])
        XCTAssertEqual(e.scales[0], 6.0 / 7.0, accuracy: 1e-6)
        XCTAssertEqual(e.scales[1], 2, accuracy: 1e-6)
        XCTAssertEqual(Array(e.direction(task: 1).prefix(4)), [4, 0, 0, 0])
        XCTAssertTrue(e.unified.dropFirst(3).allSatisfy { $0 == 0 })

        let dir = try temporaryDirectory()
        let path = dir.appendingPathComponent("emr.safetensors").path
        try e.save(to: path, tasks: ["a", "b"], table: pre.table)
        let f = try SafeTensorsFile.read(path: path)
        XCTAssertEqual(f.metadata["kind"], "emr")
        XCTAssertEqual(f.metadata["tasks"], "a,b")
        let masks = try f.bytes("masks")
        let bytes = (n + 7) / 8
        XCTAssertEqual(masks.count, 2 * bytes)
        XCTAssertEqual(masks[0] & 0b111, 0b111)
        XCTAssertEqual(masks[bytes] & 0b111, 0b001)
        XCTAssertEqual(try f.floats("scales"), e.scales)
    }

    func testEMRMergeEvaluatesEachTaskWithItsOwnModel() throws {
        let ev = try MergeFixture.evaluator(scaleB: 0.03)
        let r = ev.emrMerge()
        for i in ev.tasks.indices {
            let own = ev.normalized(encoder: ev.encoder([r.emr.direction(task: i)], [1]), tasks: [i], split: .test)
            XCTAssertEqual(r.testPerTask[i], own.mean)
            XCTAssertEqual(r.testPredictions[i], own.predictions[0])
        }
    }

    // MARK: RegMean

    /// The fixture's evaluator with `samples` training images per task.
    func evaluator(linearized: Bool = false, samples: Int = 12) throws -> MergeEvaluator {
        let ev = try MergeFixture.evaluator(scaleB: 0.05, linearized: linearized)
        var tasks = ev.tasks
        for i in tasks.indices { tasks[i].samples = MergeFixture.images(samples, seed: 40 + UInt64(i)) }
        return MergeEvaluator(pretrained: ev.pretrained, tasks: tasks, linearized: linearized)
    }

    /// Gram matrices (mean XᵀX over rows) of every Linear input of task `t`'s fine-tuned model, from a
    /// fresh model in Double: [site] → [in·in].
    func referenceGrams(_ ev: MergeEvaluator, task t: Int, prefix: [Float]? = nil) -> [[Double]] {
        let enc = (0..<ev.encoderCount).map { ev.pretrained.base[$0] + ev.tasks[t].tau.base[$0] }
        var e = enc
        if let prefix { for i in prefix.indices { e[i] = prefix[i] } }
        let p = MergeFixture.parameters(encoder: e, task: ev.tasks[t])
        let data = ev.tasks[t].samples!
        let m = ViT(parameters: p)
        let acts = m.makeActivations(capacity: data.count)
        var input = [Float](repeating: 0, count: data.count * data.imageSize)
        input.withUnsafeMutableBufferPointer { data.fill(0..<data.count, input: $0.baseAddress!, labels: nil) }
        m.forward(input: input, batch: data.count, acts: acts)
        let c = p.config
        var out: [[Double]] = []
        func gram(_ x: UnsafePointer<Float>, rows: Int, n: Int) {
            var g = [Double](repeating: 0, count: n * n)
            for r in 0..<rows {
                for i in 0..<n { for j in 0..<n { g[i * n + j] += Double(x[r * n + i]) * Double(x[r * n + j]) } }
            }
            out.append(g.map { $0 / Double(rows) })
        }
        gram(acts.patchesPointer, rows: data.count * c.numPatches, n: c.patchDim)
        for b in 0..<c.depth {
            let x = acts.linearInputs(block: b)
            gram(x.qkv, rows: data.count * c.tokens, n: c.embedDim)
            gram(x.proj, rows: data.count * c.tokens, n: c.embedDim)
            gram(x.fc1, rows: data.count * c.tokens, n: c.embedDim)
            gram(x.fc2, rows: data.count * c.tokens, n: c.hiddenDim)
        }
        return out
    }

    /// Solves a·x = b (a [n,n], b [n,r]) by Gaussian elimination with partial pivoting, in Double.
    func gaussSolve(_ a: [Double], _ b: [Double], n: Int, r: Int) -> [Double] {
        var a = a, b = b
        for col in 0..<n {
            let piv = (col..<n).max { abs(a[$0 * n + col]) < abs(a[$1 * n + col]) }!
            for j in 0..<n { a.swapAt(col * n + j, piv * n + j) }
            for j in 0..<r { b.swapAt(col * r + j, piv * r + j) }
            for row in (col + 1)..<n {
                let f = a[row * n + col] / a[col * n + col]
                for j in col..<n { a[row * n + j] -= f * a[col * n + j] }
                for j in 0..<r { b[row * r + j] -= f * b[col * r + j] }
            }
        }
        var x = [Double](repeating: 0, count: n * r)
        for row in stride(from: n - 1, through: 0, by: -1) {
            for j in 0..<r {
                var s = b[row * r + j]
                for k in (row + 1)..<n { s -= a[row * n + k] * x[k * r + j] }
                x[row * r + j] = s / a[row * n + row]
            }
        }
        return x
    }

    func testRegMeanMatchesADoubleReferenceSolve() throws {
        let ev = try evaluator()
        let alpha = 0.7
        let dir = try ev.regMeanDirection(alpha: alpha)
        let (sites, _) = ev.linearSites()
        let grams = ev.tasks.indices.map { referenceGrams(ev, task: $0) }
        for (si, s) in sites.enumerated() {
            let (n, m) = (s.inFeatures, s.outFeatures)
            var sum = [Double](repeating: 0, count: n * n), rhs = [Double](repeating: 0, count: n * m)
            for t in ev.tasks.indices {
                var g = grams[t][si]
                for i in 0..<n { for j in 0..<n where i != j { g[i * n + j] *= alpha } }
                for i in 0..<(n * n) { sum[i] += g[i] }
                let tau = ev.tasks[t].tau.base + s.offset
                for i in 0..<n {
                    for o in 0..<m { for k in 0..<n { rhs[i * m + o] += g[i * n + k] * Double(tau[o * n + k]) } }
                }
            }
            let x = gaussSolve(sum, rhs, n: n, r: m)
            var err = 0.0, norm = 0.0
            for o in 0..<m {
                for i in 0..<n {
                    err = max(err, abs(Double(dir.base[s.offset + o * n + i]) - x[i * m + o]))
                    norm = max(norm, abs(x[i * m + o]))
                }
            }
            XCTAssertLessThan(err, 1e-3 * max(norm, 1e-3), "site \(si) (\(m)×\(n)): max error \(err), max |x| \(norm)")
        }
        // Every other tensor is the mean τ.
        let mean = Merges.average(ev.tasks.map(\.tau))
        let weights = Set(sites.map(\.offset))
        for r in dir.arena.layout.regions where !weights.contains(r.offset) {
            for i in 0..<r.shape.count { XCTAssertEqual(dir.base[r.offset + i], mean.base[r.offset + i], r.name) }
        }
    }

    func testRegMeanOfOneTaskIsItsTaskVector() throws {
        let ev = try evaluator()
        let one = MergeEvaluator(pretrained: ev.pretrained, tasks: [ev.tasks[0]])
        for alpha in [0.5, 0.9] {
            let dir = try one.regMeanDirection(alpha: alpha)
            for i in 0..<dir.count { XCTAssertEqual(dir.base[i], ev.tasks[0].tau.base[i], accuracy: 2e-4) }
        }
    }

    func testRegMeanPlusPlusEqualsRegMeanWhenTheEmbeddingsAgree() throws {
        // τ = 0 before the first block: every task's block 0 sees the same inputs from the merged embedding as
        // from its own, so with one block RegMean++ is RegMean bit for bit.
        let ev = try evaluator()
        let first = ev.pretrained.table.blocks[0].norm1W
        var tasks = ev.tasks
        for i in tasks.indices {
            let v = tasks[i].tau.copy()
            v.base.update(repeating: 0, count: first)
            tasks[i].tau = v
        }
        let e2 = MergeEvaluator(pretrained: ev.pretrained, tasks: tasks)
        let a = try e2.regMeanDirection(alpha: 0.9), b = try e2.regMeanDirection(alpha: 0.9, plusPlus: true)
        for r in a.arena.layout.regions {
            let diff = (0..<r.shape.count).filter { a.base[r.offset + $0] != b.base[r.offset + $0] }
            XCTAssertTrue(diff.isEmpty, "\(r.name): \(diff.count) entries differ")
        }
        // With differing embeddings the block-0 inputs differ and so does the merge of block 0.
        let c = try ev.regMeanDirection(alpha: 0.9), d = try ev.regMeanDirection(alpha: 0.9, plusPlus: true)
        XCTAssertEqual(MergeFixture.bits(c.prefix(first)), MergeFixture.bits(d.prefix(first)))
        XCTAssertNotEqual(MergeFixture.bits(c), MergeFixture.bits(d))
    }

    func testRegMeanPlusPlusUsesTheMergedPrefixForEachBlock() throws {
        // The Gram of block 0's fc1 input under RegMean++ is that of task t's model with the merged
        // embedding in front: check the solve against that reference.
        let ev = try evaluator()
        let alpha = 0.9
        let dir = try ev.regMeanDirection(alpha: alpha, plusPlus: true)
        let first = ev.pretrained.table.blocks[0].norm1W
        let prefix = (0..<first).map { ev.pretrained.base[$0] + dir.base[$0] }
        let (sites, _) = ev.linearSites()
        let si = sites.firstIndex { $0.block == 0 && $0.layer == 2 }!, s = sites[si]
        let (n, m) = (s.inFeatures, s.outFeatures)
        var sum = [Double](repeating: 0, count: n * n), rhs = [Double](repeating: 0, count: n * m)
        for t in ev.tasks.indices {
            var g = referenceGrams(ev, task: t, prefix: prefix)[si]
            for i in 0..<n { for j in 0..<n where i != j { g[i * n + j] *= alpha } }
            for i in 0..<(n * n) { sum[i] += g[i] }
            let tau = ev.tasks[t].tau.base + s.offset
            for i in 0..<n {
                for o in 0..<m { for k in 0..<n { rhs[i * m + o] += g[i * n + k] * Double(tau[o * n + k]) } }
            }
        }
        let x = gaussSolve(sum, rhs, n: n, r: m)
        for o in 0..<m {
            for i in 0..<n { XCTAssertEqual(Double(dir.base[s.offset + o * n + i]), x[i * m + o], accuracy: 1e-4) }
        }
    }

    func testRegMeanRefusesLinearizedVectorsAndMissingSamples() throws {
        XCTAssertThrowsError(try evaluator(linearized: true).regMeanDirection(alpha: 0.9))
        XCTAssertThrowsError(try MergeFixture.evaluator(scaleB: 0.05).regMeanDirection(alpha: 0.9))
        XCTAssertThrowsError(try MergeFixture.evaluator(scaleB: 0.05).fisherDirection())
    }

    // MARK: Fisher

    func testFisherMatchesPerImageGradientsOfAFreshModel() throws {
        let ev = try evaluator()
        for t in ev.tasks.indices {
            let f = try ev.fisher(task: t, seed: 5)
            // Reference: a fresh model of the fine-tuned parameters, one backward per image, the same labels.
            let enc = (0..<ev.encoderCount).map { ev.pretrained.base[$0] + ev.tasks[t].tau.base[$0] }
            let p = MergeFixture.parameters(encoder: enc, task: ev.tasks[t])
            let m = ViT(parameters: p), data = ev.tasks[t].samples!
            let acts = m.makeActivations(capacity: 1), g = m.makeGradients()
            var rng = RNG(seed: 5 &+ UInt64(t), stream: 0xF15E)
            var ref = [Double](repeating: 0, count: ev.encoderCount)
            var input = [Float](repeating: 0, count: data.imageSize)
            for j in 0..<data.count {
                input.withUnsafeMutableBufferPointer { data.fill(j..<(j + 1), input: $0.baseAddress!, labels: nil) }
                m.forward(input: input, batch: 1, acts: acts)
                var label = Int32(sampleCategorical(acts.output, count: p.config.numClasses, rng: &rng))
                _ = m.crossEntropy(labels: &label, batch: 1, acts: acts)
                g.zero()
                m.backward(input: input, batch: 1, acts: acts, grads: g, options: BackwardOptions(head: false))
                for i in 0..<ev.encoderCount { ref[i] += Double(g.base[i]) * Double(g.base[i]) }
            }
            for i in 0..<ev.encoderCount {
                let r = ref[i] / Double(data.count)
                XCTAssertEqual(Double(f.base[i]), r, accuracy: 1e-5 * max(r, 1e-3))
            }
        }
    }

    func testFisherDirectionIsTheWeightedMean() throws {
        let ev = try evaluator()
        let dir = try ev.fisherDirection(seed: 3)
        let fs = try ev.tasks.indices.map { try ev.fisher(task: $0, seed: 3) }
        let norms = fs.map { f in f.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
        for i in 0..<dir.count {
            var num = 0.0, den = 0.0
            for t in ev.tasks.indices {
                let w = Double(fs[t].base[i]) / norms[t] + 1e-6
                num += w * Double(ev.tasks[t].tau.base[i])
                den += w
            }
            XCTAssertEqual(Double(dir.base[i]), num / den, accuracy: 1e-5 * max(abs(num / den), 1e-2))
        }
        // Identical tasks merge to their common τ.
        let same = MergeEvaluator(pretrained: ev.pretrained, tasks: [ev.tasks[0], ev.tasks[0]])
        let d2 = try same.fisherDirection()
        for i in 0..<d2.count { XCTAssertEqual(d2.base[i], ev.tasks[0].tau.base[i], accuracy: 1e-6) }
    }

    // MARK: AdaMerging

    func testEntropyGradientMatchesFiniteDifferences() {
        let z: [Float] = [0.3, -1.2, 2.0, 0.1, 0.5, 0.5]
        var g = [Float](repeating: 0, count: 6)
        let h0 = entropy(logits: z, rows: 2, classes: 3, gradient: &g)
        var scratch = [Float](repeating: 0, count: 6)
        for j in 0..<6 {
            var zp = z, zm = z
            zp[j] += 1e-3; zm[j] -= 1e-3
            let fd =
                (entropy(logits: zp, rows: 2, classes: 3, gradient: &scratch)
                    - entropy(logits: zm, rows: 2, classes: 3, gradient: &scratch)) / 2e-3
            XCTAssertEqual(Double(g[j]), fd, accuracy: 1e-3)
        }
        XCTAssertGreaterThan(h0, 0)
    }

    func checkAdaMergingGradient(layerWise: Bool, linearized: Bool) throws {
        let ev = try evaluator(linearized: linearized)
        let groups = ev.adaMergingGroups(layerWise: layerWise).names.count
        var rng = RNG(seed: 11)
        let c = ev.tasks.map { _ in (0..<groups).map { _ in 0.2 + 0.6 * rng.uniformDouble() } }
        let batches = ev.tasks.map { t in (0..<10).map { $0 * 3 % t.test.count } }
        let (_, grad) = ev.adaMergingObjective(c, layerWise: layerWise, batches: batches)
        let h = 1e-2
        // Check a spread of groups (all of them task-wise).
        let checked = layerWise ? Array(stride(from: 0, to: groups, by: max(1, groups / 6))) : [0]
        for t in ev.tasks.indices {
            for g in checked {
                var cp = c, cm = c
                cp[t][g] += h; cm[t][g] -= h
                let lp = ev.adaMergingObjective(cp, layerWise: layerWise, batches: batches, gradient: false).loss
                let lm = ev.adaMergingObjective(cm, layerWise: layerWise, batches: batches, gradient: false).loss
                let fd = (lp - lm) / (2 * h)
                XCTAssertEqual(
                    grad[t][g], fd, accuracy: 2e-2 * max(abs(fd), 1e-2),
                    "task \(t) group \(g) (layer-wise \(layerWise), linearized \(linearized))")
            }
        }
    }

    func testAdaMergingCoefficientGradientMatchesFiniteDifferences() throws {
        try checkAdaMergingGradient(layerWise: false, linearized: false)
        try checkAdaMergingGradient(layerWise: true, linearized: false)
        try checkAdaMergingGradient(layerWise: false, linearized: true)
    }

    func testAdaMergingIsSeededAndLowersTheEntropy() throws {
        let ev = try evaluator()
        var o = AdaMergingOptions()
        o.steps = 30
        o.batch = 40
        o.learningRate = 0.05
        let a = ev.adaMerging(o), b = ev.adaMerging(o)
        XCTAssertEqual(a.coefficients, b.coefficients)
        XCTAssertEqual(MergeFixture.bits(a.direction), MergeFixture.bits(b.direction))
        XCTAssertTrue(a.coefficients.joined().allSatisfy { $0 >= 0 && $0 <= 1 })
        // Full test sets as the batch (drawn with replacement): the loss at the end is below the start.
        let full = ev.tasks.map { Array(0..<$0.test.count) }
        let start = ev.adaMergingObjective(
            ev.tasks.map { _ in [0.3] }, layerWise: false, batches: full, gradient: false
        ).loss
        let end = ev.adaMergingObjective(a.coefficients, layerWise: false, batches: full, gradient: false).loss
        XCTAssertLessThan(end, start)
        // The direction is Σ c_t τ_t. The zero base is held for the whole call: a temporary's pointer dangles.
        let zero = EncoderVector(table: ev.pretrained.table)
        let ref = withExtendedLifetime(zero) {
            MergeFixture.referenceMerge(
                zero.base, ev.tasks.map(\.tau), a.coefficients.map { Float($0[0]) }, count: ev.encoderCount)
        }
        XCTAssertEqual(MergeFixture.bits(a.direction), MergeFixture.bits(ref))
    }

    func testDataMergesRunThroughTheSearch() throws {
        let ev = try evaluator()
        ev.adaMergingOptions.steps = 3
        for method in [MergeMethod.breadcrumbs, .fisher, .regMean, .regMeanPlusPlus, .adaMerging, .adaMergingLayer] {
            let r = try ev.merge(method, candidates: method.defaultCandidates)
            XCTAssertEqual(r.method, method)
            if method.isFixedScale { XCTAssertEqual(r.lambda, 1) }
            XCTAssertEqual(r.testPerTask.count, 2)
            XCTAssertTrue(r.test.isFinite)
        }
        XCTAssertThrowsError(try ev.merge(.emr))
    }

    func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("datamerge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d
    }
}
