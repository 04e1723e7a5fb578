import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeModel

/// Register tokens (timm `reg_tokens`) and pos_embed without prefix rows (`no_embed_class`): the
/// config, the parameter layout, and the model's gradients and JVP of cls_token, reg_token and
/// pos_embed against central finite differences of the loss and the logits.
final class PrefixTokenTests: XCTestCase {
    func testConfigJSONAndParameterLayout() throws {
        let c = ViTConfig(
            imageSize: 8, patchSize: 4, inChannels: 2, numClasses: 3, embedDim: 8, depth: 1, numHeads: 2,
            regTokens: 2, noEmbedClass: true)
        XCTAssertEqual([c.numPrefixTokens, c.tokens, c.posEmbedTokens], [3, 7, 4])
        XCTAssertTrue(c.json.contains(#""reg_tokens":2"#) && c.json.contains(#""no_embed_class":true"#), c.json)
        XCTAssertEqual(try ViTConfig.parse(json: Data(c.json.utf8)), c)
        // At their defaults both keys are left out, so older readers see the same JSON as before.
        let plain = ViTConfig.mini28()
        XCTAssertFalse(plain.json.contains("reg_tokens") || plain.json.contains("no_embed_class"), plain.json)
        XCTAssertEqual(plain.posEmbedTokens, plain.tokens)
        let negative =
            #"{"img_size": 8, "patch_size": 4, "embed_dim": 8, "depth": 1, "num_heads": 2, "reg_tokens": -1}"#
        XCTAssertThrowsError(try ViTConfig.parse(json: Data(negative.utf8))) {
            XCTAssertTrue("\($0)".contains("reg_tokens"), "\($0)")
        }
        // timm's state-dict order: cls_token, reg_token, pos_embed, then the patch embedding.
        let table = ParameterTable(config: c)
        XCTAssertEqual(
            Array(table.names.prefix(4)), ["cls_token", "reg_token", "pos_embed", "patch_embed.proj.weight"])
        XCTAssertEqual(table.layout.regions[1].shape.dims, [1, 2, 8])
        XCTAssertEqual(table.layout.regions[2].shape.dims, [1, 4, 8])
        XCTAssertTrue(ParameterTable.isNoDecay("reg_token"))  // as timm's no_weight_decay()
        // reg_token is initialized as cls_token: normal(0, 1e-6), not zero.
        let p = ViTParameters(config: c)
        p.initialize(seed: 1)
        let reg = try XCTUnwrap(p["reg_token"])
        let values = (0..<reg.count).map { reg.pointer[$0] }
        XCTAssertTrue(values.allSatisfy { abs($0) < 1e-5 } && values.contains { $0 != 0 }, "\(values)")
    }

    /// dLoss/d(cls_token, reg_token, pos_embed) from `backward` and J·v of the logits from `jvp`
    /// along a tangent on those tensors, against central differences of the float model.
    func testPrefixTokenGradientsAndJVPMatchFiniteDifferences() throws {
        let configs = [
            ViTConfig(
                imageSize: 8, patchSize: 4, inChannels: 2, numClasses: 3, embedDim: 8, depth: 1, numHeads: 2,
                regTokens: 2, noEmbedClass: true),
            ViTConfig(
                imageSize: 8, patchSize: 4, inChannels: 2, numClasses: 3, embedDim: 8, depth: 1, numHeads: 2,
                classToken: false, globalPool: .avg, regTokens: 1, noEmbedClass: true),
            ViTConfig(
                imageSize: 8, patchSize: 4, inChannels: 2, numClasses: 3, embedDim: 8, depth: 1, numHeads: 2,
                globalPool: .avg, fcNorm: false, regTokens: 3),
        ]
        for c in configs { try check(c) }
    }

    func check(_ c: ViTConfig) throws {
        let pool = ThreadPool(threads: 1)
        let model = ViT(config: c, seed: 5, pool: pool)
        let p = model.parameters.base, tab = model.table
        // Tokens of O(0.5) and weights of O(1/√fan_in), so every token matters (the init gives
        // 1e-6 tokens and 0.02 weights, a nearly constant model).
        var rng = RNG(seed: 9)
        for r in tab.layout.regions {
            let dims = r.shape.dims
            let scale: Double? =
                ["cls_token", "reg_token", "pos_embed"].contains(r.name)
                ? 0.5 : (dims.count >= 2 ? 1 / Double(r.shape.count / dims[0]).squareRoot() : nil)
            guard let scale else { continue }
            for i in 0..<r.shape.count { p[r.offset + i] = Float(rng.normal() * scale) }
        }
        let batch = 2
        let input = (0..<(batch * c.inChannels * c.imageHeight * c.imageWidth)).map { _ in Float(rng.normal()) }
        let labels: [Int32] = [1, 2]
        let acts = model.makeActivations(capacity: batch)
        func loss() -> Float {
            input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: batch, acts: acts) }
            return labels.withUnsafeBufferPointer {
                model.crossEntropy(labels: $0.baseAddress!, batch: batch, acts: acts)
            }
        }
        func logits() -> [Float] {
            input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: batch, acts: acts) }
            return Array(UnsafeBufferPointer(start: acts.output, count: batch * c.numClasses))
        }
        _ = loss()
        let grads = model.makeGradients()
        input.withUnsafeBufferPointer { model.backward(input: $0.baseAddress!, batch: batch, acts: acts, grads: grads) }
        let regions = tab.layout.regions.filter { ["cls_token", "reg_token", "pos_embed"].contains($0.name) }
        XCTAssertEqual(regions.count, (c.classToken ? 1 : 0) + (c.regTokens > 0 ? 1 : 0) + 1)
        let h: Float = 1e-2
        for r in regions {
            var maxGrad: Float = 0
            for i in 0..<r.shape.count {
                let k = r.offset + i, saved = p[k]
                p[k] = saved + h
                let up = loss()
                p[k] = saved - h
                let down = loss()
                p[k] = saved
                let fd = (up - down) / (2 * h), g = grads.base[k]
                maxGrad = max(maxGrad, abs(g))
                XCTAssertEqual(g, fd, accuracy: 2e-4 + 2e-2 * abs(fd), "\(r.name)[\(i)] of \(c.json)")
            }
            XCTAssertGreaterThan(maxGrad, 1e-4, "\(r.name) gets no gradient in \(c.json)")
        }
        // JVP along a tangent on the prefix tokens and pos_embed only.
        var v = [Float](repeating: 0, count: tab.layout.count)
        for r in regions { for i in 0..<r.shape.count { v[r.offset + i] = Float(rng.normal()) } }
        _ = logits()
        let tangents = ViTTangents(config: c, capacity: batch)
        v.withUnsafeBufferPointer { model.jvp(tangent: $0.baseAddress!, batch: batch, acts: acts, tangents: tangents) }
        let jv = Array(UnsafeBufferPointer(start: tangents.output, count: batch * c.numClasses))
        let saved = Array(UnsafeBufferPointer(start: p, count: tab.layout.count))
        for k in 0..<saved.count { p[k] = saved[k] + h * v[k] }
        let up = logits()
        for k in 0..<saved.count { p[k] = saved[k] - h * v[k] }
        let down = logits()
        for k in 0..<saved.count { p[k] = saved[k] }
        for i in 0..<jv.count {
            let fd = (up[i] - down[i]) / (2 * h)
            XCTAssertEqual(jv[i], fd, accuracy: 1e-3 + 2e-2 * abs(fd), "jvp logits[\(i)] of \(c.json)")
        }
    }
}
