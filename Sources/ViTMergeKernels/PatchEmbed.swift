import ViTMergeCore

/// The shape of a patch embedding: images [B, C, H, W] cut into non-overlapping p×p patches on
/// a gridHeight × gridWidth grid (pixels beyond the grid are ignored), each flattened in
/// (channel, row, column) order to patchDim = C·p² values.
public struct PatchGeometry: Sendable, Equatable {
    public let channels, height, width, patch: Int
    public init(channels: Int, height: Int, width: Int, patch: Int) {
        precondition(channels >= 1 && patch >= 1 && height >= patch && width >= patch, "PatchGeometry: bad shape")
        (self.channels, self.height, self.width, self.patch) = (channels, height, width, patch)
    }
    public var gridHeight: Int { height / patch }
    public var gridWidth: Int { width / patch }
    public var numPatches: Int { gridHeight * gridWidth }
    public var patchDim: Int { channels * patch * patch }
    public var imageSize: Int { channels * height * width }
}

/// Patch embedding as timm's `PatchEmbed` + class token + position embedding: a stride-p
/// convolution is a linear map of each flattened patch (im2col, then one GEMM per image), the
/// class token (optional) goes first, and the position embedding is added to every token.
/// Forward, backward and JVP side by side; bit-identical for any thread count.
public enum PatchEmbed {
    // x[B,T,D] = [cls + pos[0] ;] patches[B,NP,PD] · weight[D,PD]ᵀ (+ bias) + pos[T,D], T = prefix + NP;
    // patches[B,NP,PD] = im2col(input[B,C,H,W]) (saved for the backward and the JVP)
    public static func forward(
        x: UnsafeMutablePointer<Float>, patches: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, cls: UnsafePointer<Float>?,
        pos: UnsafePointer<Float>, batch: Int, dim d: Int, geometry g: PatchGeometry, pool: ThreadPool = .shared
    ) {
        im2col(patches: patches, input: input, batch: batch, geometry: g, pool: pool)
        project(
            x: x, patches: patches, weight: weight, prefix: cls == nil ? 0 : 1, batch: batch, dim: d, geometry: g,
            pool: pool)
        addTokens(x: x, cls: cls, pos: pos, patchBias: bias, batch: batch, tokens: tokens(cls, g), dim: d, pool: pool)
    }

    /// dweight[D,PD] += Σ_b dx[b, prefix...]ᵀ · patches[b]; dbias[D] += Σ rows; dcls[D] += Σ_b dx[b,0];
    /// dpos[T,D] += Σ_b dx[b]. Gradients that are nil are skipped.
    public static func backward(
        dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?, dcls: UnsafeMutablePointer<Float>?,
        dpos: UnsafeMutablePointer<Float>, dx: UnsafePointer<Float>, patches: UnsafePointer<Float>,
        batch: Int, dim d: Int, geometry g: PatchGeometry, pool: ThreadPool = .shared
    ) {
        let prefix = dcls == nil ? 0 : 1, t = prefix + g.numPatches, (np, pd) = (g.numPatches, g.patchDim)
        for b in 0..<batch { Elementwise.axpy(y: dpos, x: dx + b * t * d, alpha: 1, count: t * d, pool: pool) }
        if let dcls { for b in 0..<batch { for i in 0..<d { dcls[i] += dx[b * t * d + i] } } }
        for b in 0..<batch {
            let rows = dx + (b * t + prefix) * d
            sgemm(
                transA: true, transB: false, m: d, n: pd, k: np, a: rows, lda: d, b: patches + b * np * pd, ldb: pd,
                beta: 1, c: dweight, ldc: pd, pool: pool)
            if let dbias { Elementwise.biasAddBackward(dbias: dbias, dout: rows, rows: np, cols: d, pool: pool) }
        }
    }

    /// dinput[B,C,H,W] (overwritten; 0 outside the grid) = col2im(dx[b, prefix...] · weight);
    /// dpatches[B,NP,PD] is scratch.
    public static func backwardInput(
        dinput: UnsafeMutablePointer<Float>, dpatches: UnsafeMutablePointer<Float>, dx: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, prefix: Int, batch: Int, dim d: Int, geometry g: PatchGeometry,
        pool: ThreadPool = .shared
    ) {
        let (np, pd, t) = (g.numPatches, g.patchDim, prefix + g.numPatches)
        sgemmBatched(
            transA: false, transB: false, m: np, n: pd, k: d,
            a: dx + prefix * d, lda: d, strideA: (t * d, 0), b: weight, ldb: pd, strideB: (0, 0),
            beta: 0, c: dpatches, ldc: pd, strideC: (np * pd, 0), batch: (batch, 1), pool: pool)
        col2im(input: dinput, patches: dpatches, batch: batch, geometry: g)
    }

    /// Tangent for parameter tangents (the input is not perturbed), from the saved patches:
    /// tx[B,T,D] = [tcls + tpos[0] ;] patches · tweightᵀ (+ tbias) + tpos.
    public static func jvp(
        tx: UnsafeMutablePointer<Float>, patches: UnsafePointer<Float>, tweight: UnsafePointer<Float>,
        tbias: UnsafePointer<Float>?, tcls: UnsafePointer<Float>?, tpos: UnsafePointer<Float>,
        batch: Int, dim d: Int, geometry g: PatchGeometry, pool: ThreadPool = .shared
    ) {
        project(
            x: tx, patches: patches, weight: tweight, prefix: tcls == nil ? 0 : 1, batch: batch, dim: d,
            geometry: g, pool: pool)
        addTokens(
            x: tx, cls: tcls, pos: tpos, patchBias: tbias, batch: batch, tokens: tokens(tcls, g), dim: d, pool: pool)
    }

    @inline(__always) static func tokens(_ cls: UnsafePointer<Float>?, _ g: PatchGeometry) -> Int {
        (cls == nil ? 0 : 1) + g.numPatches
    }

    // x[b, prefix + i, :] = patches[b, i, :] · weight[D,PD]ᵀ (one GEMM per image)
    static func project(
        x: UnsafeMutablePointer<Float>, patches: UnsafePointer<Float>, weight: UnsafePointer<Float>, prefix: Int,
        batch: Int, dim d: Int, geometry g: PatchGeometry, pool: ThreadPool
    ) {
        let (np, pd, t) = (g.numPatches, g.patchDim, prefix + g.numPatches)
        sgemmBatched(
            transA: false, transB: true, m: np, n: d, k: pd,
            a: patches, lda: pd, strideA: (np * pd, 0), b: weight, ldb: pd, strideB: (0, 0),
            beta: 0, c: x + prefix * d, ldc: d, strideC: (t * d, 0), batch: (batch, 1), pool: pool)
    }

    // x[b,0] = cls + pos[0] (with a class token); x[b,r] = (x[b,r] + patchBias) + pos[r], or x[b,r] += pos[r]
    public static func addTokens(
        x: UnsafeMutablePointer<Float>, cls: UnsafePointer<Float>?, pos: UnsafePointer<Float>,
        patchBias: UnsafePointer<Float>?, batch: Int, tokens t: Int, dim d: Int, pool: ThreadPool = .shared
    ) {
        let prefix = cls == nil ? 0 : 1
        pool.parallel(batch, cost: 3 * t * d) { _, _, range in
            for b in range {
                let xb = x + b &* t &* d
                if let cls {
                    var i = 0
                    while i &+ 16 <= d { vstore(vload(cls + i) + vload(pos + i), xb + i); i &+= 16 }
                    while i < d { xb[i] = cls[i] + pos[i]; i &+= 1 }
                }
                for r in prefix..<t {
                    let row = xb + r &* d, pr = pos + r &* d
                    var i = 0
                    if let patchBias {
                        while i &+ 16 <= d {
                            vstore((vload(row + i) + vload(patchBias + i)) + vload(pr + i), row + i); i &+= 16
                        }
                        while i < d { row[i] = (row[i] + patchBias[i]) + pr[i]; i &+= 1 }
                    } else {
                        while i &+ 16 <= d { vstore(vload(row + i) + vload(pr + i), row + i); i &+= 16 }
                        while i < d { row[i] += pr[i]; i &+= 1 }
                    }
                }
            }
        }
    }

    /// patches[b, gy·gw + gx, ch·p² + i·p + j] = input[b, ch, gy·p + i, gx·p + j]
    public static func im2col(
        patches: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int, geometry g: PatchGeometry,
        pool: ThreadPool = .shared
    ) {
        let (ps, gw, gh, h, w, pd, ch) = (g.patch, g.gridWidth, g.gridHeight, g.height, g.width, g.patchDim, g.channels)
        pool.parallel(batch, cost: 2 * g.imageSize) { _, _, range in
            for b in range {
                for gy in 0..<gh {
                    for gx in 0..<gw {
                        let dst = patches + ((b * gh + gy) * gw + gx) * pd
                        for c in 0..<ch {
                            for i in 0..<ps {
                                let src = input + ((b * ch + c) * h + gy * ps + i) * w + gx * ps
                                (dst + (c * ps + i) * ps).update(from: src, count: ps)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The inverse scatter of `im2col` (patches do not overlap): input[B,C,H,W] is overwritten,
    /// pixels outside the grid get 0.
    public static func col2im(
        input: UnsafeMutablePointer<Float>, patches: UnsafePointer<Float>, batch: Int, geometry g: PatchGeometry
    ) {
        let (ps, gw, gh, h, w, pd, ch) = (g.patch, g.gridWidth, g.gridHeight, g.height, g.width, g.patchDim, g.channels)
        input.update(repeating: 0, count: batch * g.imageSize)
        for b in 0..<batch {
            for gy in 0..<gh {
                for gx in 0..<gw {
                    let src = patches + ((b * gh + gy) * gw + gx) * pd
                    for c in 0..<ch {
                        for i in 0..<ps {
                            let dst = input + ((b * ch + c) * h + gy * ps + i) * w + gx * ps
                            dst.update(from: src + (c * ps + i) * ps, count: ps)
                        }
                    }
                }
            }
        }
    }

    // MARK: Reference (plain loops, Double accumulation)

    /// x[B,T,D] by direct convolution sums, for tests.
    public static func forwardReference(
        x: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, cls: UnsafePointer<Float>?, pos: UnsafePointer<Float>,
        batch: Int, dim d: Int, geometry g: PatchGeometry
    ) {
        let prefix = cls == nil ? 0 : 1, t = prefix + g.numPatches, ps = g.patch
        for b in 0..<batch {
            if let cls { for o in 0..<d { x[b * t * d + o] = Float(Double(cls[o]) + Double(pos[o])) } }
            for gy in 0..<g.gridHeight {
                for gx in 0..<g.gridWidth {
                    let r = prefix + gy * g.gridWidth + gx
                    for o in 0..<d {
                        var s = bias.map { Double($0[o]) } ?? 0
                        for c in 0..<g.channels {
                            for i in 0..<ps {
                                for j in 0..<ps {
                                    let pix = input[
                                        ((b * g.channels + c) * g.height + gy * ps + i) * g.width + gx * ps + j]
                                    s += Double(weight[o * g.patchDim + (c * ps + i) * ps + j]) * Double(pix)
                                }
                            }
                        }
                        x[(b * t + r) * d + o] = Float(s + Double(pos[r * d + o]))
                    }
                }
            }
        }
    }
}
