import Foundation

/// Element types ViTMerge reads (F16 and BF16 only as floats, widened to Float32) and writes.
public enum DType: String, Sendable {
    case f32 = "F32", f64 = "F64", i64 = "I64", i32 = "I32", u8 = "U8", f16 = "F16", bf16 = "BF16"
    public var size: Int {
        switch self {
        case .f32, .i32: 4
        case .f64, .i64: 8
        case .f16, .bf16: 2
        case .u8: 1
        }
    }

    /// The float types `floats`/`copyFloats` accept: F32 as stored, F16 and BF16 widened exactly.
    public static let floatTypes: [DType] = [.f32, .f16, .bf16]
}

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Absolute byte offset in the file.
    public let offset: Int
    public let byteCount: Int
    public var count: Int { shape.reduce(1, *) }
}

/// A safetensors file read once into memory and validated strictly: header bounds, JSON, dtypes,
/// shapes, offsets inside the data section, sizes and overlaps. Hostile input gives an
/// `IOError`, never a trap.
public final class SafeTensorsFile: @unchecked Sendable {
    public static let maxHeaderBytes = 100 << 20

    public let path: String
    public let metadata: [String: String]
    private let bytes: [UInt8]
    private let entries: [String: TensorInfo]
    public let names: [String]
    /// Bytes of tensor data in the file (after the header).
    public var dataByteCount: Int { entries.values.reduce(0) { $0 + $1.byteCount } }

    public static func read(path: String) throws(IOError) -> SafeTensorsFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .cannotRead(
                path: path,
                reason: FileManager.default.fileExists(atPath: path)
                    ? "permission denied or unreadable" : "no such file")
        }
        return try SafeTensorsFile(bytes: [UInt8](data), path: path)
    }

    public init(bytes: [UInt8], path: String) throws(IOError) {
        func bad(_ reason: String) -> IOError {
            .invalidFile(
                path: path, reason: reason,
                hint: "the file is not valid safetensors (truncated or corrupt?); re-create it")
        }
        self.path = path
        self.bytes = bytes
        guard bytes.count >= 8 else { throw bad("only \(bytes.count) bytes, shorter than the 8-byte header length") }
        var n: UInt64 = 0
        for i in (0..<8).reversed() { n = n << 8 | UInt64(bytes[i]) }
        guard n >= 2, n <= UInt64(Self.maxHeaderBytes), n <= UInt64(bytes.count - 8) else {
            throw bad(
                "header length \(n) is outside 2…min(\(Self.maxHeaderBytes), file size − 8 = \(bytes.count - 8))")
        }
        let headerEnd = 8 + Int(n)
        guard let json = HeaderJSON.parse(bytes[8..<headerEnd]) else { throw bad("header is not valid JSON") }
        guard let header = json.object else { throw bad("header is not a JSON object") }
        var metadata: [String: String] = [:]
        if let meta = header["__metadata__"] {
            guard let m = meta.object else { throw bad("__metadata__ is not an object") }
            for (k, v) in m {
                guard let s = v.string else { throw bad("__metadata__['\(k)'] is not a string") }
                metadata[k] = s
            }
        }
        let dataSize = bytes.count - headerEnd
        var entries: [String: TensorInfo] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let e = value.object else { throw bad("entry '\(name)' is not an object") }
            guard let dt = e["dtype"]?.string else { throw bad("tensor '\(name)' has no string dtype") }
            guard let dtype = DType(rawValue: dt) else {
                throw .invalidFile(
                    path: path, reason: "tensor '\(name)' has dtype \(dt)",
                    hint: "ViTMerge reads F32, F16, BF16 (as float32), F64, I64, I32 and U8; convert the tensor, "
                        + "e.g. with safetensors.torch: {k: v.float() for k, v in tensors.items()}")
            }
            guard let shapeJSON = e["shape"]?.array, let offsets = e["data_offsets"]?.array, offsets.count == 2 else {
                throw bad("tensor '\(name)' needs 'shape' (list) and 'data_offsets' ([begin, end])")
            }
            var shape: [Int] = []
            var count = 1
            for d in shapeJSON {
                guard let v = d.int, v >= 0, v < 1 << 40 else {
                    throw bad("tensor '\(name)' has an invalid dimension \(d)")
                }
                let (p, overflow) = count.multipliedReportingOverflow(by: v)
                guard !overflow, p <= dataSize else {
                    throw bad("tensor '\(name)' shape \(HeaderJSON.array(shapeJSON)) is larger than the file")
                }
                shape.append(v)
                count = p
            }
            guard let begin = offsets[0].int, let end = offsets[1].int else {
                throw bad("tensor '\(name)' has non-integer data_offsets")
            }
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw bad(
                    "tensor '\(name)' data_offsets [\(begin), \(end)] fall outside the \(dataSize)-byte data section")
            }
            guard end - begin == count * dtype.size else {
                throw bad(
                    "tensor '\(name)' has \(end - begin) bytes but shape \(shape) of \(dt) needs \(count * dtype.size)")
            }
            entries[name] = TensorInfo(
                name: name, dtype: dtype, shape: shape, offset: headerEnd + begin, byteCount: end - begin)
        }
        let sorted = entries.values.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.offset + a.byteCount > b.offset {
            throw bad("tensors '\(a.name)' and '\(b.name)' overlap")
        }
        self.metadata = metadata
        self.entries = entries
        self.names = entries.keys.sorted()
    }

    public func info(_ name: String) -> TensorInfo? { entries[name] }
    public func contains(_ name: String) -> Bool { entries[name] != nil }

    private func entry(_ name: String, _ dtypes: [DType], shape: [Int]?) throws(IOError) -> TensorInfo {
        guard let e = entries[name] else { throw .missingTensor(path: path, tensor: name, available: names) }
        guard dtypes.contains(e.dtype) else {
            throw .dtypeMismatch(
                path: path, tensor: name, expected: dtypes.map(\.rawValue).joined(separator: " or "),
                found: e.dtype.rawValue)
        }
        if let shape, shape != e.shape {
            throw .shapeMismatch(path: path, tensor: name, expected: shape, found: e.shape)
        }
        return e
    }

    private func copyBytes(_ e: TensorInfo, to dst: UnsafeMutableRawPointer) {
        bytes.withUnsafeBytes { src in dst.copyMemory(from: src.baseAddress! + e.offset, byteCount: e.byteCount) }
    }

    /// An F32, F16 or BF16 tensor's values as Float32 (half types widened exactly, `HalfFloat`);
    /// with `shape`, the stored shape must match exactly.
    public func floats(_ name: String, shape: [Int]? = nil) throws(IOError) -> [Float] {
        let e = try entry(name, DType.floatTypes, shape: shape)
        var out = [Float](repeating: 0, count: e.count)
        out.withUnsafeMutableBufferPointer { copyFloats(e, to: $0.baseAddress!) }
        return out
    }

    /// Copies an F32, F16 or BF16 tensor of exactly `shape` into `into` as Float32.
    public func copyFloats(_ name: String, into: UnsafeMutablePointer<Float>, shape: [Int]) throws(IOError) {
        let e = try entry(name, DType.floatTypes, shape: shape)
        copyFloats(e, to: into)
    }

    private func copyFloats(_ e: TensorInfo, to dst: UnsafeMutablePointer<Float>) {
        switch e.dtype {
        case .f16, .bf16:
            // Little-endian 16-bit words read byte by byte: the data offsets need not be aligned.
            bytes.withUnsafeBufferPointer { src in
                let s = src.baseAddress! + e.offset
                if e.dtype == .f16 {
                    for i in 0..<e.count { dst[i] = HalfFloat.float(f16: UInt16(s[2 * i]) | UInt16(s[2 * i + 1]) << 8) }
                } else {
                    for i in 0..<e.count {
                        dst[i] = HalfFloat.float(bf16: UInt16(s[2 * i]) | UInt16(s[2 * i + 1]) << 8)
                    }
                }
            }
        default: copyBytes(e, to: UnsafeMutableRawPointer(dst))
        }
    }

    /// An I64 (or I32, widened) tensor's values.
    public func int64s(_ name: String, shape: [Int]? = nil) throws(IOError) -> [Int64] {
        let e = try entry(name, [.i64, .i32], shape: shape)
        if e.dtype == .i32 {
            var v = [Int32](repeating: 0, count: e.count)
            v.withUnsafeMutableBytes { copyBytes(e, to: $0.baseAddress!) }
            return v.map { Int64(Int32(littleEndian: $0)) }
        }
        var v = [Int64](repeating: 0, count: e.count)
        v.withUnsafeMutableBytes { copyBytes(e, to: $0.baseAddress!) }
        return v.map { Int64(littleEndian: $0) }
    }

    /// A U8 tensor's values.
    public func bytes(_ name: String, shape: [Int]? = nil) throws(IOError) -> [UInt8] {
        let e = try entry(name, [.u8], shape: shape)
        return Array(bytes[e.offset..<(e.offset + e.byteCount)])
    }

    /// An F32 (or F16, BF16) scalar (shape [] or [1]).
    public func scalar(_ name: String) throws(IOError) -> Float {
        let e = try entry(name, DType.floatTypes, shape: nil)
        guard e.count == 1 else { throw .shapeMismatch(path: path, tensor: name, expected: [], found: e.shape) }
        return try floats(name)[0]
    }
}

/// Builds a safetensors file: tensors in sorted name order, header JSON with sorted keys padded
/// with spaces to a multiple of 8 bytes, written atomically (`AtomicFile`).
public struct SafeTensorsWriter {
    public var metadata: [String: String]
    private var tensors: [String: (dtype: DType, shape: [Int], data: [UInt8])] = [:]

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    private mutating func put(_ name: String, _ dtype: DType, _ shape: [Int], _ raw: [UInt8]) throws(IOError) {
        guard tensors[name] == nil, name != "__metadata__" else { throw .duplicateTensor(name: name) }
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) * dtype.size == raw.count else {
            throw .invalidFile(
                path: name, reason: "\(raw.count) bytes do not match shape \(shape) of \(dtype.rawValue)",
                hint: "pass values matching the shape")
        }
        tensors[name] = (dtype, shape, raw)
    }

    public mutating func add(_ name: String, floats: UnsafeBufferPointer<Float>, shape: [Int]) throws(IOError) {
        try put(name, .f32, shape, [UInt8](UnsafeRawBufferPointer(floats)))
    }
    public mutating func add(_ name: String, floats: [Float], shape: [Int]) throws(IOError) {
        try put(name, .f32, shape, floats.withUnsafeBytes { [UInt8]($0) })
    }
    public mutating func add(_ name: String, int64s: [Int64], shape: [Int]) throws(IOError) {
        let le = int64s.map(\.littleEndian)
        try put(name, .i64, shape, le.withUnsafeBytes { [UInt8]($0) })
    }
    public mutating func add(_ name: String, bytes: [UInt8], shape: [Int]) throws(IOError) {
        try put(name, .u8, shape, bytes)
    }
    /// A tensor of 16-bit floats given as their bit patterns (`dtype` .f16 or .bf16), stored little-endian.
    public mutating func add(_ name: String, halfBits: [UInt16], dtype: DType, shape: [Int]) throws(IOError) {
        precondition(dtype == .f16 || dtype == .bf16, "add(halfBits:): dtype must be F16 or BF16")
        let le = halfBits.map(\.littleEndian)
        try put(name, dtype, shape, le.withUnsafeBytes { [UInt8]($0) })
    }

    public func serialized() -> [UInt8] {
        let names = tensors.keys.sorted()
        var out = Self.header(
            metadata: metadata, tensors: names.map { (name: $0, dtype: tensors[$0]!.dtype, shape: tensors[$0]!.shape) })
        for name in names { out += tensors[name]!.data }
        return out
    }

    /// The 8-byte length and the header (JSON with sorted keys, padded with spaces to a multiple
    /// of 8) of a file holding `tensors` in this order, their data packed one after the other.
    static func header(metadata: [String: String], tensors: [(name: String, dtype: DType, shape: [Int])]) -> [UInt8] {
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.keys.sorted().map { "\(Self.quote($0)):\(Self.quote(metadata[$0]!))" }.joined(
                separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var offset = 0
        for t in tensors {
            let shape = t.shape.map(String.init).joined(separator: ","), bytes = t.shape.reduce(1, *) * t.dtype.size
            parts.append(
                "\(Self.quote(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],"
                    + "\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        var h = Array(header.utf8)
        while (8 + h.count) % 8 != 0 { h.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + h.count)
        var n = UInt64(h.count)
        for _ in 0..<8 { out.append(UInt8(n & 0xff)); n >>= 8 }
        return out + h
    }

    /// Writes the file atomically (`AtomicFile`): never leaves a partial or temporary file behind.
    public func write(to path: String) throws(IOError) { try AtomicFile.write(serialized(), to: path) }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

/// A safetensors file too large to hold in memory, written as it is computed: every tensor is
/// declared up front (name, dtype, shape; stored in sorted name order, as `SafeTensorsWriter`
/// does), then F32 data is written at any element offset of any tensor, in any order, through an
/// `AtomicFile.Pending`; `finish` puts the file in place. Nothing is at `path` before `finish`
/// succeeds; a writer dropped before it leaves nothing behind. Bytes never written are zero.
public final class SafeTensorsStreamWriter {
    let file: AtomicFile.Pending
    /// Byte offset in the file and element count of each tensor.
    let placement: [String: (offset: Int, count: Int)]

    public init(
        path: String, metadata: [String: String], tensors: [(name: String, dtype: DType, shape: [Int])]
    ) throws(IOError) {
        let sorted = tensors.sorted { $0.name < $1.name }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.name == b.name {
            throw .duplicateTensor(name: a.name)
        }
        let header = SafeTensorsWriter.header(metadata: metadata, tensors: sorted)
        var placement: [String: (offset: Int, count: Int)] = [:], offset = header.count
        for t in sorted {
            let count = t.shape.reduce(1, *)
            placement[t.name] = (offset, count)
            offset += count * t.dtype.size
        }
        self.placement = placement
        file = try AtomicFile.Pending(path: path, size: offset)
        var failure: IOError?
        header.withUnsafeBytes { b in
            do throws(IOError) { try file.write(b, at: 0) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Writes `floats` as elements `element..<element + floats.count` of F32 tensor `name`.
    public func write(_ name: String, floats: UnsafeBufferPointer<Float>, at element: Int) throws(IOError) {
        guard let p = placement[name] else { preconditionFailure("SafeTensorsStreamWriter: no tensor \(name)") }
        precondition(element >= 0 && element + floats.count <= p.count, "SafeTensorsStreamWriter: \(name) overflows")
        try file.write(UnsafeRawBufferPointer(floats), at: p.offset + element * 4)
    }

    /// Makes the file durable and renames it over `path` (`AtomicFile.Pending.commit`).
    public func finish() throws(IOError) { try file.commit() }
}
