/// Bicubic resizing as PyTorch's `F.interpolate(mode="bicubic", align_corners=False,
/// antialias=False)`: Keys' cubic convolution with A = −0.75, source coordinate
/// (o + 0.5)·in/out − 0.5, the 4×4 neighbourhood clamped at the borders. Used once at load time to
/// resample a checkpoint's position embedding to another patch grid (timm's
/// `resample_abs_pos_embed`), so it is written for clarity: weights and sums in Double, one
/// rounding per output value. Not differentiated.
public enum Bicubic {
    /// PyTorch's cubic-convolution coefficient A.
    public static let a = -0.75

    /// The four source indices (clamped to 0..<inSize) and weights for output index o.
    static func taps(_ o: Int, inSize: Int, outSize: Int) -> (index: [Int], weight: [Double]) {
        let scale = Double(inSize) / Double(outSize)
        let real = scale * (Double(o) + 0.5) - 0.5  // not clamped at 0 for cubic, as PyTorch
        let i0 = Int(real.rounded(.down)), t = real - Double(i0)
        // cubic_convolution1 for |x| ≤ 1, cubic_convolution2 for 1 < |x| < 2
        func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        func clamp(_ i: Int) -> Int { min(max(i, 0), inSize - 1) }
        return (
            [clamp(i0 - 1), clamp(i0), clamp(i0 + 1), clamp(i0 + 2)], [far(t + 1), near(t), near(1 - t), far(2 - t)]
        )
    }

    // out[OH,OW,C] = bicubic resize of inp[IH,IW,C] (channels last: every pixel's C values contiguous)
    public static func resize(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, channels c: Int, inHeight ih: Int,
        inWidth iw: Int, outHeight oh: Int, outWidth ow: Int
    ) {
        precondition(c >= 1 && ih >= 1 && iw >= 1 && oh >= 1 && ow >= 1, "Bicubic.resize: bad shape")
        let xs = (0..<ow).map { taps($0, inSize: iw, outSize: ow) }
        var acc = [Double](repeating: 0, count: c)
        for oy in 0..<oh {
            let (ys, wy) = taps(oy, inSize: ih, outSize: oh)
            for ox in 0..<ow {
                let (xi, wx) = xs[ox]
                for k in 0..<c { acc[k] = 0 }
                for i in 0..<4 {
                    for j in 0..<4 {
                        let w = wy[i] * wx[j], src = inp + (ys[i] * iw + xi[j]) * c
                        for k in 0..<c { acc[k] += w * Double(src[k]) }
                    }
                }
                let dst = out + (oy * ow + ox) * c
                for k in 0..<c { dst[k] = Float(acc[k]) }
            }
        }
    }

    /// timm's `resample_abs_pos_embed`: pos[P + IH·IW, D] → out[P + OH·OW, D]; the first `prefix`
    /// rows (class and register tokens) are copied, the grid rows (row-major over the patch grid)
    /// are resized bicubically.
    public static func resamplePositions(
        out: UnsafeMutablePointer<Float>, pos: UnsafePointer<Float>, prefix: Int, dim d: Int,
        from: (height: Int, width: Int), to: (height: Int, width: Int)
    ) {
        precondition(prefix >= 0, "Bicubic.resamplePositions: negative prefix")
        out.update(from: pos, count: prefix * d)
        resize(
            out: out + prefix * d, inp: pos + prefix * d, channels: d, inHeight: from.height, inWidth: from.width,
            outHeight: to.height, outWidth: to.width)
    }

    // MARK: Reference

    /// The same resize written as PyTorch's CPU kernel reads: separable, first along x within each
    /// of the 4 source rows, then along y (`cubic_interp1d`); for tests.
    public static func resizeReference(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, channels c: Int, inHeight ih: Int,
        inWidth iw: Int, outHeight oh: Int, outWidth ow: Int
    ) {
        func interp1d(_ v: [Double], _ t: Double) -> Double {
            func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
            func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
            return v[0] * far(t + 1) + v[1] * near(t) + v[2] * near(1 - t) + v[3] * far(2 - t)
        }
        func source(_ o: Int, _ inSize: Int, _ outSize: Int) -> (Int, Double) {
            let real = Double(inSize) / Double(outSize) * (Double(o) + 0.5) - 0.5
            let i = Int(real.rounded(.down))
            return (i, real - Double(i))
        }
        func at(_ y: Int, _ x: Int, _ k: Int) -> Double {
            Double(inp[(min(max(y, 0), ih - 1) * iw + min(max(x, 0), iw - 1)) * c + k])
        }
        for oy in 0..<oh {
            let (y0, ty) = source(oy, ih, oh)
            for ox in 0..<ow {
                let (x0, tx) = source(ox, iw, ow)
                for k in 0..<c {
                    let rows = (-1...2).map { dy in interp1d((-1...2).map { at(y0 + dy, x0 + $0, k) }, tx) }
                    out[(oy * ow + ox) * c + k] = Float(interp1d(rows, ty))
                }
            }
        }
    }
}
