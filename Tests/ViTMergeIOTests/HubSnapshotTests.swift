import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeIO
@testable import ViTMergeModel

/// timm hub snapshots: the committed ones timm's save_for_hf wrote (scripts/make_hub_fixture.py),
/// hand-written config.json files of real hub models, export and the refusals.
final class HubSnapshotTests: XCTestCase {
    static let hub = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/hub")
    func fixture(_ name: String) -> String { Self.hub.appendingPathComponent(name).path }
    func tmp(_ name: String) -> String { NSTemporaryDirectory() + "vitmerge-hub-\(getpid())-\(name)" }

    /// Max |ours − timm| of the logits for the fixture's check input.
    func maxLogitError(_ params: ViTParameters, snapshot: String) throws -> Float {
        let check = try SafeTensorsFile.read(path: snapshot + "/check.safetensors")
        let input = try check.floats("input"), expected = try check.floats("logits")
        let batch = check.info("input")!.shape[0]
        let model = ViT(parameters: params)
        let acts = model.makeActivations(capacity: batch)
        input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: batch, acts: acts) }
        let ours = Array(UnsafeBufferPointer(start: acts.output, count: expected.count))
        return zip(ours, expected).map { abs($0 - $1) }.max()!
    }

    func testSaveForHFSnapshotLoadsAndMatchesTimmLogits() throws {
        let dir = fixture("vit_tiny_e32_d2_32")
        let (params, meta) = try Checkpoint.load(path: dir)
        let c = params.config
        XCTAssertEqual(
            [c.imageHeight, c.imageWidth, c.patchSize, c.embedDim, c.depth, c.numHeads, c.numClasses, c.inChannels],
            [32, 32, 8, 32, 2, 2, 5, 3])
        XCTAssertEqual(c.normEps, 1e-6)
        XCTAssertEqual(meta["architecture"], "vit_tiny_patch16_224")
        let p = try XCTUnwrap(Checkpoint.preprocessing(meta))
        XCTAssertEqual(p.inputSize, [3, 32, 32])
        XCTAssertEqual(p.mean, [0.5, 0.5, 0.5])
        let err = try maxLogitError(params, snapshot: dir)
        print("max abs logit error vs timm: \(err)")
        XCTAssertLessThan(err, 1e-4, "max abs logit error vs timm \(err)")
        // The weights file alone finds its config.json beside it.
        let (same, _) = try Checkpoint.load(path: dir + "/model.safetensors")
        XCTAssertEqual(same.arena.buffer.map(\.bitPattern), params.arena.buffer.map(\.bitPattern))
    }

    func testClipQuickGELUTowerSnapshot() throws {
        let dir = fixture("vit_clip_quickgelu_e32_d2_32")
        let (params, _) = try Checkpoint.load(path: dir)
        let c = params.config
        XCTAssertTrue(c.preNorm)
        XCTAssertEqual(c.activation, .quickGELU)
        XCTAssertEqual(c.normEps, 1e-5)
        XCTAssertEqual(c.globalPool, .avg)
        XCTAssertTrue(c.fcNorm)
        let err = try maxLogitError(params, snapshot: dir)
        print("max abs logit error vs timm: \(err)")
        XCTAssertLessThan(err, 1e-4, "max abs logit error vs timm \(err)")
    }

    func testRealHubConfigsParse() throws {
        let augreg = try HubSnapshot.parseConfig(
            path: fixture("configs/vit_base_patch16_224.augreg2_in21k_ft_in1k.json"))
        XCTAssertEqual(augreg.architecture, "vit_base_patch16_224")
        XCTAssertEqual(augreg.config, .vitBase(numClasses: 1000))
        XCTAssertEqual(augreg.preprocessing, Preprocessing.inception)
        let clip = try HubSnapshot.parseConfig(path: fixture("configs/vit_base_patch16_clip_224.openai.json"))
        XCTAssertEqual(clip.config.numClasses, 512)
        XCTAssertTrue(clip.config.preNorm)
        XCTAssertEqual(clip.config.normEps, 1e-5)
        XCTAssertEqual(clip.config.activation, .gelu)
        XCTAssertEqual(clip.preprocessing, Preprocessing.clip)
        // DINOv2 uses LayerScale (init_values), which is implemented.
        let dino = try HubSnapshot.parseConfig(path: fixture("configs/vit_small_patch14_dinov2.lvd142m.json"))
        XCTAssertEqual(dino.config.initValues, 1e-5)
        XCTAssertEqual([dino.config.patchSize, dino.config.embedDim, dino.config.imageHeight], [14, 384, 518])
        // DINOv2 with registers and DeiT-III: register tokens and pos_embed without prefix rows.
        let reg = try HubSnapshot.parseConfig(path: fixture("configs/vit_small_patch14_reg4_dinov2.lvd142m.json"))
        XCTAssertEqual(reg.architecture, "vit_small_patch14_reg4_dinov2")
        XCTAssertEqual([reg.config.regTokens, reg.config.numClasses, reg.config.posEmbedTokens], [4, 0, 37 * 37])
        XCTAssertTrue(reg.config.noEmbedClass && reg.config.classToken)
        XCTAssertEqual(reg.config.initValues, 1e-5)
        let deit3 = try HubSnapshot.parseConfig(path: fixture("configs/deit3_small_patch16_224.fb_in1k.json"))
        XCTAssertEqual(deit3.architecture, "deit3_small_patch16_224")
        XCTAssertEqual([deit3.config.regTokens, deit3.config.numClasses, deit3.config.posEmbedTokens], [0, 1000, 196])
        XCTAssertTrue(deit3.config.noEmbedClass)
        XCTAssertEqual(deit3.config.initValues, 1e-6)
        let table = ParameterTable(config: deit3.config)
        XCTAssertNil(table.regToken)
        XCTAssertEqual(table.layout.regions.first { $0.name == "pos_embed" }?.shape.dims, [1, 196, 384])
    }

    func testTableCoversThePlainFamilies() throws {
        func config(_ name: String) throws -> ViTConfig {
            try TimmArchitectures.config(arguments: XCTUnwrap(TimmArchitectures.arguments(of: name)), path: name)
        }
        XCTAssertEqual(try config("vit_small_patch16_224.augreg_in21k"), .vitSmall())
        XCTAssertEqual(try config("deit_tiny_patch16_224"), .vitTiny())
        let large = try config("vit_large_patch14_clip_quickgelu_336")
        XCTAssertEqual(
            [large.embedDim, large.depth, large.numHeads, large.patchSize, large.imageHeight], [1024, 24, 16, 14, 336])
        XCTAssertEqual(large.activation, .quickGELU)
        let gap = try config("vit_base_patch16_gap_224")
        XCTAssertEqual([gap.classToken, gap.fcNorm], [false, false])
        XCTAssertEqual(gap.globalPool, .avg)
        // Register tokens and pos_embed without prefix rows (no_embed_class) are implemented.
        let deit3 = try config("deit3_small_patch16_224")
        XCTAssertEqual([deit3.regTokens, deit3.embedDim, deit3.posEmbedTokens], [0, 384, 196])
        XCTAssertEqual(deit3.initValues, 1e-6)
        XCTAssertTrue(deit3.noEmbedClass && deit3.classToken)
        let dinoReg = try config("vit_small_patch14_reg4_dinov2")
        XCTAssertEqual([dinoReg.regTokens, dinoReg.numPrefixTokens, dinoReg.tokens], [4, 5, 5 + 37 * 37])
        XCTAssertTrue(dinoReg.noEmbedClass)
        let gapReg = try config("vit_base_patch16_reg4_gap_256")
        XCTAssertEqual([gapReg.regTokens, gapReg.numPrefixTokens, gapReg.posEmbedTokens], [4, 4, 256])
        XCTAssertEqual(gapReg.globalPool, .avg)
        XCTAssertFalse(gapReg.classToken)
        XCTAssertTrue(try config("flexivit_base").noEmbedClass)
        for (name, option) in [
            ("vit_base_patch16_siglip_224", "global_pool"), ("deit_base_distilled_patch16_224", "distilled"),
            ("vit_base_patch16_radio_v3", "final_norm"),
        ] {
            XCTAssertThrowsError(try config(name), name) { XCTAssertTrue("\($0)".contains(option), "\($0)") }
        }
    }

    /// Writes config.json (with `edit` applied to the committed tiny one) and the tiny weights into a fresh dir.
    func snapshot(_ name: String, edit: (inout [String: JSONValue]) -> Void) throws -> String {
        let dir = tmp(name)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let src = fixture("vit_tiny_e32_d2_32")
        var cfg = try JSONDecoder().decode(
            [String: JSONValue].self, from: Data(contentsOf: URL(fileURLWithPath: src + "/config.json")))
        edit(&cfg)
        try JSONEncoder().encode(cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
        try FileManager.default.copyItem(atPath: src + "/model.safetensors", toPath: dir + "/model.safetensors")
        return dir
    }

    /// config.json asking for img_size 48 with weights made at 32 (grid 4×4 → 6×6): pos_embed is
    /// resampled once at load (antialiased bicubic, prefix row kept, as timm's checkpoint_filter_fn), the rest kept.
    func testSnapshotAtAnotherImageSizeResamplesPosEmbed() throws {
        let dir = try snapshot("resample") { c in
            var m = c["model_args"]!.object!
            m["img_size"] = .array([.int(48), .int(48)])
            c["model_args"] = .object(m)
            var p = c["pretrained_cfg"]!.object!
            p["input_size"] = .array([.int(3), .int(48), .int(48)])
            c["pretrained_cfg"] = .object(p)
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (params, _) = try Checkpoint.load(path: dir)
        let (original, _) = try Checkpoint.load(path: fixture("vit_tiny_e32_d2_32"))
        XCTAssertEqual([params.config.gridHeight, params.config.tokens], [6, 37])
        let old = try XCTUnwrap(original["pos_embed"]), new = try XCTUnwrap(params["pos_embed"])
        let want = Checkpoint.resampledPositions(
            Array(UnsafeBufferPointer(start: old.pointer, count: old.count)), grid: (4, 4), config: params.config)
        XCTAssertEqual((0..<new.count).map { new.pointer[$0] }, want)
        XCTAssertEqual((0..<32).map { new.pointer[$0] }, (0..<32).map { old.pointer[$0] }, "class-token row kept")
        let w = try XCTUnwrap(params["blocks.1.mlp.fc2.weight"]),
            w0 = try XCTUnwrap(original["blocks.1.mlp.fc2.weight"])
        XCTAssertEqual((0..<w.count).map { w.pointer[$0] }, (0..<w0.count).map { w0.pointer[$0] })
    }

    func testBadSnapshotsAreRefusedNamingFileAndOption() throws {
        func expect(_ dir: String, _ words: [String]) {
            defer { try? FileManager.default.removeItem(atPath: dir) }
            XCTAssertThrowsError(try Checkpoint.load(path: dir)) { e in
                for w in words { XCTAssertTrue("\(e)".contains(w), "'\(w)' not in: \(e)") }
            }
        }
        func args(_ c: inout [String: JSONValue], _ k: String, _ v: JSONValue) {
            var m = c["model_args"]!.object!
            m[k] = v
            c["model_args"] = .object(m)
        }
        expect(
            try snapshot("arch") { $0["architecture"] = "vit_base_patch16_rope_224" },
            ["vit_base_patch16_rope_224", "config.json"])
        // LayerScale in config.json but not in the weights: the missing γ is named.
        expect(try snapshot("ls") { args(&$0, "init_values", .number(1e-5)) }, ["ls1.gamma"])
        // Register tokens in config.json but not in the weights: the missing reg_token is named.
        expect(try snapshot("reg") { args(&$0, "reg_tokens", .int(2)) }, ["reg_token", "config.json"])
        // no_embed_class wants pos_embed without the class-token row: the shape is named.
        expect(try snapshot("nec") { args(&$0, "no_embed_class", .bool(true)) }, ["pos_embed", "shape"])
        expect(try snapshot("qk") { args(&$0, "qk_norm", .bool(true)) }, ["qk_norm"])
        expect(try snapshot("opt") { args(&$0, "frobnicate", .int(1)) }, ["frobnicate"])
        expect(try snapshot("key") { $0["weird"] = .int(1) }, ["weird"])
        expect(try snapshot("pool") { args(&$0, "global_pool", "map") }, ["global_pool", "map"])
        // Tensors that disagree with config.json: depth 3 wants blocks.2.*.
        expect(try snapshot("depth") { args(&$0, "depth", .int(3)) }, ["blocks.2", "config.json", "disagree"])
        expect(try snapshot("features") { args(&$0, "embed_dim", .int(64)) }, ["num_features", "embed_dim 64"])
        expect(
            try snapshot("dim") {
                args(&$0, "embed_dim", .int(64))
                $0["num_features"] = .int(64)
            }, ["shape", "config.json", "disagree"])
        // Only a pickle: refused with the conversion, never opened.
        let pickle = tmp("pickle")
        try FileManager.default.createDirectory(atPath: pickle, withIntermediateDirectories: true)
        try Data("not really a pickle".utf8).write(to: URL(fileURLWithPath: pickle + "/pytorch_model.bin"))
        expect(pickle, ["pytorch_model.bin", "pickle", "safetensors.torch", "weights_only=True"])
    }

    func testExportRoundTripKeepsArchitectureAndPreprocessing() throws {
        let (params, meta) = try Checkpoint.load(path: fixture("vit_clip_quickgelu_e32_d2_32"))
        // Through one of our checkpoints (as a fine-tuned model would be), then exported.
        let ours = tmp("ours.safetensors"), out = tmp("export")
        defer { for p in [ours, out] { try? FileManager.default.removeItem(atPath: p) } }
        try Checkpoint.save(params, to: ours, metadata: Checkpoint.lineage(meta))
        let (again, meta2) = try Checkpoint.load(path: ours)
        let (arch, modelArgs) = try HubSnapshot.write(again, metadata: meta2, to: out)
        XCTAssertEqual(arch, "vit_base_patch16_clip_quickgelu_224")
        XCTAssertEqual(modelArgs["depth"], .int(2))
        let (back, meta3) = try Checkpoint.load(path: out)
        XCTAssertEqual(back.config, params.config)
        XCTAssertEqual(back.arena.buffer.map(\.bitPattern), params.arena.buffer.map(\.bitPattern))
        XCTAssertEqual(try Checkpoint.preprocessing(meta3), try Checkpoint.preprocessing(meta))
    }

    func testExportOfOurModelPicksAnArchitecture() throws {
        for config in [
            ViTConfig.mini28(),
            ViTConfig(
                imageSize: 12, patchSize: 3, inChannels: 1, numClasses: 3, embedDim: 24,
                depth: 2, numHeads: 2, qkvBias: false, classToken: false, globalPool: .avg),
            ViTConfig(
                imageSize: 16, patchSize: 4, inChannels: 3, numClasses: 0, embedDim: 16, depth: 1, numHeads: 2,
                globalPool: .avg, fcNorm: false, preNorm: true, activation: .quickGELU, normEps: 1e-5),
            ViTConfig(
                imageSize: 16, patchSize: 4, inChannels: 3, numClasses: 5, embedDim: 24, depth: 2, numHeads: 3,
                initValues: 0.5, regTokens: 2, noEmbedClass: true),
            ViTConfig(
                imageSize: 12, patchSize: 3, inChannels: 1, numClasses: 3, embedDim: 24, depth: 2, numHeads: 2,
                classToken: false, globalPool: .avg, regTokens: 1, noEmbedClass: true),
            ViTConfig(
                imageSize: 12, patchSize: 3, inChannels: 1, numClasses: 3, embedDim: 24, depth: 2, numHeads: 2,
                regTokens: 3),
        ] {
            let (arch, args) = try XCTUnwrap(TimmArchitectures.exportArchitecture(for: config), config.json)
            // model_args carry reg_tokens / no_embed_class whenever the architecture's differ.
            let base = try TimmArchitectures.config(
                arguments: XCTUnwrap(TimmArchitectures.arguments(of: arch)), path: arch)
            if base.regTokens != config.regTokens { XCTAssertEqual(args["reg_tokens"], .int(config.regTokens), arch) }
            if base.noEmbedClass != config.noEmbedClass {
                XCTAssertEqual(args["no_embed_class"], .bool(config.noEmbedClass), arch)
            }
            var merged = try XCTUnwrap(TimmArchitectures.arguments(of: arch))
            merged.merge(args) { $1 }
            XCTAssertEqual(try TimmArchitectures.config(arguments: merged, path: arch), config, arch)
        }
        var odd = ViTConfig.mini28()
        odd.normEps = 1e-3
        XCTAssertNil(TimmArchitectures.exportArchitecture(for: odd))
    }

    /// Export names a model by timm's `vit_` architecture whenever one builds it with as few
    /// model_args as any other name (DeiT and EVA entries alias some of them), and keeps another
    /// family's name only when that family expresses the config more exactly.
    func testExportPrefersVitNames() throws {
        for (config, name) in [
            (ViTConfig.vitTiny(), "vit_tiny_patch16_224"), (.vitSmall(), "vit_small_patch16_224"),
            (.vitBase(), "vit_base_patch16_224"),
        ] {
            let (arch, args) = try XCTUnwrap(TimmArchitectures.exportArchitecture(for: config))
            XCTAssertEqual(arch, name)
            XCTAssertEqual(Set(args.keys), ["img_size", "in_chans", "num_classes", "global_pool"], arch)
        }
        let mini = try XCTUnwrap(TimmArchitectures.exportArchitecture(for: .mini28()))
        XCTAssertTrue(mini.architecture.hasPrefix("vit_"), mini.architecture)
        var checked = 0
        for name in TimmArchitectures.all.keys.sorted() {
            let args = try XCTUnwrap(TimmArchitectures.arguments(of: name))
            guard let config = try? TimmArchitectures.config(arguments: args, path: name) else { continue }
            let (arch, modelArgs) = try XCTUnwrap(TimmArchitectures.exportArchitecture(for: config), name)
            var merged = try XCTUnwrap(TimmArchitectures.arguments(of: arch))
            merged.merge(modelArgs) { $1 }
            XCTAssertEqual(try TimmArchitectures.config(arguments: merged, path: arch), config, "\(name) → \(arch)")
            // The table entry itself needs no model_args beyond the four always written, so the choice
            // needs no more; a vit_ entry is never exported under another family's name.
            XCTAssertLessThanOrEqual(
                modelArgs.count,
                TimmArchitectures.modelArguments(for: config, architecture: name)?.count ?? .max, name)
            if name.hasPrefix("vit_") { XCTAssertTrue(arch.hasPrefix("vit_"), "\(name) exported as \(arch)") }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 50)
        XCTAssertEqual(try exportName("deit_tiny_patch16_224"), "vit_tiny_patch16_224")
        XCTAssertEqual(try exportName("deit_base_patch16_384"), "vit_base_patch16_384")
        XCTAssertEqual(try exportName("deit3_small_patch16_224"), "deit3_small_patch16_224")
    }

    /// The architecture the model of table entry `name` is exported as.
    func exportName(_ name: String) throws -> String {
        let config = try TimmArchitectures.config(
            arguments: XCTUnwrap(TimmArchitectures.arguments(of: name)), path: name)
        return try XCTUnwrap(TimmArchitectures.exportArchitecture(for: config)).architecture
    }
}
