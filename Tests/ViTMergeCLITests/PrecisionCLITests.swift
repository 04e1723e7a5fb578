import Foundation
import XCTest
import ViTMergeKernels

/// `--precision`: bf16 changes the arithmetic of a real fine-tune (and says so); unknown values are refused.
final class PrecisionCLITests: XCTestCase {
    func testFineTuneInBF16DiffersFromFP32AndUnknownPrecisionIsRefused() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("precision")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try CLI.writeTinyConfig(in: dir.path)
        let start = dir.appendingPathComponent("start.safetensors").path
        XCTAssertEqual(try CLI.run(exe, ["init", "--config", config, "--seed", "3", "--output", start]).status, 0)
        func finetune(_ precision: String) throws -> (status: Int32, output: String, file: String) {
            let out = dir.appendingPathComponent("\(precision).safetensors").path
            let r = try CLI.run(
                exe,
                [
                    "finetune", "--mode", "full", "--checkpoint", start, "--task", "data/tasks/mnist.safetensors",
                    "--output", out, "--steps", "8", "--batch-size", "16", "--quiet", "--precision", precision,
                ])
            return (r.status, r.output, out)
        }
        let refused = try finetune("fp16")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("fp32") && refused.output.contains("bf16"), refused.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: refused.file))
        let fp32 = try finetune("fp32")
        XCTAssertEqual(fp32.status, 0, fp32.output)
        let bf16 = try finetune("bf16")
        guard GEMM.bf16Supported else {
            XCTAssertNotEqual(bf16.status, 0, "bf16 must be refused without AVX512_BF16")
            XCTAssertTrue(bf16.output.contains("AVX512_BF16"), bf16.output)
            return
        }
        XCTAssertEqual(bf16.status, 0, bf16.output)
        XCTAssertTrue(bf16.output.contains("precision: bf16"), bf16.output)
        let a = try Data(contentsOf: URL(fileURLWithPath: fp32.file)),
            b = try Data(contentsOf: URL(fileURLWithPath: bf16.file))
        XCTAssertEqual(a.count, b.count, "the same tensors in either precision")
        XCTAssertNotEqual(a, b, "bf16 training must not give the FP32 bits")
    }
}
