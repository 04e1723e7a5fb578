import ViTMergeCore
import ViTMergeIO

/// DINO's multi-crop views of a batch (`DINOSettings`): per image, 2 global crops (area scale
/// `globalScale`) and `localCrops` local ones (`localScale`), each torchvision's
/// `RandomResizedCrop.get_params` (aspect 3/4–4/3) drawn from (seed, step, position in the global
/// batch, view) alone, so every rank count, thread count and resumed run sees the same views.
///
/// Differences from DINO's transform, chosen for the fixed patch grid and for glyphs:
/// - every view is resized to the model's input size H × W (DINO's local crops are 96 px against
///   224 px global ones; our ViT has a fixed grid and position embedding, so the local crops are
///   upsampled instead);
/// - resizing is bilinear with half-pixel centres and clamped edges, from the stored u8 image,
///   straight to floats; a crop is never larger than the image, so every resize is an upsampling
///   and no antialiasing is needed;
/// - no horizontal flip (letters and digits are chiral: a mirrored glyph is another glyph or none),
///   no hue, saturation, grayscale, blur or solarization (glyphs are gray and thin);
/// - brightness then contrast jitter, factors uniform in [1 − jitter, 1 + jitter], with
///   probability 0.8 per view (DINO's ColorJitter(0.4, 0.4, …) with p 0.8): x ← clamp(b·x),
///   then x ← clamp(c·(x − mean) + mean) with the mean over all of the view's pixels, in [0, 1]
///   before the dataset's normalization.
/// Allocates nothing.
struct MultiCrop {
    let settings: DINOSettings
    let global: Augmentation, local: Augmentation

    init(settings s: DINOSettings) {
        settings = s
        global = Augmentation(interpolation: .bilinear, scale: s.globalScale, flipProbability: 0)
        local = Augmentation(interpolation: .bilinear, scale: s.localScale, flipProbability: 0)
    }

    /// The generator of view `view` of the image at `position` of global batch `step`.
    func rng(seed: UInt64, step: Int, position: Int, view: Int) -> RNG {
        RNG(
            seed: (seed ^ 0x6469_6E6F_2D76_6965) &+ UInt64(step) &* 0x9E37_79B9_7F4A_7C15,
            stream: UInt64(position) &* UInt64(settings.views) &+ UInt64(view))
    }

    /// The crop and the (brightness, contrast) factors of one view (1, 1 when not jittered).
    func draw(
        seed: UInt64, step: Int, position: Int, view: Int, height: Int, width: Int
    )
        -> (crop: Augmentation.Crop, brightness: Float, contrast: Float)
    {
        var r = rng(seed: seed, step: step, position: position, view: view)
        let crop = (view < 2 ? global : local).cropParameters(height: height, width: width, rng: &r)
        let apply = r.uniformDouble() < 0.8
        let b = 1 + settings.jitter * (2 * r.uniformDouble() - 1), c = 1 + settings.jitter * (2 * r.uniformDouble() - 1)
        return settings.jitter > 0 && apply ? (crop, Float(b), Float(c)) : (crop, 1, 1)
    }

    /// Writes the views of this rank's images into `out` [views, count, C, H, W] (view-major: the
    /// first 2·count images are the global crops, the teacher's input): image `indices[j]` is at
    /// position `firstPosition + j` of global batch `step`. Each image is done by one thread.
    func fill(
        _ indices: ArraySlice<Int>, data: LabeledImages, seed: UInt64, step: Int, firstPosition: Int,
        into out: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        let n = indices.count, first = indices.startIndex, size = data.imageSize, views = settings.views
        pool.run(threads: max(1, min(pool.threads, n))) { ith, nth in
            for j in ThreadPool.split(n, ith, nth) {
                let i = indices[first + j]
                for v in 0..<views {
                    let (crop, b, c) = draw(
                        seed: seed, step: step, position: firstPosition + j, view: v, height: data.height,
                        width: data.width)
                    data.images.withUnsafeBufferPointer { src in
                        view(
                            src.baseAddress! + i * size, crop: crop, brightness: b, contrast: c, data: data,
                            into: out + (v * n + j) * size)
                    }
                }
            }
        }
    }

    /// out[C, H, W] = `crop` of image[C, H, W] (u8) resized bilinearly to H × W, scaled to [0, 1],
    /// jittered, then normalized as `LabeledImages.fill` does.
    func view(
        _ image: UnsafePointer<UInt8>, crop: Augmentation.Crop, brightness: Float, contrast: Float,
        data: LabeledImages, into out: UnsafeMutablePointer<Float>
    ) {
        let (channels, height, width) = (data.channels, data.height, data.width)
        let plane = height * width
        let sy = Float(crop.height) / Float(height), sx = Float(crop.width) / Float(width)
        for ch in 0..<channels {
            let src = image + ch * plane, dst = out + ch * plane
            for y in 0..<height {
                let fy = min(max((Float(y) + 0.5) * sy - 0.5, 0), Float(crop.height - 1))
                let y0 = Int(fy), y1 = min(y0 + 1, crop.height - 1), wy = fy - Float(y0)
                let r0 = src + (crop.top + y0) * width + crop.left, r1 = src + (crop.top + y1) * width + crop.left
                for x in 0..<width {
                    let fx = min(max((Float(x) + 0.5) * sx - 0.5, 0), Float(crop.width - 1))
                    let x0 = Int(fx), x1 = min(x0 + 1, crop.width - 1), wx = fx - Float(x0)
                    let top = Float(r0[x0]) + wx * (Float(r0[x1]) - Float(r0[x0]))
                    let bottom = Float(r1[x0]) + wx * (Float(r1[x1]) - Float(r1[x0]))
                    dst[y * width + x] = min(max(brightness * (top + wy * (bottom - top)) * (1 / 255), 0), 1)
                }
            }
        }
        let count = channels * plane
        if contrast != 1 {
            var sum: Float = 0
            for p in 0..<count { sum += out[p] }
            let mean = sum / Float(count)
            for p in 0..<count { out[p] = min(max(contrast * (out[p] - mean) + mean, 0), 1) }
        }
        if let norm = data.normalization {
            for ch in 0..<channels {
                let (m, sd) = (norm.mean[ch], norm.std[ch])
                for p in (ch * plane)..<((ch + 1) * plane) { out[p] = (out[p] - m) / sd }
            }
        }
    }
}
