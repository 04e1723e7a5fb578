/// timm's eval transform (`transforms_imagenet_eval`) on a decoded RGB image, without the final
/// ToTensor/Normalize: those happen at batch time (`LabeledImages.fill(…, normalization:)`), so a
/// dataset stores u8 crops (3·H·W bytes per image: 150 KB at 224²).
extension Preprocessing {
    /// timm's scale_size: floor(size / crop_pct) per side (H, W).
    public var scaleSize: (height: Int, width: Int) {
        (Int((Double(inputSize[1]) / cropPct).rounded(.down)), Int((Double(inputSize[2]) / cropPct).rounded(.down)))
    }

    /// Checks that the transform is one this implementation reproduces: 3 channels, center (with a
    /// square input) or squash crop, crop_pct in (0, 1] … (crop_pct > 1 pads, as torchvision).
    public func validateForImages(path: String) throws(IOError) {
        guard inputSize.count == 3, inputSize[0] == 3, inputSize[1] >= 1, inputSize[2] >= 1 else {
            throw .invalidImageFolder(
                path: path, reason: "preprocessing input_size \(inputSize) is not [3, H, W]",
                hint: "image folders give RGB images; use a model with 3 input channels")
        }
        guard cropPct > 0, cropPct.isFinite, mean.count == 3, std.count == 3, std.allSatisfy({ $0 > 0 }) else {
            throw .invalidImageFolder(
                path: path, reason: "preprocessing crop_pct \(cropPct), mean \(mean), std \(std) are invalid",
                hint: "crop_pct must be > 0, mean and std three values with std > 0")
        }
        let square = inputSize[1] == inputSize[2]
        guard cropMode == .squash || (cropMode == .center && square) else {
            throw .invalidImageFolder(
                path: path, reason: "crop_mode \(cropMode.rawValue) with input size \(inputSize) is not implemented",
                hint: "only center (square input) and squash are; use one of them")
        }
    }

    /// The size an image of `width` × `height` is resized to before the crop: torchvision's
    /// `Resize(scale_size)` (center: the shorter side to scale_size, the longer to
    /// int(scale_size · long / short)) or `Resize((h, w))` (squash).
    public func resizedSize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        let s = scaleSize
        if cropMode == .squash { return (s.width, s.height) }
        let short = min(w, h), long = max(w, h)
        let newLong = Int(Double(s.height * long) / Double(short))
        return w <= h ? (s.height, newLong) : (newLong, s.height)
    }

    /// torchvision's `CenterCrop((H, W))` region: top = int(round((h − H) / 2)) with round half to even
    /// (Python's round); negative where the image is smaller (the crop then pads with zeros).
    static func centerCropOrigin(size: Int, crop: Int) -> Int {
        if crop > size { return -((crop - size) / 2) }
        return Int((Double(size - crop) / 2).rounded(.toNearestOrEven))
    }

    /// The eval transform of `image` as u8 [3, H, W] (timm with Pillow, before ToTensor): resize with
    /// Pillow's filter, then center crop (zero padding where the resized image is smaller).
    public func evalCrop(_ image: RGBImage) -> [UInt8] {
        let (rw, rh) = resizedSize(width: image.width, height: image.height)
        let resized = image.resized(width: rw, height: rh, filter: interpolation)
        return Self.crop(
            resized, top: Self.centerCropOrigin(size: rh, crop: inputSize[1]),
            left: Self.centerCropOrigin(size: rw, crop: inputSize[2]), height: inputSize[1], width: inputSize[2])
    }

    /// out[3, h, w] = image rows top..<top+h, columns left..<left+w, planar; outside the image 0.
    static func crop(_ image: RGBImage, top: Int, left: Int, height h: Int, width w: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 3 * h * w)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h where top + y >= 0 && top + y < image.height {
                    for x in 0..<w where left + x >= 0 && left + x < image.width {
                        let s = ((top + y) * image.width + left + x) * 3
                        dst[y * w + x] = src[s]
                        dst[h * w + y * w + x] = src[s + 1]
                        dst[2 * h * w + y * w + x] = src[s + 2]
                    }
                }
            }
        }
        return out
    }
}
