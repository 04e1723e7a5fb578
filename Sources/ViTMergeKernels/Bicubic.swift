/// Antialiased bicubic resizing as PyTorch's `F.interpolate(mode="bicubic", align_corners=False,
/// antialias=True)` (`_upsample_bicubic2d_aa`, the default of timm's `resample_abs_pos_embed` and
/// `checkpoint_filter_fn`): separable, first along the width, then along the height; per axis and
/// output index o, with scale s = in/out, the Keys cubic k (A = −0.5) stretched by max(1, s)
/// (support 2·max(1, s) source pixels each side), centred at s·(o + 0.5), evaluated at the source
/// pixels of the window clipped to the input (no border replication) and normalized to sum 1.
/// Everything is in Float with PyTorch's float/double promotions, each Horner step of k and each
/// accumulation fused (one rounding), as PyTorch's x86 build computes them. An axis whose size
/// does not change is copied. Used once at load time to resample a checkpoint's position
/// embedding to another patch grid. Not differentiated.
public enum Bicubic {
    /// The Keys cubic-convolution coefficient A that PyTorch's antialiased bicubic uses.
    public static let a: Float = -0.5

    /// Keys' cubic k(x) with A = −0.5: (A+2)|x|³ − (A+3)|x|² + 1 for |x| < 1,
    /// A|x|³ − 5A|x|² + 8A|x| − 4A for 1 ≤ |x| < 2, 0 beyond (PyTorch's `aa_filter`).
    static func cubic(_ x: Float) -> Float {
        let x = abs(x)
        if x < 1 { return Float(1).addingProduct((-(a + 3)).addingProduct(a + 2, x) * x, x) }
        if x < 2 { return (-4 * a).addingProduct((8 * a).addingProduct((-5 * a).addingProduct(a, x), x), x) }
        return 0
    }

    /// The source window of every output index along one axis: out[o] = Σ_j weight[o][j]·in[start[o] + j]
    /// (PyTorch's `_compute_indices_min_size_weights_aa` for float).
    static func taps(inSize: Int, outSize: Int) -> (start: [Int], weight: [[Float]]) {
        let scale = Float(inSize) / Float(outSize)
        let support: Float = scale >= 1 ? Float(2 * Double(scale)) : 2
        let maxTaps = Int(support.rounded(.up)) * 2 + 1
        let invScale: Float = scale >= 1 ? Float(1 / Double(scale)) : 1
        var start = [Int](repeating: 0, count: outSize), weight = [[Float]](repeating: [], count: outSize)
        for o in 0..<outSize {
            let center = Float(Double(scale) * (Double(o) + 0.5))
            let first = max(Int(Double(center - support) + 0.5), 0)
            let count = min(max(min(Int(Double(center + support) + 0.5), inSize) - first, 0), maxTaps)
            var w = (0..<count).map { j in
                cubic(Float((Double(Float(first + j) - center) + 0.5) * Double(invScale)))
            }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            (start[o], weight[o]) = (first, w)
        }
        return (start, weight)
    }

    // out[outer, outSize, inner] = Σ_j w[o][j]·inp[outer, start[o] + j, inner], the sum over j in order
    static func resizeAxis(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, outer: Int, inSize: Int, outSize: Int,
        inner: Int
    ) {
        let (start, weight) = taps(inSize: inSize, outSize: outSize)
        for p in 0..<outer {
            let src = inp + p &* inSize &* inner, dst = out + p &* outSize &* inner
            for o in 0..<outSize {
                let w = weight[o], row = src + start[o] &* inner, d = dst + o &* inner
                guard let w0 = w.first else {
                    d.update(repeating: 0, count: inner)
                    continue
                }
                for k in 0..<inner { d[k] = row[k] * w0 }
                for j in 1..<w.count {
                    let r = row + j &* inner, wj = w[j]
                    for k in 0..<inner { d[k] = d[k].addingProduct(r[k], wj) }
                }
            }
        }
    }

    // out[OH,OW,C] = antialiased bicubic resize of inp[IH,IW,C] (channels last: each pixel's C values contiguous)
    public static func resize(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, channels c: Int, inHeight ih: Int,
        inWidth iw: Int, outHeight oh: Int, outWidth ow: Int
    ) {
        precondition(c >= 1 && ih >= 1 && iw >= 1 && oh >= 1 && ow >= 1, "Bicubic.resize: bad shape")
        switch (iw == ow, ih == oh) {
        case (true, true):
            out.update(from: inp, count: ih * iw * c)
        case (false, true):
            resizeAxis(out: out, inp: inp, outer: ih, inSize: iw, outSize: ow, inner: c)
        case (true, false):
            resizeAxis(out: out, inp: inp, outer: 1, inSize: ih, outSize: oh, inner: iw * c)
        case (false, false):
            var rows = [Float](repeating: 0, count: ih * ow * c)  // tmp[IH, OW, C]
            rows.withUnsafeMutableBufferPointer { tmp in
                resizeAxis(out: tmp.baseAddress!, inp: inp, outer: ih, inSize: iw, outSize: ow, inner: c)
                resizeAxis(out: out, inp: tmp.baseAddress!, outer: 1, inSize: ih, outSize: oh, inner: ow * c)
            }
        }
    }

    /// timm's `resample_abs_pos_embed` (antialias True, its default): pos[P + IH·IW, D] →
    /// out[P + OH·OW, D]; the first `prefix` rows (class and register tokens) are copied, the grid
    /// rows (row-major over the patch grid) are resized with `resize`.
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

    /// The same resize written from the definition, for tests: in Double, not separable, every
    /// source pixel weighted by k((x + 0.5 − s·(o + 0.5)) / max(1, s)) per axis (zero outside the
    /// support, so no window is computed), the 2-D weights wy·wx normalized per axis.
    public static func resizeReference(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, channels c: Int, inHeight ih: Int,
        inWidth iw: Int, outHeight oh: Int, outWidth ow: Int
    ) {
        func k(_ x: Double) -> Double {
            let a = Double(Bicubic.a), x = abs(x)
            if x < 1 { return (a + 2) * x * x * x - (a + 3) * x * x + 1 }
            if x < 2 { return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a }
            return 0
        }
        func weights(_ o: Int, _ inSize: Int, _ outSize: Int) -> [Double] {
            if inSize == outSize { return (0..<inSize).map { $0 == o ? 1 : 0 } }
            let s = Double(inSize) / Double(outSize), stretch = max(1, s), center = s * (Double(o) + 0.5)
            let w = (0..<inSize).map { k((Double($0) + 0.5 - center) / stretch) }
            let total = w.reduce(0, +)
            return w.map { $0 / total }
        }
        for oy in 0..<oh {
            let wy = weights(oy, ih, oh)
            for ox in 0..<ow {
                let wx = weights(ox, iw, ow)
                for ch in 0..<c {
                    var sum = 0.0
                    for y in 0..<ih where wy[y] != 0 {
                        for x in 0..<iw where wx[x] != 0 { sum += wy[y] * wx[x] * Double(inp[(y * iw + x) * c + ch]) }
                    }
                    out[(oy * ow + ox) * c + ch] = Float(sum)
                }
            }
        }
    }
}
