import Foundation
@_spi(Testing) import ViTMergeIO
import ViTMergeMerging
import ViTMergeModel

/// One file reader under test: `run` feeds it the bytes through the library's normal entry point.
/// A typed error is a pass; a trap, a sanitizer report or an allocation over libFuzzer's limit is a find.
struct FuzzTarget: Sendable {
    let name: String
    let run: @Sendable ([UInt8]) -> Void
}

/// Every tensor of a file, read with its own dtype (so the copy paths run on the offsets checked).
private func readAll(_ f: SafeTensorsFile) {
    for name in f.names {
        switch f.info(name)?.dtype {
        case .f32, .f16, .bf16: _ = try? f.floats(name)
        case .i64, .i32: _ = try? f.int64s(name)
        case .u8: _ = try? f.bytes(name)
        default: break
        }
    }
}

/// The readers of untrusted input (SECURITY.md), one target each.
let fuzzTargets: [FuzzTarget] = [
    FuzzTarget(name: "safetensors") { b in
        // The header parser's fast path must decide as JSONSerialization does (SafeTensors+Header.swift).
        if b.count >= 10 {
            let n = b[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
            if n >= 2, n <= b.count - 8 {
                precondition(
                    SafeTensorsFile.headerParserAgreesWithFoundation(b[8..<(8 + n)]), "header parsers disagree")
            }
        }
        guard let f = try? SafeTensorsFile(bytes: b, path: "fuzz.safetensors") else { return }
        readAll(f)
    },
    FuzzTarget(name: "checkpoint") { b in
        guard let f = try? SafeTensorsFile(bytes: b, path: "fuzz.safetensors") else { return }
        _ = try? Checkpoint.load(file: f)
        _ = try? Checkpoint.preprocessing(f.metadata)
    },
    FuzzTarget(name: "config") { b in _ = try? ViTConfig.parse(json: Data(b)) },
    FuzzTarget(name: "hub") { b in _ = try? HubSnapshot.parseConfig(json: Data(b), path: "config.json") },
    FuzzTarget(name: "idx") { b in _ = try? IDX.decode(b, path: "fuzz.idx") },
    FuzzTarget(name: "task") { b in
        guard let f = try? SafeTensorsFile(bytes: b, path: "fuzz.safetensors") else { return }
        _ = try? TaskDataset.load(file: f)
    },
    FuzzTarget(name: "image") { b in _ = try? RGBImage.decode(b, path: "fuzz.img") },
    FuzzTarget(name: "recipe") { b in _ = try? MergeRecipe.parse(Data(b), file: "fuzz.yaml") },
    FuzzTarget(name: "golden") { b in
        guard let f = try? SafeTensorsFile(bytes: b, path: "fuzz.safetensors") else { return }
        _ = try? GoldenFile(file: f)
    },
]
