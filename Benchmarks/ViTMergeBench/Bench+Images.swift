import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeTraining

extension Bench {
    // MARK: Images

    /// The committed image folder (data/images/shapes), found from this source file's location.
    static let shapesFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/images/shapes").path

    /// Image-folder input throughput in images/s, what loading a task costs before training:
    /// decoding (libjpeg-turbo / libpng, the file read from the page cache included) plus timm's
    /// eval transform (Pillow-exact antialiased resize of the shorter side to 248, center crop to
    /// 224², ImageNet's bicubic preprocessing), as `ImageFolder.decode` runs it: files split into
    /// contiguous ranges over the pool's threads. Also decoding alone, and `--augment`'s random
    /// resized crop + flip of stored 224² images (per training image and epoch). Sets: the three
    /// 640×480 JPEGs of the folder ("jpeg 640x480"), and all its 36 files, 23×40 to 640×480, PNG
    /// (gray, RGBA, palette) and JPEG ("folder mix"); every output is 224².
    func imageSuite() {
        let folder = Self.shapesFolder
        guard let all = try? ImageFolder.imageFiles([folder]) else {
            print("  note: \(folder) not found; images suite skipped")
            return
        }
        let large = all.filter { f in
            (try? RGBImage.read(path: f)).map { $0.width == 640 && $0.height == 480 } ?? false
        }
        let pre = Preprocessing.imagenet
        // Several copies of each file list, so each measurement decodes ~100 images over the threads.
        let sets: [(name: String, files: [String], shape: [Int])] = [
            (
                "jpeg 640x480", Array(repeating: large, count: max(1, 96 / max(large.count, 1))).flatMap { $0 },
                [480, 640, 224]
            ),
            ("folder mix", Array(repeating: all, count: 3).flatMap { $0 }, [36, 224]),
        ]
        for th in options.threads {
            ThreadPool.shared.threads = th
            for s in sets where !s.files.isEmpty {
                let both = bestTime(minSeconds: options.minSeconds) {
                    _ = try? ImageFolder.decode(s.files, preprocessing: pre, pool: .shared)
                }
                record(
                    "images", "decode+preprocess \(s.name)", s.shape, threads: th,
                    value: Double(s.files.count) / both, unit: "img/s",
                    peer: pillowPeer("decode+preprocess \(s.name)", th))
                let decodeOnly = bestTime(minSeconds: options.minSeconds) { Self.decodeOnly(s.files) }
                record(
                    "images", "decode only \(s.name)", s.shape, threads: th,
                    value: Double(s.files.count) / decodeOnly, unit: "img/s",
                    peer: pillowPeer("decode only \(s.name)", th))
            }
            // --augment: crop + resize back to 224² + flip, from u8 [3, 224, 224] images.
            if let stored = try? ImageFolder.decode(Array(large.prefix(1)), preprocessing: pre) {
                let n = 64, size = stored.count
                let images = LabeledImages(
                    count: n, channels: 3, height: 224, width: 224,
                    images: Array((0..<n).map { _ in stored }.joined()), labels: [Int32](repeating: 0, count: n),
                    normalization: Normalization(pre))
                let input = UnsafeMutablePointer<Float>.allocate(capacity: n * size)
                defer { input.deallocate() }
                let aug = Augmentation(interpolation: pre.interpolation)
                var step = 0
                let t = bestTime(minSeconds: options.minSeconds) {
                    images.fill(
                        ArraySlice(0..<n), augmentation: aug, seed: 0, step: step, firstPosition: 0, input: input,
                        labels: nil, pool: .shared)
                    step += 1
                }
                record(
                    "images", "augment crop+flip 224 (bicubic)", [224, 224], threads: th, value: Double(n) / t,
                    unit: "img/s")
            }
        }
        ThreadPool.shared.threads = ThreadPool.shared.capacity
    }

    /// The Pillow + timm figure for `name` with `threads` worker processes (`--pillow`).
    func pillowPeer(_ name: String, _ threads: Int) -> (String, Double)? {
        pillowResults.first { $0.name == name && $0.threads == threads }.map { ("Pillow \(pillowVersion)", $0.value) }
    }

    /// Decodes `files` on the shared pool's threads (contiguous ranges), discarding the pixels.
    static func decodeOnly(_ files: [String]) {
        let pool = ThreadPool.shared, n = files.count
        pool.run(threads: max(1, min(pool.threads, n))) { ith, nth in
            for i in ThreadPool.split(n, ith, nth) { _ = try? RGBImage.read(path: files[i]) }
        }
    }
}
