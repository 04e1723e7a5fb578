import ArgumentParser
import Foundation
import ViTMergeIO
import ViTMergeTraining

/// `vitmerge verify-golden FILE…`: checks our numerics against PyTorch/timm golden files.
struct VerifyGolden: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-golden",
        abstract: "Run golden files (scripts/make_golden.py) through the Swift model and compare with torch.",
        discussion:
            "Forward, loss, activations, every gradient, the input gradient and the recorded AdamW steps, each with "
            + "FORMATS.md's tolerances. Exits 0 only if everything passes."
    )

    @Argument(help: "Golden .safetensors files.")
    var files: [String]

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one golden file, e.g. data/golden/*.safetensors") }
    }

    func run() throws {
        runtime.apply()
        var failed = 0
        for path in files {
            let report: GoldenReport
            do { report = try Golden.verify(path: path) } catch {
                print("\(path): ERROR \(error)")
                failed += 1
                continue
            }
            print("\(path): \(report.passed ? "PASS" : "FAIL")")
            let header = ["group", "tensors", "max abs", "max rel", "atol/rtol", "", "worst"]
            var rows = [header]
            for r in report.rows {
                rows.append([
                    r.group, "\(r.tensors)", String(format: "%.2e", r.maxAbs), String(format: "%.2e", r.maxRel),
                    "\(r.atol)/\(r.rtol)", r.passed ? "ok" : "FAIL", r.worst,
                ])
            }
            printTable(rows, indent: "  ")
            if !report.passed { failed += 1 }
        }
        print(failed == 0 ? "all \(files.count) golden files pass" : "\(failed) of \(files.count) golden files failed")
        if failed > 0 { throw ExitCode.failure }
    }
}

/// Prints rows as an aligned table (the last column is not padded).
func printTable(_ rows: [[String]], indent: String = "") {
    guard let width = rows.map(\.count).max() else { return }
    var widths = [Int](repeating: 0, count: width)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        let cells = row.enumerated().map { i, c in
            i == row.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }
        print(indent + cells.joined(separator: "  "))
    }
}
