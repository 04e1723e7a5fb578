import Foundation

// libFuzzer entry points (used when built by scripts/fuzz.sh, i.e. with -sanitize=fuzzer and
// -DVITMERGE_LIBFUZZER). The target is chosen by VITMERGE_FUZZ_TARGET, read once.

/// The target libFuzzer runs: VITMERGE_FUZZ_TARGET, one of `fuzzTargets`' names.
let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["VITMERGE_FUZZ_TARGET"] ?? ""
    guard let t = fuzzTargets.first(where: { $0.name == name }) else {
        let names = fuzzTargets.map(\.name).joined(separator: " ")
        FileHandle.standardError.write(Data("vitmerge-fuzz: set VITMERGE_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedTarget.run(size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
