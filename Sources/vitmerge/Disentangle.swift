import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeMerging
import ViTMergeModel
import ViTMergeReport
import ViTMergeTraining

/// `vitmerge disentangle`: weight disentanglement error ξ(α1, α2) for two tasks, as JSON and SVG.
struct Disentangle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Weight disentanglement error ξ(α1, α2) of two tasks over a grid of coefficients; writes a heatmap SVG.")
    @OptionGroup var inputs: MergeInputs
    @Option(help: "Grid step over [−range, range].") var alphaStep = 0.5
    @Option(help: "Grid half-width.") var range = 3.0
    @Option(help: "Validation images per task.") var images = 100
    @Option(help: "Heatmap SVG to write.") var svg = "disentanglement.svg"
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if inputs.finetuned.count != 2 {
            throw ValidationError("disentangle takes exactly two tasks (two --finetuned and two --tasks)")
        }
        if !(alphaStep > 0) || !(range > 0) || range / alphaStep > 100 {
            throw ValidationError("--alpha-step and --range must be positive, at most 201 grid points")
        }
        if images < 1 { throw ValidationError("--images must be ≥ 1") }
    }

    func run() throws {
        let (ev, names, _) = try inputs.load()
        let alphas = stride(from: -range, through: range + 1e-9, by: alphaStep).map { ($0 * 1000).rounded() / 1000 }
        let xi = ev.disentanglement(0, 1, alphas: alphas, limit: images)
        let chart = SVG.heatmap(
            title: "Weight disentanglement error ξ: \(names[0]) + \(names[1])", xLabel: "α2 (\(names[1]))",
            yLabel: "α1 (\(names[0]))", xs: alphas, ys: alphas, values: xi, vMax: 2)
        try AtomicFile.write(chart, to: svg)
        if json {
            printJSON(["tasks": names, "alphas": alphas, "error": xi, "svg": svg])
            return
        }
        print(
            "ξ(α1, α2) for \(names[0]) (rows, α1) and \(names[1]) (columns, α2) on \(images) validation images "
                + "each:")
        print("α1\\α2 " + alphas.map { String(format: "%5.1f", $0) }.joined(separator: " "))
        for (i, row) in xi.enumerated() {
            print(String(format: "%5.1f ", alphas[i]) + row.map { String(format: "%5.2f", $0) }.joined(separator: " "))
        }
        print(
            String(
                format: "mean ξ over |α| ≤ 1: %.4f; wrote "
                    + "%@", meanDisentanglementError(xi, alphas, radius: 1), svg))
    }
}
