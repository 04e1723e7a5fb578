import CImage
import Foundation

/// An 8-bit RGB image: `pixels[height][width][3]`, rows top to bottom, channels interleaved.
public struct RGBImage: Sendable, Equatable {
    public let width, height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 1 && height >= 1 && pixels.count == width * height * 3, "RGBImage: bad size")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The file formats told apart by their first bytes.
    public enum Format: String, Sendable {
        case jpeg, png, gif, bmp, webp, tiff, unknown

        /// The format whose magic bytes start `bytes`.
        public init(magic bytes: [UInt8]) {
            func starts(_ m: [UInt8], at offset: Int = 0) -> Bool {
                bytes.count >= offset + m.count && Array(bytes[offset..<(offset + m.count)]) == m
            }
            self =
                if starts([0xFF, 0xD8, 0xFF]) {
                    .jpeg
                } else if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
                    .png
                } else if starts(Array("GIF8".utf8)) { .gif } else if starts(Array("BM".utf8)) {
                    .bmp
                } else if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) {
                    .webp
                } else if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { .tiff } else {
                    .unknown
                }
        }
    }

    /// Reads and decodes a JPEG or PNG file into RGB as Pillow's `Image.open(path).convert("RGB")`
    /// (gray replicated, alpha dropped; EXIF orientation, gamma and ICC profiles ignored, as Pillow).
    public static func read(path: String) throws(IOError) -> RGBImage {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .cannotRead(path: path, reason: "no such file or not readable")
        }
        return try decode([UInt8](data), path: path)
    }

    /// `read(path:)` for bytes already in memory (`path` names the file in errors).
    public static func decode(_ bytes: [UInt8], path: String) throws(IOError) -> RGBImage {
        let format = Format(magic: bytes)
        guard format == .jpeg || format == .png else {
            let hint = "convert it to PNG or JPEG (e.g. Image.open(f).convert(\"RGB\").save(\"x.png\")) or remove it"
            if format == .unknown {
                throw .unsupportedImage(path: path, format: "not a JPEG or PNG file (unknown first bytes)", hint: hint)
            }
            throw .unsupportedImage(path: path, format: format.rawValue.uppercased(), hint: hint)
        }
        var image = vm_image()
        let status = bytes.withUnsafeBufferPointer { b in
            format == .jpeg
                ? vm_decode_jpeg(b.baseAddress, b.count, &image) : vm_decode_png(b.baseAddress, b.count, &image)
        }
        defer { vm_image_free(&image) }
        let message = withUnsafeBytes(of: image.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        switch status {
        case Int32(VM_IMAGE_OK.rawValue):
            let count = Int(image.width) * Int(image.height) * 3
            let pixels = [UInt8](UnsafeBufferPointer(start: image.rgb, count: count))
            return RGBImage(width: Int(image.width), height: Int(image.height), pixels: pixels)
        case Int32(VM_IMAGE_UNSUPPORTED.rawValue):
            throw .unsupportedImage(
                path: path, format: message,
                hint: "convert it to 8-bit RGB (e.g. Image.open(f).convert(\"RGB\").save(f)) or remove it")
        case Int32(VM_IMAGE_TOO_LARGE.rawValue):
            // Refused from the header, before any pixel memory is allocated.
            throw .unsupportedImage(
                path: path, format: message, hint: "downscale it (e.g. Image.open(f).reduce(8).save(f)) or remove it")
        case Int32(VM_IMAGE_NO_MEMORY.rawValue): throw .cannotRead(path: path, reason: "out of memory decoding")
        default: throw .invalidImage(path: path, reason: "\(format.rawValue.uppercased()): \(message)")
        }
    }
}
