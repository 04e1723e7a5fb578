/// Pillow's `Image.resize` for 8-bit images (src/libImaging/Resample.c, Pillow 13), reproduced
/// operation by operation so results are bit-identical: a separable, antialiased convolution (the
/// filter's support is scaled by the downscale factor), horizontal pass first over the rows the
/// vertical pass needs (vertical first when the height shrinks by more than twice the width),
/// coefficients computed in Double and rounded to fixed point with 22 fractional bits, each pass
/// rounded and clipped to 0…255. Nearest is Pillow's affine nearest-neighbour path.
extension RGBImage {
    /// A source rectangle in pixels (Pillow's integer `box`, or an `Image.crop` before resizing).
    public struct Region: Sendable, Equatable {
        public var x, y, width, height: Int
        public init(x: Int, y: Int, width: Int, height: Int) {
            self.x = x
            self.y = y
            self.width = width
            self.height = height
        }
    }

    /// Pillow's `self.crop(region).resize((width, height), filter)`; `region` defaults to the image.
    public func resized(
        width outW: Int, height outH: Int, filter: Preprocessing.Interpolation, region: Region? = nil
    ) -> RGBImage {
        let r = region ?? Region(x: 0, y: 0, width: width, height: height)
        precondition(
            outW >= 1 && outH >= 1 && r.x >= 0 && r.y >= 0 && r.width >= 1 && r.height >= 1
                && r.x + r.width <= width && r.y + r.height <= height, "resized: bad size or region")
        if outW == r.width && outH == r.height { return cropped(r) }
        if filter == .nearest { return resizedNearest(width: outW, height: outH, region: r) }
        let cubic = filter == .bicubic
        let vert = Coefficients(inSize: r.height, outSize: outH, cubic: cubic)
        // Pillow ≥ 12's pass order: vertical first when the height shrinks by more than twice the
        // number of pixels the width does.
        let dh = r.height - outH, dw = r.width - outW
        if dh > 0 && dh > dw * 2 {
            let source = r == Region(x: 0, y: 0, width: width, height: height) ? self : cropped(r)
            var temp = RGBImage(width: r.width, height: outH, pixels: [UInt8](repeating: 0, count: r.width * outH * 3))
            source.vertical(vert, shift: 0, into: &temp.pixels)
            if outW == r.width { return temp }
            let horiz = Coefficients(inSize: r.width, outSize: outW, cubic: cubic)
            var out = RGBImage(width: outW, height: outH, pixels: [UInt8](repeating: 0, count: outW * outH * 3))
            temp.horizontal(Region(x: 0, y: 0, width: r.width, height: outH), horiz, into: &out.pixels)
            return out
        }
        // Rows of the source the vertical pass reads (Pillow's ybox_first ..< ybox_last).
        let first = vert.bounds[0], last = vert.bounds[2 * outH - 2] + vert.bounds[2 * outH - 1]
        var temp: RGBImage
        if outW != r.width {
            let horiz = Coefficients(inSize: r.width, outSize: outW, cubic: cubic)
            let rows = Region(x: r.x, y: r.y + first, width: r.width, height: last - first)
            temp = RGBImage(
                width: outW, height: rows.height, pixels: [UInt8](repeating: 0, count: outW * rows.height * 3))
            horizontal(rows, horiz, into: &temp.pixels)
        } else {
            temp = cropped(Region(x: r.x, y: r.y + first, width: r.width, height: last - first))
        }
        if outH == r.height { return temp }
        var out = RGBImage(width: outW, height: outH, pixels: [UInt8](repeating: 0, count: outW * outH * 3))
        temp.vertical(vert, shift: first, into: &out.pixels)
        return out
    }

    /// The pixels of `r` (Pillow's `crop` within the image).
    public func cropped(_ r: Region) -> RGBImage {
        var out = [UInt8](repeating: 0, count: r.width * r.height * 3)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<r.height {
                    let s = src.baseAddress! + ((r.y + y) * width + r.x) * 3
                    (dst.baseAddress! + y * r.width * 3).update(from: s, count: r.width * 3)
                }
            }
        }
        return RGBImage(width: r.width, height: r.height, pixels: out)
    }

    static func bilinearFilter(_ x: Double) -> Double {
        let x = abs(x)
        return x < 1 ? 1 - x : 0
    }

    static func bicubicFilter(_ x: Double) -> Double {
        let a = -0.5, x = abs(x)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// Fixed-point bits of the coefficients (Pillow's PRECISION_BITS = 32 − 8 − 2).
    static let precisionBits: Int32 = 22

    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for box (0, inSize).
    struct Coefficients {
        let ksize: Int
        /// (first input index, count) per output index.
        var bounds: [Int]
        /// ksize Int32 weights per output index, 22 fractional bits.
        var weights: [Int32]

        /// Bicubic (a = −0.5, support 2) when `cubic`, else bilinear (support 1).
        init(inSize: Int, outSize: Int, cubic: Bool) {
            let filterSupport = cubic ? 2.0 : 1.0
            let scale = Double(Float(inSize) - Float(0)) / Double(outSize)
            let filterScale = max(scale, 1)
            let support = filterSupport * filterScale
            ksize = Int(support.rounded(.up)) * 2 + 1
            bounds = [Int](repeating: 0, count: 2 * outSize)
            weights = [Int32](repeating: 0, count: outSize * ksize)
            var k = [Double](repeating: 0, count: ksize)
            for xx in 0..<outSize {
                let center = (Double(xx) + 0.5) * scale
                let ss = 1 / filterScale
                let xmin = max(0, Int(center - support + 0.5))  // C's (int) truncates; both ≥ 0 here
                let xmax = min(inSize, Int(center + support + 0.5)) - xmin
                var ww = 0.0
                for x in 0..<ksize { k[x] = 0 }
                for x in 0..<xmax {
                    let t = (Double(x + xmin) - center + 0.5) * ss
                    let w = cubic ? RGBImage.bicubicFilter(t) : RGBImage.bilinearFilter(t)
                    k[x] = w
                    ww += w
                }
                for x in 0..<xmax where ww != 0 { k[x] /= ww }
                for x in 0..<ksize {
                    let v = k[x] * Double(1 << RGBImage.precisionBits)
                    weights[xx * ksize + x] = Int32(k[x] < 0 ? -0.5 + v : 0.5 + v)
                }
                bounds[2 * xx] = xmin
                bounds[2 * xx + 1] = xmax
            }
        }
    }

    /// Pillow's clip8: the rounded fixed-point sum to 0…255.
    @inline(__always)
    static func clip8(_ ss: Int32) -> UInt8 {
        let v = ss >> precisionBits
        return v < 0 ? 0 : v > 255 ? 255 : UInt8(truncatingIfNeeded: v)
    }

    // out[rows.height][outW][3] = rows of self resampled along x with c.
    func horizontal(_ rows: Region, _ c: Coefficients, into out: inout [UInt8]) {
        let outW = c.bounds.count / 2, ksize = c.ksize, stride = width * 3
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                c.weights.withUnsafeBufferPointer { kk in
                    for yy in 0..<rows.height {
                        let row = src.baseAddress! + (rows.y + yy) * stride + rows.x * 3
                        let o = dst.baseAddress! + yy * outW * 3
                        for xx in 0..<outW {
                            let xmin = c.bounds[2 * xx], xmax = c.bounds[2 * xx + 1]
                            let k = kk.baseAddress! + xx * ksize, p = row + xmin * 3
                            var s0: Int32 = 1 << (RGBImage.precisionBits - 1), s1 = s0, s2 = s0
                            for x in 0..<xmax {
                                let w = k[x], q = p + x &* 3
                                s0 = s0 &+ Int32(q[0]) &* w
                                s1 = s1 &+ Int32(q[1]) &* w
                                s2 = s2 &+ Int32(q[2]) &* w
                            }
                            o[xx * 3] = RGBImage.clip8(s0)
                            o[xx * 3 + 1] = RGBImage.clip8(s1)
                            o[xx * 3 + 2] = RGBImage.clip8(s2)
                        }
                    }
                }
            }
        }
    }

    // out[outH][width][3] = self resampled along y with c, whose bounds start at row `shift` of the source.
    func vertical(_ c: Coefficients, shift: Int, into out: inout [UInt8]) {
        let outH = c.bounds.count / 2, ksize = c.ksize, stride = width * 3
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                c.weights.withUnsafeBufferPointer { kk in
                    for yy in 0..<outH {
                        let ymin = c.bounds[2 * yy] - shift, ymax = c.bounds[2 * yy + 1]
                        let k = kk.baseAddress! + yy * ksize
                        let base = src.baseAddress! + ymin * stride, o = dst.baseAddress! + yy * stride
                        for i in 0..<stride {
                            var s: Int32 = 1 << (RGBImage.precisionBits - 1)
                            for y in 0..<ymax { s = s &+ Int32(base[y &* stride &+ i]) &* k[y] }
                            o[i] = RGBImage.clip8(s)
                        }
                    }
                }
            }
        }
    }

    /// Pillow's NEAREST resize: `ImagingScaleAffine` with a = ((box w)/outW, (box h)/outH) and the
    /// pixel-center offset 0.5, source coordinates accumulated by repeated addition as in C.
    func resizedNearest(width outW: Int, height outH: Int, region r: Region) -> RGBImage {
        let ax = Double(Float(r.width)) / Double(outW), ay = Double(Float(r.height)) / Double(outH)
        var xin = [Int](repeating: 0, count: outW)
        var xo = 0 + ax * 0.5
        for x in 0..<outW {
            xin[x] = min(r.width - 1, Int(xo))
            xo += ax
        }
        var out = [UInt8](repeating: 0, count: outW * outH * 3)
        var yo = 0 + ay * 0.5
        for y in 0..<outH {
            let sy = r.y + min(r.height - 1, Int(yo))
            yo += ay
            for x in 0..<outW {
                let s = (sy * width + r.x + xin[x]) * 3, d = (y * outW + x) * 3
                out[d] = pixels[s]
                out[d + 1] = pixels[s + 1]
                out[d + 2] = pixels[s + 2]
            }
        }
        return RGBImage(width: outW, height: outH, pixels: out)
    }
}
