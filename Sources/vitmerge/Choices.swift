import ArgumentParser
import Foundation
import ViTMergeKernels
import ViTMergeMerging
import ViTMergeReport
import ViTMergeTraining

// Every choice a user types is an enum: `--help` lists its values and a typo is a validation error.

extension TrainMode: ExpressibleByArgument {
    /// `finetune --mode` offers these; masked image modeling is `pretrain --scheme mim`.
    public static var allValueStrings: [String] { ["aligned", "full", "linearized"] }
}

extension MergeMethod: ExpressibleByArgument {}

extension GEMM.Precision: ExpressibleByArgument {}

extension ExperimentMode: ExpressibleByArgument {}

extension PretrainScheme: ExpressibleByArgument {}

/// A split of a task file for `eval --split` ("validation" is accepted for val).
enum DataSplit: String, CaseIterable, ExpressibleByArgument {
    case train, val, test

    init?(argument: String) {
        self.init(rawValue: argument == "validation" ? "val" : argument)
    }
}

/// `--modes probe,aligned,…`: a comma-separated list of fine-tuning modes, in the order given.
func parseModes(_ text: String) throws -> [ExperimentMode] {
    let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let all = ExperimentMode.allCases.map(\.rawValue).joined(separator: ", ")
    if names.isEmpty { throw ValidationError("--modes takes a comma-separated subset of \(all)") }
    return try names.map { name in
        guard let m = ExperimentMode(rawValue: name) else {
            throw ValidationError(
                "--modes: '\(name)' is not a fine-tuning mode; give a comma-separated subset of \(all)")
        }
        return m
    }
}
