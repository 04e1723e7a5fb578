import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// Golden parity with PyTorch/timm: every committed file under data/golden must pass.
final class GoldenTests: XCTestCase {
    static let goldenDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("data/golden")

    static var goldenFiles: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: goldenDirectory.path)) ?? []
        return names.filter { $0.hasSuffix(".safetensors") }.sorted().map {
            goldenDirectory.appendingPathComponent($0).path
        }
    }

    /// A copy of golden file `path` with the float tensors' values changed by `edit(name, values)`.
    func perturbedCopy(of path: String, tag: String, _ edit: (String, inout [Float]) -> Void) throws -> String {
        let file = try SafeTensorsFile.read(path: path)
        var writer = SafeTensorsWriter(metadata: file.metadata)
        for name in file.names {
            let info = file.info(name)!
            switch info.dtype {
            case .f32:
                var v = try file.floats(name)
                edit(name, &v)
                try writer.add(name, floats: v, shape: info.shape)
            case .i64: try writer.add(name, int64s: try file.int64s(name), shape: info.shape)
            default: try writer.add(name, bytes: try file.bytes(name), shape: info.shape)
            }
        }
        let tmp = NSTemporaryDirectory() + "vitmerge-golden-\(tag)-\(getpid()).safetensors"
        try writer.write(to: tmp)
        return tmp
    }

    /// The tolerances the verifier applies are the public constants (FORMATS.md's table): with
    /// one recorded value per group moved to ours ± 0.9 of its tolerance the file passes; moved
    /// to ± 1.1 of it, exactly that group fails, naming the element.
    func testEachGroupAppliesItsTolerance() throws {
        let path = Self.goldenFiles.first { $0.hasSuffix("vit_token_gelu.safetensors") } ?? Self.goldenFiles[0]
        let clean = try Golden.verify(path: path)
        XCTAssertTrue(clean.passed, "\(path) must pass unperturbed")
        let first = clean.config.numClasses > 0 ? "head.weight" : "blocks.0.mlp.fc1.weight"
        // group → (a tensor of it, its tolerance)
        let groups: [(String, String, (atol: Double, rtol: Double))] = [
            ("forward", clean.config.numClasses > 0 ? "logits" : "features", Golden.forwardTolerance),
            ("jvp", clean.config.numClasses > 0 ? "jvp.logits" : "jvp.features", Golden.forwardTolerance),
            ("gradients", "grad." + first, Golden.gradientTolerance),
            ("grad.input", "grad.input", Golden.gradientTolerance),
            ("adamw.loss", "adamw.loss", Golden.forwardTolerance),
            ("adamw.param", "adamw.param." + first, Golden.adamwTolerance),
        ]
        /// ours moved away from zero by `factor` × the largest difference the tolerance allows.
        func shifted(_ name: String, factor: Double, tol: (atol: Double, rtol: Double)) throws -> Float {
            let ours = Double(try XCTUnwrap(clean.computed[name]?[1], name))
            // |t − ours| = δ with |t| = |ours| + δ: δ ≤ atol + rtol·(|ours| + δ)
            // ⇔ δ ≤ (atol + rtol·|ours|)/(1 − rtol)
            let limit = (tol.atol + tol.rtol * abs(ours)) / (1 - tol.rtol)
            return Float(ours + (ours < 0 ? -1 : 1) * factor * limit)
        }
        var inside: [String: Float] = [:]
        for (_, name, tol) in groups { inside[name] = try shifted(name, factor: 0.9, tol: tol) }
        let insidePath = try perturbedCopy(of: path, tag: "inside") { name, v in
            if let x = inside[name] { v[1] = x }
        }
        defer { try? FileManager.default.removeItem(atPath: insidePath) }
        let passing = try Golden.verify(path: insidePath)
        for row in passing.rows where !row.passed {
            XCTFail("\(row.group) failed at 0.9 of its tolerance: \(row.worst) (atol \(row.atol), rtol \(row.rtol))")
        }
        for (group, name, tol) in groups {
            let x = try shifted(name, factor: 1.1, tol: tol)
            let outsidePath = try perturbedCopy(of: path, tag: "outside") { n, v in
                if n == name { v[1] = x }
            }
            defer { try? FileManager.default.removeItem(atPath: outsidePath) }
            let report = try Golden.verify(path: outsidePath)
            XCTAssertFalse(report.passed, "\(group): 1.1 × its tolerance must fail")
            XCTAssertEqual(report.rows.filter { !$0.passed }.map(\.group), [group])
            let row = try XCTUnwrap(report.rows.first { $0.group == group })
            XCTAssertEqual(row.atol, tol.atol, group)
            XCTAssertEqual(row.rtol, tol.rtol, group)
            XCTAssertTrue(row.worst.hasPrefix("\(name)[1]"), "\(group): \(row.worst)")
        }
    }

    func testEveryGoldenFilePasses() throws {
        let files = Self.goldenFiles
        XCTAssertGreaterThanOrEqual(
            files.count, 6, "expected the committed golden files in \(Self.goldenDirectory.path)")
        for path in files {
            let report = try Golden.verify(path: path)
            XCTAssertTrue(
                report.rows.contains { $0.group == "gradients" } && report.rows.contains { $0.group == "adamw.param" },
                "\(path): golden file lacks gradients or AdamW results")
            XCTAssertTrue(
                report.rows.contains { $0.group == "jvp" }, "\(path): the JVP (torch.func.jvp) was not checked")
            for row in report.rows where !row.passed {
                XCTFail(
                    "\((path as NSString).lastPathComponent) \(row.group): max abs \(row.maxAbs), "
                        + "max rel \(row.maxRel), worst \(row.worst) (atol \(row.atol), rtol \(row.rtol))"
                )
            }
        }
    }

    func testGoldenRunsAreBitIdenticalForOneAndTwoThreads() throws {
        let path = Self.goldenFiles.first { $0.hasSuffix("vit_token_gelu.safetensors") } ?? Self.goldenFiles[0]
        let one = try ThreadPool(threads: 1).withSelf { try Golden.verify(path: path, pool: $0) }
        let two = try ThreadPool(threads: 2).withSelf { try Golden.verify(path: path, pool: $0) }
        XCTAssertFalse(one.computed.isEmpty)
        for (name, values) in one.computed {
            let other = try XCTUnwrap(two.computed[name])
            XCTAssertEqual(values.map(\.bitPattern), other.map(\.bitPattern), "\(name) differs between 1 and 2 threads")
        }
    }

    func testCorruptedGoldenFailsLoudlyWithWorstIndex() throws {
        // Perturb one logit of a real golden file: verification must fail and name it.
        let tmp = try perturbedCopy(of: Self.goldenFiles[0], tag: "corrupt") { name, v in
            if name == "grad.head.weight" || name == "grad.norm.weight" || name == "grad.fc_norm.weight" {
                v[3] += 0.01
            }
        }
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let report = try Golden.verify(path: tmp)
        XCTAssertFalse(report.passed)
        let bad = try XCTUnwrap(report.rows.first { !$0.passed })
        XCTAssertEqual(bad.group, "gradients")
        XCTAssertTrue(bad.worst.contains("[3]"), bad.worst)
    }
}

extension ThreadPool {
    func withSelf<T>(_ body: (ThreadPool) throws -> T) rethrows -> T { try body(self) }
}
