import Foundation
import ViTMergeCore
import ViTMergeKernels

struct Record: Encodable {
    let suite: String
    var name: String
    let shape: [Int]
    let threads: Int
    let value: Double
    let unit: String
    var percent_of_peak: Double?
    var peer: String?
    var peer_value: Double?
    var ratio: Double?
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] { var seen = Set<Element>(); return filter { seen.insert($0).inserted } }
}

/// Best time in seconds of `body` over repeated runs lasting at least `minSeconds` in total.
func bestTime(minSeconds: Double, _ body: () -> Void) -> Double {
    body()  // warm-up
    var best = Double.infinity, total = 0.0, runs = 0
    while total < minSeconds || runs < 3 {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        best = min(best, dt); total += dt; runs += 1
    }
    return best
}

final class Bench {
    let options: BenchOptions
    var records: [Record] = []
    var peaks: [Int: Double] = [:]
    var bandwidths: [Int: Double] = [:]
    /// PyTorch figures for the vit suite: from `--compare FILE`, then those run with `--torch`.
    var torchResults: [TorchFigure] = []
    /// scripts/bench_images.py's figures (`--pillow`): name, worker processes, img/s.
    var pillowResults: [(name: String, threads: Int, value: Double)] = []
    var pillowVersion = "?"
    let openblas = OpenBLAS.load()

    init(options: BenchOptions) { self.options = options }

    func run() {
        let machine: [String: String] = [
            "cpu": Machine.cpuModel, "isa": Machine.buildISA,
            "cpu_features": Machine.cpuFeatures.joined(separator: " "),
            "threads_available": String(ThreadPool.shared.capacity),
            "swift": swiftVersion(), "date": ISO8601DateFormatter().string(from: Date()),
            "git_commit": gitCommit(), "openblas": openblas?.path ?? "not found",
        ]
        print("vitmerge-bench")
        for (k, v) in machine.sorted(by: { $0.key < $1.key }) { print("  \(k): \(v)") }
        for t in options.threads {
            peaks[t] = Machine.measureFMAPeak(threads: t, seconds: options.quick ? 0.1 : 0.3)
            print(String(format: "  FMA peak, %d thread(s): %.1f GFLOP/s", t, peaks[t]!))
        }
        for t in options.threads {
            bandwidths[t] = measureBandwidth(threads: t)
            print(String(format: "  bandwidth (scale, 2 × 256 MB), %d thread(s): %.1f GB/s", t, bandwidths[t]!))
        }
        if openblas == nil {
            print("  note: libopenblas not found (apt-get install libopenblas0); peer columns skipped")
        }
        if let path = options.compare { loadTorch(path) }
        if let path = options.pillow { loadPillow(path) }
        if options.suites.contains(.runtime) { runtimeSuite() }
        if options.suites.contains(.gemm) { gemmSuite() }
        if options.suites.contains(.kernels) { kernelSuite() }
        if options.suites.contains(.attention) { attentionSuite() }
        if options.suites.contains(.fusion) { fusionSuite() }
        if options.suites.contains(.vit) { vitSuite() }
        if options.suites.contains(.merge) { mergeSuite() }
        if options.suites.contains(.profile) { profileSuite() }
        if options.suites.contains(.allocations) { allocationSuite() }
        if options.suites.contains(.svd) { svdSuite() }
        if options.suites.contains(.mergeMemory) { mergeMemorySuite() }
        if options.suites.contains(.images) { imageSuite() }
        printTable()
        if let path = options.jsonPath {
            struct Output: Encodable {
                let machine: [String: String]; let peaks: [String: Double]; let bandwidth: [String: Double];
                let results: [Record]
            }
            let out = Output(
                machine: machine, peaks: Dictionary(uniqueKeysWithValues: peaks.map { (String($0.key), $0.value) }),
                bandwidth: Dictionary(uniqueKeysWithValues: bandwidths.map { (String($0.key), $0.value) }),
                results: records)
            let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            do {
                try enc.encode(out).write(to: URL(fileURLWithPath: path), options: .atomic)
                print("wrote \(path)")
            } catch {
                FileHandle.standardError.write("vitmerge-bench: cannot write \(path): \(error)\n".data(using: .utf8)!)
                exit(1)
            }
        }
    }

    func printTable() {
        let width = max(34, (records.map(\.name.count).max() ?? 0) + 1)
        print("")
        print(
            "suite    " + "name".padding(toLength: width, withPad: " ", startingAt: 0)
                + "shape                thr      value unit      %peak   peer value  ratio  peer")
        print("(%peak: of the measured FMA peak for GFLOP/s, of the measured bandwidth for GB/s; ratio = ours / peer)")
        for r in records {
            let shape = r.shape.map(String.init).joined(separator: "x")
            var line = r.suite.padding(toLength: 9, withPad: " ", startingAt: 0)
            line += r.name.padding(toLength: width, withPad: " ", startingAt: 0)
            line += shape.padding(toLength: 21, withPad: " ", startingAt: 0)
            line += String(format: "%3d %10.2f ", r.threads, r.value)
            line += r.unit.padding(toLength: 9, withPad: " ", startingAt: 0)
            line += r.percent_of_peak.map { String(format: "%6.1f", $0) } ?? "     -"
            if let pv = r.peer_value, let ratio = r.ratio {
                line += String(format: " %9.2f  %5.2fx  ", pv, ratio) + (r.peer ?? "")
            }
            print(line)
        }
    }

    /// `swift --version`'s first line when a toolchain is on PATH, else the compile-time range.
    func swiftVersion() -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["swift", "--version"]
        let pipe = Pipe(); p.standardOutput = pipe; p.standardError = FileHandle.nullDevice
        if (try? p.run()) != nil {
            p.waitUntilExit()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            if p.terminationStatus == 0, let line = out.split(separator: "\n").first { return String(line) }
        }
        #if compiler(>=6.3)
            return "6.3+"
        #elseif compiler(>=6.2)
            return "6.2"
        #else
            return "<6.2"
        #endif
    }

    func gitCommit() -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "rev-parse", "--short", "HEAD"]
        let pipe = Pipe(); p.standardOutput = pipe; p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return "unknown" }
        p.waitUntilExit()
        let s = String(data: pipe.fileHandleForReading.readDataToEndOfFile(), encoding: .utf8) ?? ""
        return s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
            ? "unknown" : s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Reads scripts/bench_images.py's JSON: {"pillow": version, "results": [{"name", "threads", "value"}]}.
    func loadPillow(_ path: String) {
        guard let data = FileManager.default.contents(atPath: path),
            let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let rs = obj["results"] as? [[String: Any]]
        else {
            FileHandle.standardError.write(
                "vitmerge-bench: cannot read \(path) (expected scripts/bench_images.py output)\n".data(using: .utf8)!)
            exit(1)
        }
        pillowVersion = obj["pillow"] as? String ?? "?"
        pillowResults = rs.compactMap { r in
            guard let n = r["name"] as? String, let t = r["threads"] as? Int, let v = r["value"] as? Double else {
                return nil
            }
            return (n, t, v)
        }
        print("  peer: Pillow \(pillowVersion) + timm from \(path) (\(pillowResults.count) figures)")
    }
}
