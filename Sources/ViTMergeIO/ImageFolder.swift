import Foundation

/// A task in torchvision's ImageFolder layout: `DIR/train/<class>/…`, `DIR/test/<class>/…` and
/// optionally `DIR/val/<class>/…`, classes sorted by name (code points, as Python's `sorted`),
/// files found recursively under each class folder in `sorted(os.walk(…))` order. JPEG and PNG
/// files (`.jpg`, `.jpeg`, `.png`, any case) are images; other image extensions torchvision would
/// pick up (`.bmp`, `.webp`, `.tif`, …) and `.gif` are errors; any other file is ignored.
public struct ImageFolder: Sendable, Equatable {
    /// One split: the image paths and their labels (indices into `classes`), in load order.
    public struct Split: Sendable, Equatable {
        public var files: [String]
        public var labels: [Int32]
    }

    public let path: String
    public let classes: [String]
    public let train: Split
    public let test: Split
    public let validation: Split?

    /// Extensions decoded; extensions refused with a typed error.
    static let decoded: Set<String> = ["jpg", "jpeg", "png"]
    static let refused: Set<String> = ["gif", "bmp", "webp", "tif", "tiff", "ppm", "pgm", "pbm", "heic", "avif"]

    /// Whether `path` is a directory (a candidate image folder rather than a task file).
    public static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// Lists the folder's splits and classes; throws `IOError.invalidImageFolder` for a missing
    /// train or test split, an empty class folder, splits whose class lists differ, or a file in a
    /// refused format.
    public static func scan(_ path: String) throws(IOError) -> ImageFolder {
        guard isDirectory(path) else { throw .cannotRead(path: path, reason: "not a directory") }
        func split(_ name: String, required: Bool) throws(IOError) -> (classes: [String], split: Split)? {
            let dir = path + "/" + name
            guard isDirectory(dir) else {
                if !required { return nil }
                throw .invalidImageFolder(
                    path: path, reason: "no \(name)/ folder (an image folder needs train/ and test/, val/ is optional)",
                    hint: "arrange the images as \(path)/\(name)/<class>/<image>.jpg")
            }
            let classes = try subdirectories(dir)
            guard !classes.isEmpty else {
                throw .invalidImageFolder(
                    path: dir, reason: "no class folders", hint: "put each class's images in \(dir)/<class>/")
            }
            var files: [String] = [], labels: [Int32] = []
            for (label, cls) in classes.enumerated() {
                let found = try images(under: dir + "/" + cls)
                guard !found.isEmpty else {
                    throw .invalidImageFolder(
                        path: dir + "/" + cls, reason: "class folder '\(cls)' has no .jpg, .jpeg or .png file",
                        hint: "add images or remove the folder (from every split)")
                }
                files += found
                labels += [Int32](repeating: Int32(label), count: found.count)
            }
            return (classes, Split(files: files, labels: labels))
        }
        let train = try split("train", required: true)!, test = try split("test", required: true)!
        let validation = try split("val", required: false)
        for (name, other) in [("test", test.classes), ("val", validation?.classes)] {
            guard let other, other != train.classes else { continue }
            let missing = train.classes.filter { !other.contains($0) },
                extra = other.filter { !train.classes.contains($0) }
            throw .invalidImageFolder(
                path: path,
                reason: "train/ and \(name)/ have different classes (\(name)/ lacks \(missing), has extra \(extra))",
                hint: "every split needs the same class folders")
        }
        return ImageFolder(
            path: path, classes: train.classes, train: train.split, test: test.split, validation: validation?.split)
    }

    /// The images named by `paths`, in order: a file as given (decoded by its content), a directory
    /// as its JPEG and PNG files found recursively in `sorted(os.walk(…))` order (a file in a refused
    /// format inside it is an error, as in an image folder). A missing path or an empty directory is
    /// an error naming it.
    public static func imageFiles(_ paths: [String]) throws(IOError) -> [String] {
        var out: [String] = []
        for path in paths {
            if isDirectory(path) {
                let found = try images(under: path)
                guard !found.isEmpty else {
                    throw .invalidImageFolder(
                        path: path, reason: "no .jpg, .jpeg or .png file in it or below",
                        hint: "give image files or directories holding them")
                }
                out += found
            } else {
                guard FileManager.default.fileExists(atPath: path) else {
                    throw .cannotRead(path: path, reason: "no such file or directory")
                }
                out.append(path)
            }
        }
        return out
    }

    /// Python's string order: by code points (= UTF-8 byte order).
    static func sorted(_ names: [String]) -> [String] { names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } }

    static func entries(_ dir: String) throws(IOError) -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw .cannotRead(path: dir, reason: "cannot list the directory (\(error.localizedDescription))")
        }
    }

    /// Subdirectories of `dir` (following symlinks), sorted; hidden ones skipped.
    static func subdirectories(_ dir: String) throws(IOError) -> [String] {
        sorted(try entries(dir).filter { !$0.hasPrefix(".") && isDirectory(dir + "/" + $0) })
    }

    /// Images under `dir`, recursively, in `sorted(os.walk(dir))` order: directories by full path,
    /// files by name within each.
    static func images(under dir: String) throws(IOError) -> [String] {
        var dirs = [dir], stack = [dir]
        while let d = stack.popLast() {
            let subs = try subdirectories(d).map { d + "/" + $0 }
            dirs += subs
            stack += subs
        }
        var out: [String] = []
        for d in sorted(dirs) {
            for name in sorted(try entries(d)) where !isDirectory(d + "/" + name) {
                let ext = (name as NSString).pathExtension.lowercased()
                if decoded.contains(ext) { out.append(d + "/" + name) }
                if refused.contains(ext) {
                    throw .unsupportedImage(
                        path: d + "/" + name, format: ext.uppercased(),
                        hint: "only JPEG and PNG are decoded; convert it (e.g. Image.open(f).convert(\"RGB\")"
                            + ".save(\"x.png\")) or remove it")
                }
            }
        }
        return out
    }
}
