import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

// vitmerge-fuzz: fuzzing of the file readers (FuzzTargets.swift), in two builds.
//
// With libFuzzer (scripts/fuzz.sh: `swift build -Xswiftc -sanitize=fuzzer,address -Xswiftc
// -DVITMERGE_LIBFUZZER`; the Linux toolchain ships libFuzzer): coverage-guided fuzzing under
// AddressSanitizer, one target per process, chosen by VITMERGE_FUZZ_TARGET; every other argument is
// libFuzzer's (corpus directories, -max_total_time=N, -dict=F, -minimize_crash=1, …).
//
// Without it (a plain `swift build`, e.g. a toolchain without libFuzzer such as Xcode's): a blind
// mutation fuzzer that needs nothing. Each target first runs every file in fuzz/corpus/<target>/ and
// fuzz/regressions/<target>/ (so it also replays the committed crash inputs), then mutated copies
// (bit flips, boundary bytes, truncation, insertion, duplication, splicing, and edits of the length
// fields these formats have). A typed error is a pass; any trap ends the process, after the input
// that caused it has been written to fuzz-crash-<target>.bin.
//
//   swift run vitmerge-fuzz [--seconds N] [--seed S] [safetensors checkpoint config hub idx task image golden ...]

#if VITMERGE_LIBFUZZER
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    _ = selectedTarget  // refuses a missing or unknown VITMERGE_FUZZ_TARGET before libFuzzer starts
    var fuzzArgc = CommandLine.argc
    var fuzzArgv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in fuzzOneInput(data, size) })
#else
    // The input being run, for the crash handler (written with write(2), which is async-signal-safe).
    nonisolated(unsafe) var current: UnsafeMutablePointer<UInt8> = .allocate(capacity: 1)
    nonisolated(unsafe) var currentCount = 0
    nonisolated(unsafe) var crashFile: UnsafeMutablePointer<CChar> = strdup("fuzz-crash.bin")!

    func installCrashHandler() {
        for sig in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT] {
            signal(sig) { s in
                let fd = open(crashFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                if fd >= 0 { _ = write(fd, current, currentCount); close(fd) }
                let msg = "vitmerge-fuzz: crash (signal); input written\n"
                _ = msg.withCString { write(2, $0, strlen($0)) }
                _exit(128 + s)
            }
        }
    }

    func seeds(_ target: String, repo: URL) -> [[UInt8]] {
        ["fuzz/corpus", "fuzz/regressions"].flatMap { sub in
            let dir = repo.appendingPathComponent("\(sub)/\(target)")
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.sorted() ?? []
            return files.compactMap {
                FileManager.default.contents(atPath: dir.appendingPathComponent($0).path).map { [UInt8]($0) }
            }
        }
    }

    func mutate(_ input: [UInt8], _ rng: inout RNG, _ corpus: [[UInt8]]) -> [UInt8] {
        var b = input
        let rounds = 1 + rng.int(below: 4)
        for _ in 0..<rounds {
            let n = b.count
            switch rng.int(below: 10) {
            case 0 where n > 0: b[rng.int(below: n)] ^= UInt8(1 << rng.int(below: 8))
            case 1 where n > 0: b[rng.int(below: n)] = [0, 0xFF, 0x7F, 0x80, 0x30, 0x39, 0x22, 0x2D][rng.int(below: 8)]
            case 2 where n > 0: b.removeLast(1 + rng.int(below: n))
            case 3:
                b.insert(
                    contentsOf: (0..<(1 + rng.int(below: 16))).map { _ in UInt8(rng.int(below: 256)) },
                    at: rng.int(below: n + 1))
            case 4 where n > 1:
                let s = rng.int(below: n), l = 1 + rng.int(below: min(64, n - s))
                b.insert(contentsOf: b[s..<(s + l)], at: rng.int(below: n + 1))
            case 5 where n >= 8:  // the safetensors header length (little-endian u64 at 0)
                var v = UInt64(0)
                for i in 0..<8 { v |= UInt64(b[i]) << (8 * UInt64(i)) }
                v = [v &+ 1, v &- 1, v &* 2, v / 2, UInt64.max, UInt64(n), 0][rng.int(below: 7)]
                for i in 0..<8 { b[i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
            case 6 where n >= 8:  // IDX dimensions (big-endian u32 after the magic)
                let at = 4 + 4 * rng.int(below: max(1, (n - 4) / 4 > 4 ? 4 : max(1, (n - 4) / 4)))
                if at + 4 <= n { for i in 0..<4 { b[at + i] = [0, 0xFF, 0x7F, 0x01][rng.int(below: 4)] } }
            case 7 where n > 0:  // a digit in JSON becomes a long number
                if let i = b.indices.filter({ b[$0] >= 0x30 && b[$0] <= 0x39 }).randomElement(using: &rng) {
                    b.insert(contentsOf: Array("99999999999999999999".utf8).prefix(1 + rng.int(below: 20)), at: i)
                }
            case 8 where !corpus.isEmpty:
                let other = corpus[rng.int(below: corpus.count)]
                let cut = rng.int(below: n + 1), from = rng.int(below: other.count + 1)
                b = Array(b[..<cut]) + Array(other[from...])
            default:
                if n > 0 { b[rng.int(below: n)] = UInt8(rng.int(below: 256)) }
            }
        }
        return b
    }

    extension RNG: RandomNumberGenerator {}

    // MARK: main

    var seconds = 10.0, seed: UInt64 = 1
    var chosen: [String] = []
    var args = Array(CommandLine.arguments.dropFirst())
    while !args.isEmpty {
        let a = args.removeFirst()
        switch a {
        case "--seconds": seconds = Double(args.isEmpty ? "" : args.removeFirst()) ?? -1
        case "--seed": seed = UInt64(args.isEmpty ? "" : args.removeFirst()) ?? 1
        case "--help", "-h":
            print(
                "usage: vitmerge-fuzz [--seconds N per target] [--seed S] ["
                    + fuzzTargets.map(\.name).joined(separator: " ")
                    + "]")
            exit(0)
        default: chosen.append(a)
        }
    }
    guard seconds > 0, chosen.allSatisfy({ c in fuzzTargets.contains { $0.name == c } }) else {
        FileHandle.standardError.write(
            "vitmerge-fuzz: --seconds must be positive and targets among \(fuzzTargets.map(\.name))\n".data(
                using: .utf8)!)
        exit(2)
    }
    let repo = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    installCrashHandler()
    var failed = false
    for target in fuzzTargets where chosen.isEmpty || chosen.contains(target.name) {
        let corpus = seeds(target.name, repo: repo)
        guard !corpus.isEmpty else {
            print("\(target.name): no seeds in fuzz/corpus/\(target.name)/ (run from the repository root)")
            failed = true
            continue
        }
        free(crashFile)
        crashFile = strdup("fuzz-crash-\(target.name).bin")!
        var rng = RNG(seed: seed, stream: UInt64(target.name.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
        let start = Date()
        var execs = 0
        while Date().timeIntervalSince(start) < seconds {
            for _ in 0..<64 {
                let input =
                    execs < corpus.count ? corpus[execs] : mutate(corpus[rng.int(below: corpus.count)], &rng, corpus)
                current.deallocate()
                current = .allocate(capacity: max(1, input.count))
                input.withUnsafeBufferPointer { current.update(from: $0.baseAddress!, count: input.count) }
                currentCount = input.count
                target.run(input)
                execs += 1
            }
        }
        print(String(format: "%@: %d executions in %.0f s, no crash", target.name, execs, seconds))
    }
    exit(failed ? 1 : 0)
#endif
