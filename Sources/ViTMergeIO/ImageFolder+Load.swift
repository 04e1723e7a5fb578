import Foundation
import Synchronization
import ViTMergeCore

extension TaskDataset {
    /// Loads an image-folder task (`ImageFolder`) with timm's eval transform: every image decoded
    /// (`RGBImage.read`), resized and center-cropped (`Preprocessing.evalCrop`) into u8 [N, 3, H, W]
    /// (3·H·W bytes per image: 150 KB at 224²); mean/std are applied at batch time
    /// (`LabeledImages.fill(…, normalization:)`). Files are decoded in parallel on `pool` (results do
    /// not depend on the thread count); `progress(done, total)` is called in order, under a lock.
    ///
    /// With `cache` (a directory, created if needed), the result is stored as a task file
    /// `<cache>/<folder>-<key>.safetensors` keyed by a SHA-256 of the preprocessing and every
    /// file's relative path, size and modification time, and read back instead of decoding when
    /// the key matches. The first bad file (in load order) is thrown and nothing is written.
    public static func load(
        imageFolder path: String, preprocessing: Preprocessing, cache: String? = nil,
        pool: ThreadPool = .shared, progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil
    ) throws(IOError) -> TaskDataset {
        try preprocessing.validateForImages(path: path)
        let folder = try ImageFolder.scan(path)
        let name = URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent
        let key = try ImageFolder.cacheKey(folder, preprocessing: preprocessing)
        let cacheFile = cache.map { "\($0)/\(name)-\(key.prefix(16)).safetensors" }
        if let cacheFile, FileManager.default.fileExists(atPath: cacheFile),
            let file = try? SafeTensorsFile.read(path: cacheFile), file.metadata["cache_key"] == key,
            let cached = try? TaskDataset.load(file: file)
        {
            return cached.renamed(name).normalized(Normalization(preprocessing))
        }
        let splits = [folder.train, folder.test] + (folder.validation.map { [$0] } ?? [])
        let files = splits.flatMap(\.files)
        let images = try ImageFolder.decode(files, preprocessing: preprocessing, pool: pool, progress: progress)
        let (h, w) = (preprocessing.inputSize[1], preprocessing.inputSize[2]), size = 3 * h * w
        var start = 0
        let sets = splits.map { s in
            defer { start += s.files.count }
            return LabeledImages(
                count: s.files.count, channels: 3, height: h, width: w,
                images: Array(images[(start * size)..<((start + s.files.count) * size)]), labels: s.labels)
        }
        let pre = String(decoding: (try? ImageFolder.sortedJSON.encode(preprocessing)) ?? Data(), as: UTF8.self)
        let task = TaskDataset(
            name: name, classes: folder.classes, source: "image folder \(path) (preprocessing \(pre))", license: "",
            train: sets[0], test: sets[1], validation: sets.count > 2 ? sets[2] : nil)
        if let cache, let cacheFile {
            try AtomicFile.createDirectory(cache)
            try task.write(to: cacheFile, extraMetadata: ["cache_key": key, "preprocessing": pre])
        }
        return task.normalized(Normalization(preprocessing))
    }

    /// `load(path:)` for a task file, an IDX directory (`loadIDX`) or, for another directory, an image folder
    /// loaded with `preprocessing` (required then: the model's, e.g. `Checkpoint`'s) and `cache`.
    public static func load(
        path: String, preprocessing: Preprocessing?, cache: String? = nil,
        progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil
    ) throws -> TaskDataset {
        guard ImageFolder.isDirectory(path) else { return try load(path: path) }
        if IDX.isTaskDirectory(path) { return try loadIDX(directory: path) }
        guard let preprocessing else {
            throw IOError.invalidImageFolder(
                path: path, reason: "an image folder needs the model's preprocessing (input size, crop, mean/std)",
                hint: "load it with a checkpoint that records its preprocessing, or give one")
        }
        return try load(imageFolder: path, preprocessing: preprocessing, cache: cache, progress: progress)
    }

    /// The task with every split's `normalization` set to `n`.
    func normalized(_ n: Normalization?) -> TaskDataset {
        func set(_ x: LabeledImages) -> LabeledImages {
            var x = x
            x.normalization = n
            return x
        }
        return TaskDataset(
            name: name, classes: classes, source: source, license: license, train: set(train), test: set(test),
            validation: validation.map(set))
    }

    func renamed(_ name: String) -> TaskDataset {
        TaskDataset(
            name: name, classes: classes, source: source, license: license, train: train, test: test,
            validation: validation)
    }

    /// Writes the task in the task-file format (FORMATS.md "Datasets"), atomically.
    public func write(to path: String, extraMetadata: [String: String] = [:]) throws(IOError) {
        let classesJSON = String(
            decoding: (try? JSONSerialization.data(withJSONObject: classes)) ?? Data(), as: UTF8.self)
        var w = SafeTensorsWriter(metadata: ["classes": classesJSON, "source": source, "license": license])
        for (k, v) in extraMetadata { w.metadata[k] = v }
        for (prefix, s) in [("train", train), ("test", test)] + (validation.map { [("val", $0)] } ?? []) {
            try w.add(prefix + ".images", bytes: s.images, shape: [s.count, s.channels, s.height, s.width])
            try w.add(prefix + ".labels", int64s: s.labels.map { Int64($0) }, shape: [s.count])
        }
        try w.write(to: path)
    }
}

extension ImageFolder {
    static let sortedJSON: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    /// SHA-256 (hex) of the loader version, the preprocessing and every file's path relative to the
    /// folder, byte size and modification time (the bits of its seconds since 1970).
    static func cacheKey(_ folder: ImageFolder, preprocessing: Preprocessing) throws(IOError) -> String {
        var text = "vitmerge image folder v1\n"
        text += String(decoding: (try? sortedJSON.encode(preprocessing)) ?? Data(), as: UTF8.self) + "\n"
        text += folder.classes.joined(separator: "\u{0}") + "\n"
        for (name, split) in [("train", folder.train), ("test", folder.test), ("val", folder.validation)] {
            guard let split else { continue }
            text += "[\(name)]\n"
            for (file, label) in zip(split.files, split.labels) {
                let attributes: [FileAttributeKey: Any]
                do { attributes = try FileManager.default.attributesOfItem(atPath: file) } catch {
                    throw .cannotRead(path: file, reason: "cannot stat the file")
                }
                let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
                let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970.bitPattern ?? 0
                text += "\(file.dropFirst(folder.path.count))\t\(label)\t\(size)\t\(mtime)\n"
            }
        }
        return Array(text.utf8).withUnsafeBytes { ContentHash.sha256Hex($0) }
    }

    /// u8 [files.count, 3, H, W]: `preprocessing.evalCrop` of each file, decoded on `pool`'s threads
    /// in contiguous ranges (ggml's ith/nth). Throws the error of the first bad file in `files` order.
    public static func decode(
        _ files: [String], preprocessing: Preprocessing, pool: ThreadPool = .shared,
        progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil
    ) throws(IOError) -> [UInt8] {
        let size = 3 * preprocessing.inputSize[1] * preprocessing.inputSize[2], n = files.count
        var out = [UInt8](repeating: 0, count: n * size)
        let state = DecodeState(count: n)
        out.withUnsafeMutableBufferPointer { dst in
            let base = dst.baseAddress!
            pool.run(threads: max(1, min(pool.threads, n))) { ith, nth in
                // Skip files after a failed one only: every file before the first bad one is decoded,
                // so the error thrown does not depend on the thread count.
                for i in ThreadPool.split(n, ith, nth) where i < state.firstFailed.load(ordering: .relaxed) {
                    do throws(IOError) {
                        let crop = preprocessing.evalCrop(try RGBImage.read(path: files[i]))
                        crop.withUnsafeBufferPointer { (base + i * size).update(from: $0.baseAddress!, count: size) }
                    } catch {
                        state.fail(i, error)
                    }
                    state.finished(n, progress)
                }
            }
        }
        if let error = state.firstError() { throw error }
        return out
    }

    /// A progress callback printing "label done/total (rate/s)" to stderr at most every 0.25 s and
    /// at the end, overwriting the line.
    public static func stderrProgress(_ label: String) -> @Sendable (Int, Int) -> Void {
        let start = Date(), last = Mutex(Date.distantPast)
        return { done, total in
            let now = Date()
            let print = last.withLock { t in
                guard done == total || now.timeIntervalSince(t) >= 0.25 else { return false }
                t = now
                return true
            }
            guard print else { return }
            let rate = Double(done) / max(now.timeIntervalSince(start), 1e-9)
            let line = "\r\(label) \(done)/\(total) (\(Int(rate)) images/s)" + (done == total ? "\n" : "")
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}

/// Shared by the decoding threads: the first failed index, the errors by file index, the progress count.
final class DecodeState: Sendable {
    let firstFailed = Atomic<Int>(Int.max)
    let lock: Mutex<(done: Int, errors: [Int: IOError])> = Mutex((0, [:]))
    init(count: Int) {}

    func fail(_ i: Int, _ error: IOError) {
        lock.withLock { $0.errors[i] = error }
        firstFailed.min(i, ordering: .relaxed)
    }

    func finished(_ total: Int, _ progress: (@Sendable (Int, Int) -> Void)?) {
        lock.withLock { s in
            s.done += 1
            progress?(s.done, total)
        }
    }

    func firstError() -> IOError? { lock.withLock { s in s.errors.min { $0.key < $1.key }?.value } }
}
