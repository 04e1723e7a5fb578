import Crypto

/// Content hashes of raw bytes: SHA-256 (FIPS 180-4) through swift-crypto (BoringSSL on Linux).
/// A task vector records the hash of its base's encoder bytes (FORMATS.md "Task vectors").
public enum ContentHash {
    /// SHA-256 of `bytes` as 64 lowercase hexadecimal digits.
    public static func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in SHA256.hash(data: bytes) {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
