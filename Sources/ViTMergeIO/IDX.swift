import CZlib
import Foundation

/// Reader for IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed: a 4-byte magic
/// (0, 0, type, rank), `rank` big-endian u32 dimensions, then the row-major data. Only unsigned-byte
/// data (type 0x08), rank 1…4, is accepted; sizes are checked before anything is allocated beyond
/// `maxBytes`.
public enum IDX {
    /// True when `path` is a directory holding MNIST-layout IDX files (`train-images-idx3-ubyte`, raw or .gz).
    public static func isTaskDirectory(_ path: String) -> Bool {
        ["", ".gz"].contains { FileManager.default.fileExists(atPath: "\(path)/train-images-idx3-ubyte\($0)") }
    }

    /// Largest decompressed file accepted (1 GiB; the whole of MNIST is 55 MB).
    public static let maxBytes = 1 << 30

    /// The dimensions and bytes of the IDX file at `path`.
    public static func read(path: String) throws -> (shape: [Int], data: [UInt8]) {
        guard let raw = FileManager.default.contents(atPath: path) else {
            throw IOError.cannotRead(path: path, reason: "no such file or not readable")
        }
        return try decode([UInt8](raw), path: path)
    }

    /// An IDX file's bytes, raw or gzip-compressed.
    public static func decode(_ raw: [UInt8], path: String) throws -> (shape: [Int], data: [UInt8]) {
        let bytes = raw.count >= 2 && raw[0] == 0x1F && raw[1] == 0x8B ? try gunzip(Data(raw), path: path) : raw
        return try parse(bytes, path: path)
    }

    /// Parses an uncompressed IDX image.
    public static func parse(_ b: [UInt8], path: String) throws -> (shape: [Int], data: [UInt8]) {
        func bad(_ reason: String) -> IOError {
            .invalidFile(
                path: path, reason: reason, hint: "give an IDX file as distributed with MNIST (optionally .gz)")
        }
        guard b.count >= 4 else { throw bad("\(b.count) bytes is too short for an IDX header") }
        guard b[0] == 0, b[1] == 0 else { throw bad("the magic number does not start with two zero bytes") }
        guard b[2] == 0x08 else { throw bad(String(format: "element type 0x%02X is not unsigned byte (0x08)", b[2])) }
        let rank = Int(b[3])
        guard (1...4).contains(rank) else { throw bad("rank \(rank) is outside 1…4") }
        guard b.count >= 4 + 4 * rank else {
            throw bad("the header declares \(rank) dimensions but the file ends inside them")
        }
        var shape: [Int] = []
        var count = 1
        for i in 0..<rank {
            let o = 4 + 4 * i
            let dim = Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= maxBytes else {
                throw bad("dimensions \(shape + [dim]) exceed \(maxBytes) bytes")
            }
            shape.append(dim)
            count = product
        }
        let start = 4 + 4 * rank
        guard b.count - start == count else {
            throw bad("dimensions \(shape) need \(count) data bytes but the file has \(b.count - start)")
        }
        return (shape, Array(b[start...]))
    }

    /// Inflates a gzip stream, refusing outputs above `maxBytes + 64` bytes.
    static func gunzip(_ data: Data, path: String) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw IOError.cannotRead(path: path, reason: "zlib could not initialize")
        }
        defer { inflateEnd(&stream) }
        let limit = maxBytes + 64
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        try data.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: src.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(src.count)
            repeat {
                let produced: Int = chunk.withUnsafeMutableBufferPointer { buf in
                    stream.next_out = buf.baseAddress
                    stream.avail_out = uInt(buf.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return buf.count - Int(stream.avail_out)
                }
                guard status == Z_OK || status == Z_STREAM_END || (status == Z_BUF_ERROR && produced > 0) else {
                    throw IOError.invalidFile(
                        path: path, reason: "gzip data is corrupt or truncated (zlib status \(status))",
                        hint: "re-download or re-install the file")
                }
                out.append(contentsOf: chunk[0..<produced])
                guard out.count <= limit else {
                    throw IOError.invalidFile(
                        path: path, reason: "decompresses to more than \(limit) bytes",
                        hint: "IDX files above 1 GiB are not supported")
                }
                if status == Z_OK && produced == 0 && stream.avail_in == 0 {
                    throw IOError.invalidFile(
                        path: path, reason: "gzip stream ends early (truncated file)",
                        hint: "re-download or re-install the file")
                }
            } while status != Z_STREAM_END
        }
        return out
    }

    /// Images [N, rows, cols] and labels [N] from a pair of IDX files as labelled 1-channel images.
    public static func labeledImages(images imagesPath: String, labels labelsPath: String) throws -> LabeledImages {
        let (ishape, pixels) = try read(path: imagesPath)
        let (lshape, labels) = try read(path: labelsPath)
        guard ishape.count == 3, ishape[1] > 0, ishape[2] > 0 else {
            throw IOError.invalidFile(
                path: imagesPath, reason: "image file has shape \(ishape), expected [N, rows, cols]",
                hint: "pass the *-images-idx3-ubyte file as images")
        }
        guard lshape == [ishape[0]] else {
            throw IOError.invalidFile(
                path: labelsPath, reason: "label file has shape \(lshape) but the images are \(ishape)",
                hint: "pass the matching *-labels-idx1-ubyte file")
        }
        return LabeledImages(
            count: ishape[0], channels: 1, height: ishape[1], width: ishape[2], images: pixels,
            labels: labels.map { Int32($0) })
    }
}

extension TaskDataset {
    /// A task from a directory holding the four MNIST-layout IDX files
    /// (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
    /// `t10k-labels-idx1-ubyte`, each optionally `.gz`), e.g. Debian's
    /// /usr/share/datasets/fashion-mnist. Classes are named "0"… up to the largest label.
    public static func loadIDX(directory: String) throws -> TaskDataset {
        func file(_ stem: String) throws -> String {
            for name in [stem, stem + ".gz"] where FileManager.default.fileExists(atPath: "\(directory)/\(name)") {
                return "\(directory)/\(name)"
            }
            throw IOError.cannotRead(
                path: "\(directory)/\(stem)[.gz]",
                reason:
                    "missing: an IDX task directory needs train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                    + "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (optionally .gz)")
        }
        let train = try IDX.labeledImages(
            images: try file("train-images-idx3-ubyte"), labels: try file("train-labels-idx1-ubyte"))
        let test = try IDX.labeledImages(
            images: try file("t10k-images-idx3-ubyte"), labels: try file("t10k-labels-idx1-ubyte"))
        guard (train.height, train.width) == (test.height, test.width) else {
            throw IOError.invalidFile(
                path: directory, reason: "train and test images differ in size", hint: "use the files of one dataset")
        }
        let classes = Int((train.labels + test.labels).max() ?? 0) + 1
        let name = URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent
        return TaskDataset(
            name: name, classes: (0..<classes).map(String.init), source: directory,
            license: "see the dataset's own license",
            train: train, test: test, validation: nil)
    }

    /// A task file (`.safetensors`, FORMATS.md) or a directory of MNIST-layout IDX files.
    public static func open(path: String) throws -> TaskDataset {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return try loadIDX(directory: path)
        }
        return try load(path: path)
    }
}
