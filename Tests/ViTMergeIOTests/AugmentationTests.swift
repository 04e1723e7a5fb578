import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeIO

/// The fine-tuning augmentation: torchvision's RandomResizedCrop parameters (bounds, fallback,
/// distribution), seeded determinism, the crop-and-resize against Pillow's resize of the region,
/// and the flip.
final class AugmentationTests: XCTestCase {
    let augment = Augmentation()

    /// Random u8 [C, H, W].
    func image(channels: Int, height: Int, width: Int, seed: UInt64) -> [UInt8] {
        var rng = RNG(seed: seed)
        return (0..<(channels * height * width)).map { _ in UInt8(rng.int(below: 256)) }
    }

    func testCropParametersStayWithinTheImageScaleAndRatio() {
        for (h, w) in [(224, 224), (28, 28), (17, 63), (63, 17), (5, 3), (1, 1)] {
            for seed in 0..<300 {
                let c = augment.crop(seed: UInt64(seed), step: seed / 7, position: seed % 7, height: h, width: w)
                XCTAssertTrue(
                    c.top >= 0 && c.left >= 0 && c.height >= 1 && c.width >= 1 && c.top + c.height <= h
                        && c.left + c.width <= w, "\(c) outside \(h)×\(w)")
                if c == Crop(top: 0, left: 0, height: h, width: w, flip: c.flip) { continue }  // the fallback
                // Sides are round(√(area·s·r)) and round(√(area·s/r)): within half a pixel of the
                // unrounded ones, whose product is area·s and quotient r.
                let (cw, ch) = (Double(c.width), Double(c.height)), area = Double(h * w)
                XCTAssertLessThanOrEqual((cw - 0.5) * (ch - 0.5), area * 1.0 + 1e-9, "\(c)")
                XCTAssertGreaterThanOrEqual((cw + 0.5) * (ch + 0.5), area * 0.08 - 1e-9, "\(c)")
                XCTAssertLessThanOrEqual((cw - 0.5) / (ch + 0.5), 4.0 / 3.0 + 1e-9, "\(c)")
                XCTAssertGreaterThanOrEqual((cw + 0.5) / (ch - 0.5 > 0 ? ch - 0.5 : 1e-9), 3.0 / 4.0 - 1e-9, "\(c)")
            }
        }
    }

    typealias Crop = Augmentation.Crop

    /// When no attempt fits (a strip far outside the ratio range), torchvision's fallback: the
    /// whole shorter side, the other side from the nearest ratio, centered.
    func testFallbackIsTorchvisionsCenterCrop() {
        var rng = RNG(seed: 1)
        // 7 × 300: width / height = 42.9 > 4/3, so h = 7, w = round(7 · 4/3) = 9, left = (300 − 9) // 2.
        XCTAssertEqual(
            augment.cropParameters(height: 7, width: 300, rng: &rng), Crop(top: 0, left: 145, height: 7, width: 9))
        // 300 × 7: 7/300 < 3/4, so w = 7, h = round(7 / 0.75) = 9, top = 145.
        XCTAssertEqual(
            augment.cropParameters(height: 300, width: 7, rng: &rng), Crop(top: 145, left: 0, height: 9, width: 7))
        // Inside the ratio range the fallback is the whole image: scale fixed above 1 never fits.
        let big = Augmentation(scale: [1.5, 2])
        XCTAssertEqual(
            big.cropParameters(height: 30, width: 40, rng: &rng), Crop(top: 0, left: 0, height: 30, width: 40))
    }

    /// Over many draws the crops are distributed as torchvision's: mean area fraction 0.4798 and mean
    /// log aspect −0.0002 from 200,000 draws of `RandomResizedCrop.get_params` on a 224² image
    /// (torchvision 0.29; large non-square draws that do not fit are redrawn, so it is below the
    /// 0.54 of a uniform scale); flips half the time.
    func testCropDistribution() {
        var area = 0.0, logAspect = 0.0, flips = 0
        let n = 4000
        for i in 0..<n {
            let c = augment.crop(seed: 3, step: i, position: 0, height: 224, width: 224)
            area += Double(c.width * c.height) / (224 * 224)
            logAspect += log(Double(c.width) / Double(c.height))
            flips += c.flip ? 1 : 0
        }
        XCTAssertEqual(area / Double(n), 0.4798, accuracy: 0.015)  // ±3.5 standard errors
        XCTAssertEqual(logAspect / Double(n), 0, accuracy: 0.02)
        XCTAssertEqual(Double(flips) / Double(n), 0.5, accuracy: 0.03)
    }

    func testCropsAreAPureFunctionOfSeedStepAndPosition() {
        let a = augment.crop(seed: 7, step: 12, position: 3, height: 224, width: 224)
        XCTAssertEqual(a, augment.crop(seed: 7, step: 12, position: 3, height: 224, width: 224))
        var distinct = Set<[Int]>()
        for (seed, step, position) in [(7, 12, 4), (7, 13, 3), (8, 12, 3), (7, 12, 3)] {
            let c = augment.crop(seed: UInt64(seed), step: step, position: position, height: 224, width: 224)
            distinct.insert([c.top, c.left, c.height, c.width, c.flip ? 1 : 0])
        }
        XCTAssertEqual(distinct.count, 4, "other seeds, steps or positions should draw other crops")
    }

    /// The crop resized with each filter equals Pillow's `img.crop(box).resize(size)` as `RGBImage`
    /// computes it (bit-identical to Pillow, ImageFolderGoldenTests); a whole-image crop is the image.
    func testApplyIsTheResizedRegion() {
        let (h, w) = (17, 23)
        let planar = image(channels: 3, height: h, width: w, seed: 5)
        var interleaved = [UInt8](repeating: 0, count: planar.count)
        for c in 0..<3 { for p in 0..<(h * w) { interleaved[p * 3 + c] = planar[c * h * w + p] } }
        let rgb = RGBImage(width: w, height: h, pixels: interleaved)
        for filter in Preprocessing.Interpolation.allCases {
            let a = Augmentation(interpolation: filter)
            for crop in [Crop(top: 2, left: 3, height: 9, width: 14), Crop(top: 0, left: 0, height: h, width: w)] {
                var out = [UInt8](repeating: 0, count: planar.count)
                planar.withUnsafeBufferPointer {
                    a.apply(crop, image: $0.baseAddress!, channels: 3, height: h, width: w, into: &out)
                }
                let want = rgb.resized(
                    width: w, height: h, filter: filter,
                    region: .init(x: crop.left, y: crop.top, width: crop.width, height: crop.height))
                var wantPlanar = [UInt8](repeating: 0, count: planar.count)
                for c in 0..<3 { for p in 0..<(h * w) { wantPlanar[c * h * w + p] = want.pixels[p * 3 + c] } }
                XCTAssertEqual(out, wantPlanar, "\(filter) \(crop)")
                if crop.height == h { XCTAssertEqual(out, planar, "a whole-image crop must return the image") }
            }
        }
    }

    func testFlipMirrorsEachRow() {
        let (c, h, w) = (3, 9, 11)
        let img = image(channels: c, height: h, width: w, seed: 2)
        for crop in [Crop(top: 0, left: 0, height: h, width: w), Crop(top: 1, left: 2, height: 6, width: 5)] {
            var plain = [UInt8](repeating: 0, count: img.count), flipped = plain
            var mirrored = crop
            mirrored.flip = true
            img.withUnsafeBufferPointer {
                augment.apply(crop, image: $0.baseAddress!, channels: c, height: h, width: w, into: &plain)
                augment.apply(mirrored, image: $0.baseAddress!, channels: c, height: h, width: w, into: &flipped)
            }
            for ch in 0..<c {
                for y in 0..<h {
                    for x in 0..<w {
                        XCTAssertEqual(flipped[(ch * h + y) * w + x], plain[(ch * h + y) * w + (w - 1 - x)])
                    }
                }
            }
            if crop.height == h {  // the unresized image, mirrored
                XCTAssertEqual(flipped[0], img[w - 1])
                XCTAssertEqual(flipped[2 * h * w + (h - 1) * w + 3], img[2 * h * w + (h - 1) * w + w - 4])
            }
        }
    }

    /// Gray and 4-channel images: every channel is resampled on its own, as a 1-channel image would be.
    func testChannelsAreIndependent() {
        let (h, w) = (13, 10), crop = Crop(top: 1, left: 1, height: 8, width: 7, flip: true)
        for channels in [1, 2, 4] {
            let img = image(channels: channels, height: h, width: w, seed: UInt64(channels))
            var out = [UInt8](repeating: 0, count: img.count)
            img.withUnsafeBufferPointer {
                augment.apply(crop, image: $0.baseAddress!, channels: channels, height: h, width: w, into: &out)
            }
            for c in 0..<channels {
                let plane = Array(img[(c * h * w)..<((c + 1) * h * w)])
                var one = [UInt8](repeating: 0, count: h * w)
                plane.withUnsafeBufferPointer {
                    augment.apply(crop, image: $0.baseAddress!, channels: 1, height: h, width: w, into: &one)
                }
                XCTAssertEqual(Array(out[(c * h * w)..<((c + 1) * h * w)]), one, "channel \(c) of \(channels)")
            }
        }
    }

    func testExpMatchesLibm() {
        for x in stride(from: -20.0, through: 20.0, by: 0.0137) + [0, 0.2876820724517809, -0.2876820724517809] {
            XCTAssertEqual(Augmentation.exp(x), Foundation.exp(x), accuracy: Foundation.exp(x) * 4e-15, "\(x)")
        }
        XCTAssertEqual(RNG.log(4.0 / 3.0), Foundation.log(4.0 / 3.0), accuracy: 1e-15)
    }
}
