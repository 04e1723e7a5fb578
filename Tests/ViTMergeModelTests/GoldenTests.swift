import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

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

    func testToleranceTableIsFormatsMd() {
        XCTAssertEqual(Golden.forwardTolerance.atol, 1e-5); XCTAssertEqual(Golden.forwardTolerance.rtol, 1e-4)
        XCTAssertEqual(Golden.gradientTolerance.atol, 1e-5); XCTAssertEqual(Golden.gradientTolerance.rtol, 1e-3)
        XCTAssertEqual(Golden.adamwTolerance.atol, 1e-4); XCTAssertEqual(Golden.adamwTolerance.rtol, 1e-3)
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
                    "\((path as NSString).lastPathComponent) \(row.group): max abs \(row.maxAbs), max rel \(row.maxRel), worst \(row.worst) (atol \(row.atol), rtol \(row.rtol))"
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
        let path = Self.goldenFiles[0]
        let file = try SafeTensorsFile.read(path: path)
        var writer = SafeTensorsWriter(metadata: file.metadata)
        for name in file.names {
            let info = file.info(name)!
            switch info.dtype {
            case .f32:
                var v = try file.floats(name)
                if name == "grad.head.weight" || name == "grad.norm.weight" || name == "grad.fc_norm.weight" {
                    v[3] += 0.01
                }
                try writer.add(name, floats: v, shape: info.shape)
            case .i64: try writer.add(name, int64s: try file.int64s(name), shape: info.shape)
            default: try writer.add(name, bytes: try file.bytes(name), shape: info.shape)
            }
        }
        let tmp = NSTemporaryDirectory() + "vitmerge-corrupt-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try writer.write(to: tmp)
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
