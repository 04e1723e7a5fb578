import ViTMergeCore

/// Fine-tuning augmentation (`vitmerge finetune --augment`): the geometric part of timm's training
/// transform, torchvision's `RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))` with the
/// model's interpolation, then `RandomHorizontalFlip(0.5)`. The crop is taken from the stored u8
/// image (the eval transform's resize and center crop, `Preprocessing.evalCrop`, 3·H·W bytes per
/// image), not from the original file as timm does, so a dataset is decoded once and held at the
/// model's input size; a crop of scale s covers s of that stored image's area.
///
/// Each crop is a pure function of (seed, step, position in the global batch): a resumed run and a
/// data-parallel run see the crops an uninterrupted single-process run does, for any thread count.
public struct Augmentation: Codable, Sendable, Equatable {
    /// The filter the crop is resized with (the model's `Preprocessing.interpolation`).
    public var interpolation: Preprocessing.Interpolation
    /// [lo, hi]: the crop's area as a fraction of the image's, drawn uniformly.
    public var scale: [Double]
    /// [lo, hi]: the crop's width / height, drawn log-uniformly.
    public var ratio: [Double]
    /// Probability of mirroring the crop left to right.
    public var flipProbability: Double

    public init(
        interpolation: Preprocessing.Interpolation = .bicubic, scale: [Double] = [0.08, 1],
        ratio: [Double] = [3.0 / 4.0, 4.0 / 3.0], flipProbability: Double = 0.5
    ) {
        precondition(
            scale.count == 2 && 0 < scale[0] && scale[0] <= scale[1] && ratio.count == 2 && 0 < ratio[0]
                && ratio[0] <= ratio[1] && (0...1).contains(flipProbability), "Augmentation: bad scale, ratio or flip")
        self.interpolation = interpolation
        self.scale = scale
        self.ratio = ratio
        self.flipProbability = flipProbability
    }

    enum CodingKeys: String, CodingKey {
        case interpolation, scale, ratio, flipProbability = "flip_probability"
    }

    /// A crop of rows top..<top+height and columns left..<left+width, mirrored when `flip`.
    public struct Crop: Sendable, Equatable {
        public var top, left, height, width: Int
        public var flip: Bool

        public init(top: Int, left: Int, height: Int, width: Int, flip: Bool = false) {
            self.top = top
            self.left = left
            self.height = height
            self.width = width
            self.flip = flip
        }
    }

    /// torchvision's `RandomResizedCrop.get_params` for an image of `height` × `width`, drawing from
    /// `rng`: up to 10 attempts of area·U(scale) with aspect exp(U(log ratio)), sides rounded half to
    /// even (Python's round) and kept when they fit, at a uniform position; else the center crop of
    /// the whole image clamped to the ratio range. `flip` is false.
    public func cropParameters(height: Int, width: Int, rng: inout RNG) -> Crop {
        let area = Double(height * width), logRatio = (RNG.log(ratio[0]), RNG.log(ratio[1]))
        for _ in 0..<10 {
            let target = area * (scale[0] + (scale[1] - scale[0]) * rng.uniformDouble())
            let aspect = Self.exp(logRatio.0 + (logRatio.1 - logRatio.0) * rng.uniformDouble())
            let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.int(below: height - h + 1), left = rng.int(below: width - w + 1)
                return Crop(top: top, left: left, height: h, width: w)
            }
        }
        let inRatio = Double(width) / Double(height)
        var (w, h) = (width, height)
        if inRatio < ratio[0] {
            h = Int((Double(w) / ratio[0]).rounded(.toNearestOrEven))
        } else if inRatio > ratio[1] {
            w = Int((Double(h) * ratio[1]).rounded(.toNearestOrEven))
        }
        return Crop(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w)
    }

    /// The crop (and flip) of the image at `position` of global batch `step`: its own generator,
    /// drawn from (seed, step, position) alone.
    public func crop(seed: UInt64, step: Int, position: Int, height: Int, width: Int) -> Crop {
        var rng = RNG(
            seed: (seed ^ 0x6175_676D_656E_7421) &+ UInt64(step) &* 0x9E37_79B9_7F4A_7C15, stream: UInt64(position))
        var c = cropParameters(height: height, width: width, rng: &rng)
        c.flip = rng.uniformDouble() < flipProbability
        return c
    }

    /// out[C, H, W] = `crop` of image[C, H, W] resized to H × W with `interpolation` (Pillow's
    /// `img.crop(box).resize((W, H))`, as torchvision's `resized_crop` on a PIL image), then mirrored
    /// when `crop.flip`. Channels are resampled three at a time, independently (gray or RGB alike).
    public func apply(
        _ crop: Crop, image: UnsafePointer<UInt8>, channels: Int, height: Int, width: Int,
        into out: UnsafeMutablePointer<UInt8>
    ) {
        precondition(
            crop.top >= 0 && crop.left >= 0 && crop.height >= 1 && crop.width >= 1 && crop.top + crop.height <= height
                && crop.left + crop.width <= width, "Augmentation.apply: crop outside the image")
        let plane = height * width
        var group = 0
        while group < channels {
            let n = min(3, channels - group)
            var interleaved = [UInt8](repeating: 0, count: plane * 3)
            for k in 0..<3 {
                let src = image + min(group + k, channels - 1) * plane
                for p in 0..<plane { interleaved[p * 3 + k] = src[p] }
            }
            let resized = RGBImage(width: width, height: height, pixels: interleaved).resized(
                width: width, height: height, filter: interpolation,
                region: RGBImage.Region(x: crop.left, y: crop.top, width: crop.width, height: crop.height))
            resized.pixels.withUnsafeBufferPointer { r in
                for k in 0..<n {
                    let dst = out + (group + k) * plane
                    for y in 0..<height {
                        for x in 0..<width {
                            dst[y * width + x] = r[(y * width + (crop.flip ? width - 1 - x : x)) * 3 + k]
                        }
                    }
                }
            }
            group += 3
        }
    }

    /// e^x in IEEE double arithmetic only (|relative error| < 1e-15 for |x| < 700), so a seed draws
    /// the same crops on every machine: x = k·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor series.
    static func exp(_ x: Double) -> Double {
        precondition(abs(x) < 700, "Augmentation.exp of \(x)")
        let k = (x / 0.6931471805599453).rounded(.toNearestOrEven)
        let r = x - k * 0.6931471805599453
        var term = 1.0, sum = 1.0
        for i in 1...20 {
            term *= r / Double(i)
            sum += term
        }
        return sum * Double(sign: .plus, exponent: Int(k), significand: 1)
    }
}
