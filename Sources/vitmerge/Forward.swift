import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge forward`: logits (and features) for a tensor of images, or for JPEG/PNG files.
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a checkpoint on images and write the logits (and features).",
        discussion:
            "--input is a .safetensors holding `input` [B, C, H, W] float32, or `images` [B, C, H, W] uint8 (scaled "
            + "to [0, 1]). --images takes JPEG/PNG files and directories (searched recursively, in sorted order), "
            + "decoded and preprocessed with the checkpoint's pretrained_cfg as image-folder tasks are (timm's eval "
            + "transform: resize, center crop, mean/std), --batch-size images at a time: the output is written as "
            + "it is computed, with the image paths in row order in its metadata `files`.")

    @Option(help: "Model checkpoint (ours, or a hub snapshot directory).")
    var checkpoint: String

    @Option(help: "Input .safetensors with `input` (f32) or `images` (u8).")
    var input: String?

    @Option(
        parsing: .upToNextOption,
        help: ArgumentHelp("JPEG/PNG files or directories of them (instead of --input).", valueName: "file-or-dir"))
    var images: [String] = []

    @Option(
        help: ArgumentHelp(
            "Output .safetensors: `logits` [B, K] (`features` [B, D] with --features or for a model without head, "
                + "`pixels` [B, C, H, W] with --save-pixels)."))
    var output: String

    @Flag(help: "Also write the pooled features (the head's input).")
    var features = false

    @Flag(help: "With --images: also write the preprocessed model input `pixels` [B, C, H, W] (float32, normalized).")
    var savePixels = false

    @Option(help: "Images per forward pass (and per decoded batch with --images).")
    var batchSize = 64

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be ≥ 1") }
        if (input == nil) == images.isEmpty {
            throw ValidationError("give either --input FILE or --images FILE_OR_DIR…")
        }
        if savePixels && images.isEmpty {
            throw ValidationError("--save-pixels needs --images (--input is the pixels)")
        }
    }

    func run() throws {
        runtime.apply()
        if let input { try run(tensorFile: input) } else { try runImages() }
    }

    /// --images: decode and preprocess a batch at a time, run it, write its rows.
    func runImages() throws {
        try ensureWritable(output)
        let (params, meta) = try Checkpoint.load(path: checkpoint)
        let c = params.config
        let pre = try Checkpoint.preprocessing(meta, config: c)
        try pre.validateForImages(path: checkpoint)
        guard pre.inputSize == [c.inChannels, c.imageHeight, c.imageWidth] else {
            throw InputError(
                description:
                    "\(checkpoint): its pretrained_cfg input_size \(pre.inputSize) differs from the model's input "
                    + "[\(c.inChannels), \(c.imageHeight), \(c.imageWidth)]; fix pretrained_cfg or the model's img_size"
            )
        }
        let files = try ImageFolder.imageFiles(images)
        let n = files.count, k = c.numClasses, d = c.embedDim, (h, w) = (c.imageHeight, c.imageWidth), per = 3 * h * w
        let writeFeatures = features || k == 0
        var tensors: [(name: String, dtype: DType, shape: [Int])] = []
        if k > 0 { tensors.append(("logits", .f32, [n, k])) }
        if writeFeatures { tensors.append(("features", .f32, [n, d])) }
        if savePixels { tensors.append(("pixels", .f32, [n, 3, h, w])) }
        let list = String(decoding: try JSONSerialization.data(withJSONObject: files), as: UTF8.self)
        let preJSON = String(decoding: try JSONEncoder().encode(pre), as: UTF8.self)
        let writer = try SafeTensorsStreamWriter(
            path: output, metadata: ["checkpoint": checkpoint, "files": list, "preprocessing": preJSON],
            tensors: tensors)
        let model = ViT(parameters: params)
        let acts = model.makeActivations(capacity: min(batchSize, n))
        var pixels = [Float](repeating: 0, count: acts.capacity * per)
        let normalization = Normalization(pre), labels = [Int32](repeating: 0, count: acts.capacity)
        let progress = isatty(STDERR_FILENO) != 0 ? ImageFolder.stderrProgress("forward") : nil
        var start = 0
        while start < n {
            let b = min(acts.capacity, n - start)
            let decoded = try ImageFolder.decode(Array(files[start..<(start + b)]), preprocessing: pre)
            let batch = LabeledImages(
                count: b, channels: 3, height: h, width: w, images: decoded, labels: Array(labels.prefix(b)),
                normalization: normalization)
            try pixels.withUnsafeMutableBufferPointer { x in
                batch.fill(0..<b, input: x.baseAddress!, labels: nil)
                model.forward(input: x.baseAddress!, batch: b, acts: acts, forBackward: false)
                if k > 0 { try writer.write("logits", floats: .init(start: acts.output, count: b * k), at: start * k) }
                if writeFeatures {
                    try writer.write(
                        "features", floats: .init(start: acts.featuresPointer, count: b * d), at: start * d)
                }
                if savePixels {
                    try writer.write("pixels", floats: .init(start: x.baseAddress!, count: b * per), at: start * per)
                }
            }
            start += b
            progress?(start, n)
        }
        try writer.finish()
        print(
            "wrote \(output): \(n) images" + (k > 0 ? ", logits [\(n), \(k)]" : "")
                + (writeFeatures ? ", features [\(n), \(d)]" : "")
                + (savePixels ? ", pixels [\(n), 3, \(h), \(w)]" : ""))
    }

    /// --input: a tensor of images already at the model's input size.
    func run(tensorFile input: String) throws {
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
            images.withUnsafeBufferPointer {
                model.forward(input: $0.baseAddress! + start * per, batch: b, acts: acts, forBackward: false)
            }
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
