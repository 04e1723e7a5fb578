import Foundation

/// Errors from reading and writing files. Each case names the file (and tensor) and says what to do.
public enum IOError: Error, CustomStringConvertible {
    case cannotRead(path: String, reason: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotRead(let path, let reason): "cannot read \(path): \(reason); check the path and permissions"
        case .cannotWrite(let path, let reason): "cannot write \(path): \(reason); check the directory exists and is writable"
        }
    }
}
