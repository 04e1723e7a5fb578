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
        guard let (shape, start, count) = try header(b, path: path) else {
            let rank = b.count >= 4 ? Int(b[3]) : 0
            throw bad(
                b.count < 4
                    ? "\(b.count) bytes is too short for an IDX header"
                    : "the header declares \(rank) dimensions but the file ends inside them", path)
        }
        guard b.count - start == count else {
            throw bad("dimensions \(shape) need \(count) data bytes but the file has \(b.count - start)", path)
        }
        return (shape, Array(b[start...]))
    }

    static func bad(_ reason: String, _ path: String) -> IOError {
        .invalidFile(path: path, reason: reason, hint: "give an IDX file as distributed with MNIST (optionally .gz)")
    }

    /// The dimensions, data offset and data size the header at the start of `b` declares; nil while
    /// `b` ends inside the header. Throws for a bad header or one declaring more than `maxBytes`.
    static func header(_ b: [UInt8], path: String) throws -> (shape: [Int], start: Int, count: Int)? {
        if b.count >= 1 && b[0] != 0 || b.count >= 2 && b[1] != 0 {
            throw bad("the magic number does not start with two zero bytes", path)
        }
        guard b.count >= 4 else { return nil }
        guard b[2] == 0x08 else {
            throw bad(String(format: "element type 0x%02X is not unsigned byte (0x08)", b[2]), path)
        }
        let rank = Int(b[3])
        guard (1...4).contains(rank) else { throw bad("rank \(rank) is outside 1…4", path) }
        guard b.count >= 4 + 4 * rank else { return nil }
        var shape: [Int] = []
        var count = 1
        for i in 0..<rank {
            let o = 4 + 4 * i
            let dim = Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= maxBytes else {
                throw bad("dimensions \(shape + [dim]) exceed \(maxBytes) bytes", path)
            }
            shape.append(dim)
            count = product
        }
        return (shape, 4 + 4 * rank, count)
    }

    /// Deflate's densest output per input byte (zlib's "1032:1"), with slack for gzip's framing.
    static func maxInflated(_ compressed: Int) -> Int { 1032 * compressed + (1 << 16) }

    /// Inflates a gzip-compressed IDX file. The output is bounded before it is allocated: by the size
    /// its IDX header declares (checked as soon as the header is inflated; the file is refused if the
    /// declared size exceeds `maxBytes` or what the compressed size can hold) and by `maxBytes`.
    static func gunzip(_ data: Data, path: String) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw IOError.cannotRead(path: path, reason: "zlib could not initialize")
        }
        defer { inflateEnd(&stream) }
        var limit = 4 + 16  // until the header is known: the largest IDX header
        var declared = false
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        try data.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: src.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(src.count)
            repeat {
                // Never inflate past the limit: at most one byte more, to tell "too long" from "exact".
                let room = min(chunk.count, limit + 1 - out.count)
                let produced: Int = chunk.withUnsafeMutableBufferPointer { buf in
                    stream.next_out = buf.baseAddress
                    stream.avail_out = uInt(room)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return room - Int(stream.avail_out)
                }
                guard status == Z_OK || status == Z_STREAM_END || (status == Z_BUF_ERROR && produced > 0) else {
                    throw IOError.invalidFile(
                        path: path, reason: "gzip data is corrupt or truncated (zlib status \(status))",
                        hint: "re-download or re-install the file")
                }
                out.append(contentsOf: chunk[0..<produced])
                if !declared, let (shape, start, count) = try header(out, path: path) {
                    guard start + count <= maxInflated(src.count) else {
                        throw bad(
                            "the header declares dimensions \(shape) (\(count) bytes), more than its "
                                + "\(src.count) compressed bytes can hold (a corrupt file or a decompression bomb)",
                            path)
                    }
                    (limit, declared) = (start + count, true)
                    out.reserveCapacity(limit + 1)
                }
                // (Once 20 bytes are out the header is known, so `limit` is the declared size here.)
                guard out.count <= limit else {
                    throw bad("decompresses to more than the \(limit) bytes its header declares", path)
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
