import Foundation
import XCTest
import ViTMergeModel
@testable import ViTMergeIO

/// Every committed fuzzer regression input (fuzz/regressions/<target>/) and seed (fuzz/corpus/<target>/)
/// through the reader its fuzz target calls (Sources/vitmerge-fuzz/FuzzTargets.swift): each must end
/// in success or a typed error (IOError, ModelError), never a trap or an unbounded allocation.
final class FuzzRegressionTests: XCTestCase {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fuzz")

    /// The reader of each fuzz target, as in FuzzTargets.swift, but rethrowing its first error.
    static func read(_ target: String, _ b: [UInt8]) throws {
        let path = "fuzz-\(target)"
        switch target {
        case "safetensors":
            let f = try SafeTensorsFile(bytes: b, path: path)
            for name in f.names {
                switch f.info(name)?.dtype {
                case .f32: _ = try f.floats(name)
                case .i64, .i32: _ = try f.int64s(name)
                case .u8: _ = try f.bytes(name)
                default: break
                }
            }
        case "checkpoint":
            let f = try SafeTensorsFile(bytes: b, path: path)
            var loadError: (any Error)?
            do { _ = try Checkpoint.load(file: f) } catch { loadError = error }
            _ = try Checkpoint.preprocessing(f.metadata)
            if let loadError { throw loadError }
        case "config": _ = try ViTConfig.parse(json: Data(b))
        case "hub": _ = try HubSnapshot.parseConfig(json: Data(b), path: path)
        case "idx": _ = try IDX.decode(b, path: path)
        case "task": _ = try TaskDataset.load(file: SafeTensorsFile(bytes: b, path: path))
        case "image": _ = try RGBImage.decode(b, path: path)
        case "golden": _ = try GoldenFile(file: SafeTensorsFile(bytes: b, path: path))
        case "recipe": break  // MergeRecipe is in ViTMergeMerging: MergeRecipeTests reads these inputs.
        default: XCTFail("unknown fuzz target \(target): add it here and to FuzzTargets.swift")
        }
    }

    func inputs(_ sub: String) -> [(target: String, name: String, bytes: [UInt8])] {
        let root = Self.fuzzDirectory.appendingPathComponent(sub)
        let fm = FileManager.default
        let targets = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).sorted()
        return targets.flatMap { t in
            let dir = root.appendingPathComponent(t)
            return ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).sorted().compactMap { n in
                fm.contents(atPath: dir.appendingPathComponent(n).path).map { (t, n, [UInt8]($0)) }
            }
        }
    }

    func assertTypedOutcome(_ sub: String) {
        let all = inputs(sub)
        for (target, name, bytes) in all {
            do { try Self.read(target, bytes) } catch is IOError {} catch is ModelError {} catch {
                XCTFail("\(sub)/\(target)/\(name): untyped error \(type(of: error)): \(error)")
            }
        }
    }

    func testRegressionInputsEndInSuccessOrATypedError() {
        XCTAssertFalse(inputs("regressions").isEmpty, "fuzz/regressions/ should hold the committed crash inputs")
        assertTypedOutcome("regressions")
    }

    func testSeedCorpusEndsInSuccessOrATypedError() {
        XCTAssertGreaterThanOrEqual(Set(inputs("corpus").map(\.target)).count, 8, "a seed directory per target")
        assertTypedOutcome("corpus")
    }

    /// A golden file whose header config asks for a 16384-wide model (~200 GB of parameters) but holds
    /// a tiny one: refused before the model is allocated (it used to allocate, then fail on shapes).
    func testGoldenConfigLargerThanItsTensorsIsRefusedBeforeAllocating() throws {
        let path = Self.fuzzDirectory.appendingPathComponent(
            "regressions/golden/config-larger-than-tensors.safetensors")
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: path.path))
        let file = try SafeTensorsFile(bytes: [UInt8](bytes), path: "big.safetensors")
        XCTAssertEqual(try ViTConfig.parse(json: Data(file.metadata["config"]!.utf8)).embedDim, 16384)
        XCTAssertThrowsError(try GoldenFile(file: file)) { error in
            guard case .shapeMismatch(_, let tensor, _, _)? = error as? IOError else {
                return XCTFail("expected a shape mismatch, got \(error)")
            }
            XCTAssertTrue(tensor.hasPrefix("param."), tensor)
        }
    }

    /// libFuzzer's timeout (101 bytes, 14 s under ASan): a baseline JPEG whose header claims 2052 × 44060
    /// pixels and whose only scan stops at a marker after a few bytes. libjpeg fills the rest with gray, so
    /// it used to decode to a 90-megapixel image; a scan that stops early is now a corrupt file.
    func testJPEGWhoseScanStopsEarlyIsCorrupt() throws {
        let path = Self.fuzzDirectory.appendingPathComponent("regressions/image/timeout-jpeg-gray-fill-101b")
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: path.path))
        XCTAssertEqual(bytes.count, 101)
        let start = Date()
        XCTAssertThrowsError(try RGBImage.decode([UInt8](bytes), path: "bomb.jpg")) { error in
            XCTAssertTrue("\(error)".contains("stops before the image is complete"), "\(error)")
            XCTAssertTrue("\(error)".contains("bomb.jpg"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1, "refused before decoding the claimed pixels")
    }
}
