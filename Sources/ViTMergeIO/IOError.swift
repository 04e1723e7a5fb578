import Foundation

/// Errors from reading and writing files. Each case names the file (and tensor) and says what to do.
public enum IOError: Error, CustomStringConvertible, Equatable {
    case cannotRead(path: String, reason: String)
    case cannotWrite(path: String, reason: String)
    /// The device holding `directory` is full, or a file size limit (ulimit -f, quota) was reached.
    case noSpace(path: String, directory: String, reason: String)
    /// `directory` is on a read-only file system or the user may not write to it.
    case notWritable(path: String, directory: String, reason: String)
    /// The file is not what it claims to be (truncated, bad header, bad offsets, …).
    case invalidFile(path: String, reason: String, hint: String)
    case missingTensor(path: String, tensor: String, available: [String])
    case unknownTensor(path: String, tensor: String, hint: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], found: [Int])
    case dtypeMismatch(path: String, tensor: String, expected: String, found: String)
    case configMismatch(path: String, file: String, given: String)
    case duplicateTensor(name: String)
    /// An image file that its decoder (libjpeg-turbo, libpng) rejects: truncated or corrupt.
    case invalidImage(path: String, reason: String)
    /// A valid image in a format or color model that is not decoded (GIF, CMYK JPEG, 16-bit gray PNG, …).
    case unsupportedImage(path: String, format: String, hint: String)
    /// An image-folder task that is not in torchvision's ImageFolder layout (a missing split, an empty
    /// class folder, splits with different classes, …).
    case invalidImageFolder(path: String, reason: String, hint: String)
    /// The file asks for a model feature or a format ViTMerge does not implement (refused, never approximated).
    case unsupported(path: String, what: String, hint: String)

    public var description: String {
        switch self {
        case .cannotRead(let path, let reason): "cannot read \(path): \(reason); check the path and permissions"
        case .cannotWrite(let path, let reason):
            "cannot write \(path): \(reason); check the directory exists and is writable"
        case .noSpace(let path, let directory, let reason):
            "cannot write \(path): \(reason); the device holding \(directory) is full or a file size limit "
                + "(ulimit -f, quota) was reached: free space or choose another output directory"
        case .notWritable(let path, let directory, let reason):
            "cannot write \(path): \(reason); \(directory) is read-only or not writable: choose another output "
                + "directory or make it writable"
        case .invalidFile(let path, let reason, let hint): "\(path): \(reason); \(hint)"
        case .missingTensor(let path, let tensor, let available):
            "\(path): no tensor '\(tensor)' (it has \(available.prefix(6).joined(separator: ", "))"
                + "\(available.count > 6 ? ", …" : "")); check the file is the right kind and complete"
        case .unknownTensor(let path, let tensor, let hint): "\(path): unexpected tensor '\(tensor)'; \(hint)"
        case .shapeMismatch(let path, let tensor, let expected, let found):
            "\(path): tensor '\(tensor)' has shape \(Self.shape(found)), expected \(Self.shape(expected)); "
                + "check the file matches the model config"
        case .dtypeMismatch(let path, let tensor, let expected, let found):
            "\(path): tensor '\(tensor)' has dtype \(found), expected \(expected); re-export it as \(expected)"
        case .configMismatch(let path, let file, let given):
            "\(path): its config \(file) differs from the given config \(given); "
                + "drop the config option or use the matching file"
        case .duplicateTensor(let name): "tensor '\(name)' added twice; every tensor name must be unique"
        case .invalidImage(let path, let reason):
            "\(path): cannot decode the image: \(reason); re-save it (e.g. with Pillow) or remove it from the folder"
        case .unsupportedImage(let path, let format, let hint): "\(path): unsupported image (\(format)); \(hint)"
        case .invalidImageFolder(let path, let reason, let hint): "\(path): \(reason); \(hint)"
        case .unsupported(let path, let what, let hint):
            "\(path): \(what) is not implemented in ViTMerge (refused rather than approximated); \(hint)"
        }
    }

    static func shape(_ s: [Int]) -> String { "[" + s.map { $0 < 0 ? "*" : String($0) }.joined(separator: ", ") + "]" }
}
