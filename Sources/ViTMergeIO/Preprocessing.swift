/// How a model wants its images: timm's `pretrained_cfg` keys that define the eval transform
/// (resize the shorter side to floor(size / crop_pct), crop to `inputSize`, scale to [0, 1],
/// subtract `mean` and divide by `std` per channel). Stored in our checkpoints so a fine-tuned or
/// merged model keeps the preprocessing of the model it came from.
public struct Preprocessing: Codable, Sendable, Equatable {
    /// Pillow's resampling filters that timm configs name.
    public enum Interpolation: String, Codable, Sendable, CaseIterable {
        case bicubic, bilinear, nearest
    }
    /// timm's `crop_mode`: "center" (resize the shorter side, center crop), "squash" (resize both
    /// sides to size / crop_pct, center crop) or "border" (resize the longer side, pad to a square).
    public enum CropMode: String, Codable, Sendable, CaseIterable {
        case center, squash, border
    }

    /// [C, H, W] of the model input.
    public var inputSize: [Int]
    public var interpolation: Interpolation
    public var cropPct: Double
    public var cropMode: CropMode
    /// Per-channel mean and standard deviation, applied after scaling to [0, 1].
    public var mean: [Float]
    public var std: [Float]

    public init(
        inputSize: [Int], interpolation: Interpolation = .bicubic, cropPct: Double = 0.9,
        cropMode: CropMode = .center, mean: [Float], std: [Float]
    ) {
        self.inputSize = inputSize
        self.interpolation = interpolation
        self.cropPct = cropPct
        self.cropMode = cropMode
        self.mean = mean
        self.std = std
    }

    enum CodingKeys: String, CodingKey {
        case inputSize = "input_size", interpolation, cropPct = "crop_pct", cropMode = "crop_mode", mean, std
    }

    /// Identity normalization (pixels in [0, 1]) for `channels` × `height` × `width`: what the
    /// embedded tasks and the models trained on them use.
    public static func unit(channels: Int, height: Int, width: Int) -> Preprocessing {
        Preprocessing(
            inputSize: [channels, height, width], interpolation: .bilinear, cropPct: 1, cropMode: .center,
            mean: [Float](repeating: 0, count: channels), std: [Float](repeating: 1, count: channels))
    }

    /// timm's ImageNet defaults (IMAGENET_DEFAULT_MEAN/STD) at 224², crop_pct 0.9, bicubic.
    public static let imagenet = Preprocessing(
        inputSize: [3, 224, 224], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
    /// OpenAI CLIP's normalization (OPENAI_CLIP_MEAN/STD) at 224², crop_pct 0.9, bicubic.
    public static let clip = Preprocessing(
        inputSize: [3, 224, 224], mean: [0.48145466, 0.4578275, 0.40821073],
        std: [0.26862954, 0.26130258, 0.27577711])
    /// timm's inception normalization (IMAGENET_INCEPTION_MEAN/STD = 0.5), used by augreg ViTs.
    public static let inception = Preprocessing(
        inputSize: [3, 224, 224], mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
}
