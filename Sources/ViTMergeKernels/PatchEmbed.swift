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

/// The tokens in front of the patches (timm's prefix tokens): an optional class token, then
/// `registers` register tokens; and whether the position embedding has rows for them too.
public struct PrefixTokens: Sendable, Equatable {
    public let classToken: Bool
    public let registers: Int
    /// true: pos[T,D] has a row for every token (timm's default); false: pos[NP,D] covers only the
    /// patches and the prefix tokens get none (timm's `no_embed_class`).
    public let posEmbedPrefix: Bool
    public init(classToken: Bool, registers: Int = 0, posEmbedPrefix: Bool = true) {
        precondition(registers >= 0, "PrefixTokens: negative register count")
        (self.classToken, self.registers, self.posEmbedPrefix) = (classToken, registers, posEmbedPrefix)
    }
    /// Number of prefix tokens (timm's `num_prefix_tokens`).
    public var count: Int { (classToken ? 1 : 0) + registers }
    /// Rows of the position embedding for `patches` patch tokens.
    public func posRows(patches: Int) -> Int { posEmbedPrefix ? count + patches : patches }
}

/// Patch embedding as timm's `PatchEmbed` + `_pos_embed`: a stride-p convolution is a linear map
/// of each flattened patch (im2col, then one GEMM per image); the tokens are [cls, reg×R, patches]
/// (class and register tokens optional); the position embedding is added to every token, or only to
/// the patches when it has no prefix rows (`no_embed_class`).
/// Forward, backward and JVP side by side; bit-identical for any thread count.
public enum PatchEmbed {
    // x[B,T,D] = [cls (+ pos[0]) ; reg[R,D] (+ pos[c..<c+R]) ;] patches[B,NP,PD] · weight[D,PD]ᵀ (+ bias) + pos,
    // T = prefix.count + NP, pos [T,D] or [NP,D] (prefix.posEmbedPrefix false);
    // patches[B,NP,PD] = im2col(input[B,C,H,W]) (saved for the backward and the JVP)
    public static func forward(
        x: UnsafeMutablePointer<Float>, patches: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, cls: UnsafePointer<Float>?,
        reg: UnsafePointer<Float>? = nil, pos: UnsafePointer<Float>, prefix: PrefixTokens, batch: Int, dim d: Int,
        geometry g: PatchGeometry, pool: ThreadPool = .shared
    ) {
        check(cls, reg, prefix)
        im2col(patches: patches, input: input, batch: batch, geometry: g, pool: pool)
        project(
            x: x, patches: patches, weight: weight, prefix: prefix.count, batch: batch, dim: d, geometry: g, pool: pool)
        addTokens(
            x: x, cls: cls, reg: reg, pos: pos, patchBias: bias, prefix: prefix, batch: batch, patches: g.numPatches,
            dim: d, pool: pool)
    }

    /// dweight[D,PD] += Σ_b dx[b, prefix...]ᵀ · patches[b]; dbias[D] += Σ rows; dcls[D] += Σ_b dx[b,0];
    /// dreg[R,D] += Σ_b dx[b, c..<c+R]; dpos += Σ_b dx[b] ([T,D]) or Σ_b dx[b, prefix...] ([NP,D]).
    /// Gradients that are nil are skipped (dcls and dreg must match `prefix`).
    public static func backward(
        dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?, dcls: UnsafeMutablePointer<Float>?,
        dreg: UnsafeMutablePointer<Float>? = nil, dpos: UnsafeMutablePointer<Float>, dx: UnsafePointer<Float>,
        patches: UnsafePointer<Float>, prefix pt: PrefixTokens, batch: Int, dim d: Int, geometry g: PatchGeometry,
        pool: ThreadPool = .shared
    ) {
        check(dcls, dreg, pt)
        let prefix = pt.count, t = prefix + g.numPatches, (np, pd) = (g.numPatches, g.patchDim)
        if pt.posEmbedPrefix {
            for b in 0..<batch { Elementwise.axpy(y: dpos, x: dx + b * t * d, alpha: 1, count: t * d, pool: pool) }
        } else {
            for b in 0..<batch {
                Elementwise.axpy(y: dpos, x: dx + (b * t + prefix) * d, alpha: 1, count: np * d, pool: pool)
            }
        }
        if let dcls { for b in 0..<batch { for i in 0..<d { dcls[i] += dx[b * t * d + i] } } }
        if let dreg {
            let first = pt.classToken ? 1 : 0, n = pt.registers * d
            for b in 0..<batch { for i in 0..<n { dreg[i] += dx[(b * t + first) * d + i] } }
        }
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
    /// tx[B,T,D] = [tcls (+ tpos[0]) ; treg (+ tpos) ;] patches · tweightᵀ (+ tbias) + tpos, as `forward`.
    public static func jvp(
        tx: UnsafeMutablePointer<Float>, patches: UnsafePointer<Float>, tweight: UnsafePointer<Float>,
        tbias: UnsafePointer<Float>?, tcls: UnsafePointer<Float>?, treg: UnsafePointer<Float>? = nil,
        tpos: UnsafePointer<Float>, prefix: PrefixTokens, batch: Int, dim d: Int, geometry g: PatchGeometry,
        pool: ThreadPool = .shared
    ) {
        check(tcls, treg, prefix)
        project(
            x: tx, patches: patches, weight: tweight, prefix: prefix.count, batch: batch, dim: d, geometry: g,
            pool: pool)
        addTokens(
            x: tx, cls: tcls, reg: treg, pos: tpos, patchBias: tbias, prefix: prefix, batch: batch,
            patches: g.numPatches, dim: d, pool: pool)
    }

    @inline(__always) static func check<P>(_ cls: P?, _ reg: P?, _ prefix: PrefixTokens) {
        precondition(
            (cls != nil) == prefix.classToken && (reg != nil) == (prefix.registers > 0),
            "PatchEmbed: class/register token pointers do not match the prefix tokens")
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

    // Prefix rows: x[b,0] = cls (+ pos[0]); x[b,c+j] = reg[j] (+ pos[c+j]) — "+ pos" only with
    // prefix.posEmbedPrefix. Patch rows r ≥ prefix: x[b,r] = (x[b,r] + patchBias) + pos[q], or
    // x[b,r] += pos[q], with q = r (pos [T,D]) or r − prefix (pos [NP,D]).
    public static func addTokens(
        x: UnsafeMutablePointer<Float>, cls: UnsafePointer<Float>?, reg: UnsafePointer<Float>?,
        pos: UnsafePointer<Float>, patchBias: UnsafePointer<Float>?, prefix pt: PrefixTokens, batch: Int,
        patches np: Int, dim d: Int, pool: ThreadPool = .shared
    ) {
        check(cls, reg, pt)
        let prefix = pt.count, t = prefix &+ np, posPrefix = pt.posEmbedPrefix
        // row[D] = token[D] (+ pos[D])
        @inline(__always) func setPrefixRow(
            _ row: UnsafeMutablePointer<Float>, _ token: UnsafePointer<Float>, _ p: UnsafePointer<Float>
        ) {
            guard posPrefix else { row.update(from: token, count: d); return }
            var i = 0
            while i &+ 16 <= d { vstore(vload(token + i) + vload(p + i), row + i); i &+= 16 }
            while i < d { row[i] = token[i] + p[i]; i &+= 1 }
        }
        pool.parallel(batch, cost: 3 * t * d) { _, _, range in
            for b in range {
                let xb = x + b &* t &* d
                var r = 0
                if let cls { setPrefixRow(xb, cls, pos); r = 1 }
                if let reg {
                    for j in 0..<pt.registers { setPrefixRow(xb + (r &+ j) &* d, reg + j &* d, pos + (r &+ j) &* d) }
                }
                for r in prefix..<t {
                    let row = xb + r &* d, pr = pos + (posPrefix ? r : r &- prefix) &* d
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

    /// x[B,T,D] by direct convolution sums, for tests (tokens and pos layout as `forward`).
    public static func forwardReference(
        x: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, cls: UnsafePointer<Float>?, reg: UnsafePointer<Float>? = nil,
        pos: UnsafePointer<Float>, prefix pt: PrefixTokens, batch: Int, dim d: Int, geometry g: PatchGeometry
    ) {
        check(cls, reg, pt)
        let prefix = pt.count, t = prefix + g.numPatches, ps = g.patch
        // Position-embedding row of token r, or nil (a prefix token without a row).
        func posRow(_ r: Int) -> Int? { pt.posEmbedPrefix ? r : (r >= prefix ? r - prefix : nil) }
        func posValue(_ r: Int, _ o: Int) -> Double { posRow(r).map { Double(pos[$0 * d + o]) } ?? 0 }
        for b in 0..<batch {
            for j in 0..<prefix {
                let isCls = pt.classToken && j == 0
                let token = isCls ? cls! : reg! + (j - (pt.classToken ? 1 : 0)) * d
                for o in 0..<d { x[(b * t + j) * d + o] = Float(Double(token[o]) + posValue(j, o)) }
            }
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
                        x[(b * t + r) * d + o] = Float(s + posValue(r, o))
                    }
                }
            }
        }
    }
}
