import ArgumentParser
import Foundation
import ViTMergeIO
import ViTMergeModel

/// `vitmerge forward`: logits (and features) for a batch of images.
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a checkpoint on images and write the logits (and features).",
        discussion:
            "The input file holds `input` [B, C, H, W] float32, or `images` [B, C, H, W] uint8 (scaled to [0, 1]).")

    @Option(help: "Model checkpoint (.safetensors with config metadata).")
    var checkpoint: String

    @Option(help: "Input .safetensors with `input` (f32) or `images` (u8).")
    var input: String

    @Option(help: "Output .safetensors: `logits` [B, K] (and `features` [B, D] with --features).")
    var output: String

    @Flag(help: "Also write the pooled features (the head's input).")
    var features = false

    @Option(help: "Images per forward pass.")
    var batchSize = 64

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be ≥ 1") }
    }

    func run() throws {
        runtime.apply()
        let (params, _) = try Checkpoint.load(path: checkpoint)
        let c = params.config
        let file = try SafeTensorsFile.read(path: input)
        let key = file.contains("input") ? "input" : "images"
        guard let info = file.info(key) else {
            throw IOError.missingTensor(path: input, tensor: "input", available: file.names)
        }
        let expected = [-1, c.inChannels, c.imageHeight, c.imageWidth]
        guard info.shape.count == 4, Array(info.shape.dropFirst()) == Array(expected.dropFirst()) else {
            throw IOError.shapeMismatch(path: input, tensor: key, expected: expected, found: info.shape)
        }
        let images: [Float] = key == "input" ? try file.floats(key) : try file.bytes(key).map { Float($0) / 255 }
        let n = info.shape[0], per = c.inChannels * c.imageHeight * c.imageWidth
        let model = ViT(parameters: params)
        let acts = model.makeActivations(capacity: min(batchSize, max(n, 1)))
        let k = c.numClasses, d = c.embedDim
        var logits = [Float](), feats = [Float]()
        logits.reserveCapacity(n * k)
        var start = 0
        while start < n {
            let b = min(acts.capacity, n - start)
            images.withUnsafeBufferPointer { model.forward(input: $0.baseAddress! + start * per, batch: b, acts: acts) }
            if k > 0 { logits += UnsafeBufferPointer(start: acts.output, count: b * k) }
            if features || k == 0 { feats += UnsafeBufferPointer(start: acts.featuresPointer, count: b * d) }
            start += b
        }
        var writer = SafeTensorsWriter(metadata: ["checkpoint": checkpoint, "input": input])
        if k > 0 { try writer.add("logits", floats: logits, shape: [n, k]) }
        if features || k == 0 { try writer.add("features", floats: feats, shape: [n, d]) }
        try writer.write(to: output)
        print(
            "wrote \(output): \(n) images" + (k > 0 ? ", logits [\(n), \(k)]" : "")
                + (features || k == 0 ? ", features [\(n), \(d)]" : ""))
    }
}
