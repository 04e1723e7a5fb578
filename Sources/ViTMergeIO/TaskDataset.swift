import Foundation
import ViTMergeCore

/// Labelled images [count, C, H, W] u8 with int labels.
public struct LabeledImages: Sendable, Equatable {
    public let count, channels, height, width: Int
    public var images: [UInt8]
    public var labels: [Int32]
    /// Per-channel mean and std applied when batches are filled: x = (u8 / 255 − mean) / std, as timm's
    /// ToTensor + Normalize. nil: x = u8 / 255 (the embedded tasks and models trained on them).
    public var normalization: Normalization?
    /// Each image's caption (image–text pre-training), or nil; `take` keeps them aligned.
    public var captions: Captions?

    public init(
        count: Int, channels: Int, height: Int, width: Int, images: [UInt8], labels: [Int32],
        normalization: Normalization? = nil
    ) {
        precondition(normalization.map { $0.mean.count == channels } ?? true, "one mean and std per channel")
        self.count = count
        self.channels = channels
        self.height = height
        self.width = width
        self.images = images
        self.labels = labels
        self.normalization = normalization
    }
}

/// Per-channel mean and standard deviation of pixels scaled to [0, 1].
public struct Normalization: Sendable, Equatable {
    public let mean: [Float]
    public let std: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count && std.allSatisfy { $0 > 0 }, "normalization: bad mean/std")
        self.mean = mean
        self.std = std
    }

    /// The normalization of `preprocessing`; nil when it is the identity (mean 0, std 1).
    public init?(_ preprocessing: Preprocessing) {
        if preprocessing.mean.allSatisfy({ $0 == 0 }) && preprocessing.std.allSatisfy({ $0 == 1 }) { return nil }
        self.init(mean: preprocessing.mean, std: preprocessing.std)
    }
}

/// A prepared task (FORMATS.md "Datasets"): `train.*` and `test.*` (and optionally `val.*`)
/// images [N, C, H, W] u8 and labels [N] i64, with metadata `classes` (JSON list), `source`, `license`.
public struct TaskDataset: Sendable {
    public let name: String
    public let classes: [String]
    public let source: String
    public let license: String
    public let train: LabeledImages
    public let test: LabeledImages
    public let validation: LabeledImages?

    /// The task file at `path`, with the captions of `Captions.siblingPath(of: path)` attached
    /// when that file exists.
    public static func load(path: String) throws -> TaskDataset {
        let task = try load(file: SafeTensorsFile.read(path: path))
        let captions = Captions.siblingPath(of: path)
        return FileManager.default.fileExists(atPath: captions) ? try task.withCaptions(from: captions) : task
    }

    /// `load(path:)` for a file already read (`file.path` names it in errors and gives the task its name).
    public static func load(file: SafeTensorsFile) throws -> TaskDataset {
        let path = file.path
        guard let classesJSON = file.metadata["classes"],
            let classes = try? JSONSerialization.jsonObject(with: Data(classesJSON.utf8)) as? [String], !classes.isEmpty
        else {
            throw IOError.invalidFile(
                path: path, reason: "metadata 'classes' is missing or not a JSON list of names",
                hint: "prepare task files with scripts/prepare_data.py")
        }
        func split(_ prefix: String) throws -> LabeledImages {
            guard let info = file.info(prefix + ".images") else {
                throw IOError.missingTensor(path: path, tensor: prefix + ".images", available: file.names)
            }
            guard info.shape.count == 4, info.shape.allSatisfy({ $0 > 0 }) || info.shape[0] == 0 else {
                throw IOError.shapeMismatch(
                    path: path, tensor: prefix + ".images", expected: [-1, -1, -1, -1], found: info.shape)
            }
            let n = info.shape[0]
            let images = try file.bytes(prefix + ".images")
            let labels64 = try file.int64s(prefix + ".labels", shape: [n])
            var labels = [Int32](repeating: 0, count: n)
            for (i, l) in labels64.enumerated() {
                guard l >= 0 && l < classes.count else {
                    throw IOError.invalidFile(
                        path: path,
                        reason: "\(prefix).labels[\(i)] = \(l) is outside 0..<\(classes.count) (the classes)",
                        hint: "fix the labels or the 'classes' metadata")
                }
                labels[i] = Int32(l)
            }
            return LabeledImages(
                count: n, channels: info.shape[1], height: info.shape[2], width: info.shape[3], images: images,
                labels: labels)
        }
        let train = try split("train"), test = try split("test")
        let validation = file.contains("val.images") ? try split("val") : nil
        for s in [test] + (validation.map { [$0] } ?? [])
        where (s.channels, s.height, s.width) != (train.channels, train.height, train.width) {
            throw IOError.invalidFile(
                path: path, reason: "splits have different image shapes", hint: "prepare all splits at one resolution")
        }
        let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        return TaskDataset(
            name: name, classes: classes, source: file.metadata["source"] ?? "",
            license: file.metadata["license"] ?? "",
            train: train, test: test, validation: validation)
    }

    /// A seeded, stratified split of `train` into train and validation (`fraction` of each class,
    /// at least one per class when the class has ≥ 2 examples). Deterministic for a seed.
    public func splitValidation(fraction: Double, seed: UInt64) -> (train: LabeledImages, validation: LabeledImages) {
        let (trainIdx, valIdx) = splitIndices(fraction: fraction, seed: seed)
        return (train.take(trainIdx), train.take(valIdx))
    }

    /// The rows of `train` that `splitValidation` keeps for training and carves for validation, in
    /// increasing order (to carry data aligned with the images, such as captions, along).
    public func splitIndices(fraction: Double, seed: UInt64) -> (train: [Int], validation: [Int]) {
        var byClass = [[Int]](repeating: [], count: classes.count)
        for i in 0..<train.count { byClass[Int(train.labels[i])].append(i) }
        var rng = RNG(seed: seed, stream: 0x5A11)
        var trainIdx: [Int] = [], valIdx: [Int] = []
        for var members in byClass {
            rng.shuffle(&members)
            let k = members.count >= 2 ? max(1, Int((Double(members.count) * fraction).rounded())) : 0
            valIdx += members.prefix(k)
            trainIdx += members.dropFirst(k)
        }
        return (trainIdx.sorted(), valIdx.sorted())
    }
}

extension LabeledImages {
    /// The examples at `indices`, in that order.
    public func take(_ indices: [Int]) -> LabeledImages {
        let size = channels * height * width
        var images = [UInt8]()
        images.reserveCapacity(indices.count * size)
        for i in indices { images += self.images[(i * size)..<((i + 1) * size)] }
        var out = LabeledImages(
            count: indices.count, channels: channels, height: height, width: width, images: images,
            labels: indices.map { labels[$0] }, normalization: normalization)
        out.captions = captions?.take(indices)
        return out
    }
}

extension LabeledImages {
    /// `count` examples drawn without replacement with `seed` (stream 0x5A3B), in increasing index
    /// order; all of them when `count` ≥ the split's size.
    public func sample(_ count: Int, seed: UInt64) -> LabeledImages {
        if count >= self.count { return self }
        var order = Array(0..<self.count)
        var rng = RNG(seed: seed, stream: 0x5A3B)
        rng.shuffle(&order)
        return take(order.prefix(max(count, 0)).sorted())
    }
}
