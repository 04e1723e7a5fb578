import Foundation

/// Captions aligned with a split's images (`LabeledImages.captions`): row i holds image i's
/// caption as UTF-8 bytes, zero-padded to `width` bytes (FORMATS.md "Captions").
public struct Captions: Sendable, Equatable {
    public let count, width: Int
    /// [count, width] row-major; each row's bytes end at its first 0 (or at `width`).
    public var bytes: [UInt8]

    public init(count: Int, width: Int, bytes: [UInt8]) {
        precondition(count >= 0 && width >= 1 && bytes.count == count * width, "Captions: bytes are not [count, width]")
        (self.count, self.width, self.bytes) = (count, width, bytes)
    }

    /// Captions from strings, each truncated to `width` bytes of UTF-8 and zero-padded.
    public init(_ texts: [String], width: Int) {
        var bytes = [UInt8](repeating: 0, count: texts.count * width)
        for (i, t) in texts.enumerated() {
            for (j, b) in t.utf8.prefix(width).enumerated() { bytes[i * width + j] = b }
        }
        self.init(count: texts.count, width: width, bytes: bytes)
    }

    /// Caption `i` as text (its bytes up to the first 0).
    public func text(_ i: Int) -> String {
        let row = bytes[(i * width)..<((i + 1) * width)]
        return String(decoding: row.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The captions at `indices`, in that order.
    public func take(_ indices: [Int]) -> Captions {
        var out = [UInt8]()
        out.reserveCapacity(indices.count * width)
        for i in indices { out += bytes[(i * width)..<((i + 1) * width)] }
        return Captions(count: indices.count, width: width, bytes: out)
    }

    /// The captions file beside a task file: `<dir>/<stem>_captions.safetensors`.
    public static func siblingPath(of task: String) -> String {
        let url = URL(fileURLWithPath: task)
        let stem = url.deletingPathExtension().lastPathComponent
        return url.deletingLastPathComponent().appendingPathComponent(stem + "_captions.safetensors").path
    }

    /// `train.captions` and `test.captions` (U8 [N, W], W ≥ 1) of the captions file at `path`, checked
    /// to have `train` and `test` rows (the task's images, 1:1).
    public static func load(path: String, train: Int, test: Int) throws -> (train: Captions, test: Captions) {
        let file = try SafeTensorsFile.read(path: path)
        func split(_ name: String, rows: Int) throws -> Captions {
            guard let info = file.info(name) else {
                throw IOError.missingTensor(path: path, tensor: name, available: file.names)
            }
            guard info.shape.count == 2, info.shape[0] == rows, info.shape[1] >= 1 else {
                throw IOError.shapeMismatch(
                    path: path, tensor: name, expected: [rows, max(1, info.shape.last ?? 1)], found: info.shape)
            }
            return Captions(count: rows, width: info.shape[1], bytes: try file.bytes(name))
        }
        return (try split("train.captions", rows: train), try split("test.captions", rows: test))
    }
}

extension TaskDataset {
    /// This task with the captions of `path` (`Captions.load`) on its train and test splits; a
    /// validation split stored in the task file gets none (a carved one keeps its rows').
    public func withCaptions(from path: String) throws -> TaskDataset {
        let (a, b) = try Captions.load(path: path, train: train.count, test: test.count)
        var tr = train, te = test
        tr.captions = a
        te.captions = b
        return TaskDataset(
            name: name, classes: classes, source: source, license: license, train: tr, test: te,
            validation: validation)
    }
}
