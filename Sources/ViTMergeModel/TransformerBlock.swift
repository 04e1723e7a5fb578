import ViTMergeCore
import ViTMergeKernels

/// The shape of a stack of pre-norm transformer blocks (timm's `Block`), per sequence of `tokens`:
/// x ← x + proj(attn(qkv(ln1(x)))), then x ← x + fc2(act(fc1(ln2(x)))), each branch scaled per
/// channel by γ (timm's LayerScale, `ls1`/`ls2`) when `layerScale`. The ViT encoder is one such
/// stack; a masked-autoencoder decoder or a text tower is another with its own shape.
public struct BlockShape: Sendable, Equatable {
    public var tokens, dim, hidden, heads: Int
    public var qkvBias: Bool
    public var activation: ViTConfig.Activation
    public var eps: Float
    /// Each residual branch is scaled by a learned per-channel γ (timm's `init_values` set).
    public var layerScale: Bool

    public init(
        tokens: Int, dim: Int, hidden: Int, heads: Int, qkvBias: Bool = true,
        activation: ViTConfig.Activation = .gelu, eps: Float = 1e-6, layerScale: Bool = false
    ) {
        precondition(tokens >= 1 && dim >= 1 && hidden >= 1 && heads >= 1 && dim % heads == 0, "BlockShape: bad shape")
        (self.tokens, self.dim, self.hidden, self.heads) = (tokens, dim, hidden, heads)
        self.qkvBias = qkvBias
        self.activation = activation
        self.eps = eps
        self.layerScale = layerScale
    }
}

/// Offsets (in floats, from the arena base) of one transformer block's tensors.
public struct BlockOffsets: Sendable {
    public let norm1W, norm1B, qkvW: Int
    public let qkvB: Int?
    public let projW, projB, norm2W, norm2B, fc1W, fc1B, fc2W, fc2B: Int
    /// LayerScale γ of the attention and MLP branches (with `BlockShape.layerScale`).
    public let ls1, ls2: Int?

    /// Adds one block's tensors under `prefix` (e.g. "blocks.3.") in timm's order and names.
    public init(adding l: inout Arena.Layout, prefix p: String, shape s: BlockShape) {
        let (d, f) = (s.dim, s.hidden)
        norm1W = l.add(p + "norm1.weight", [d])
        norm1B = l.add(p + "norm1.bias", [d])
        qkvW = l.add(p + "attn.qkv.weight", [3 * d, d])
        qkvB = s.qkvBias ? l.add(p + "attn.qkv.bias", [3 * d]) : nil
        projW = l.add(p + "attn.proj.weight", [d, d])
        projB = l.add(p + "attn.proj.bias", [d])
        ls1 = s.layerScale ? l.add(p + "ls1.gamma", [d]) : nil
        norm2W = l.add(p + "norm2.weight", [d])
        norm2B = l.add(p + "norm2.bias", [d])
        fc1W = l.add(p + "mlp.fc1.weight", [f, d])
        fc1B = l.add(p + "mlp.fc1.bias", [f])
        fc2W = l.add(p + "mlp.fc2.weight", [d, f])
        fc2B = l.add(p + "mlp.fc2.bias", [d])
        ls2 = s.layerScale ? l.add(p + "ls2.gamma", [d]) : nil
    }
}

/// Offsets of one block's saved activations, for up to `capacity` sequences.
struct BlockActivations {
    let ln1, ln1Mean, ln1Rstd, qkv, att, attnOut, res1, ln2, ln2Mean, ln2Rstd, fc1, act, out: Int
    /// With LayerScale: the branch outputs before γ (proj + bias, fc2 + bias), for γ's gradient.
    let projOut, mlpOut: Int?

    init(adding l: inout Arena.Layout, prefix p: String, shape s: BlockShape, capacity b: Int) {
        let (t, d, f, h) = (s.tokens, s.dim, s.hidden, s.heads)
        ln1 = l.add(p + "ln1", [b, t, d])
        ln1Mean = l.add(p + "ln1.mean", [b, t])
        ln1Rstd = l.add(p + "ln1.rstd", [b, t])
        qkv = l.add(p + "qkv", [b, t, 3 * d])
        att = l.add(p + "att", [b, h, t, t])
        attnOut = l.add(p + "attnOut", [b, t, d])
        res1 = l.add(p + "res1", [b, t, d])
        ln2 = l.add(p + "ln2", [b, t, d])
        ln2Mean = l.add(p + "ln2.mean", [b, t])
        ln2Rstd = l.add(p + "ln2.rstd", [b, t])
        fc1 = l.add(p + "fc1", [b, t, f])
        act = l.add(p + "act", [b, t, f])
        out = l.add(p + "out", [b, t, d])
        projOut = s.layerScale ? l.add(p + "projOut", [b, t, d]) : nil
        mlpOut = s.layerScale ? l.add(p + "mlpOut", [b, t, d]) : nil
    }
}

/// Backward scratch shared by the blocks of a stack (one block's worth).
struct BlockScratch {
    let dqkv, datt, dattnOut, dhidden: Int
    /// With LayerScale: the gradient of a branch output before γ.
    let dbranch: Int?

    init(adding l: inout Arena.Layout, prefix p: String, shape s: BlockShape, capacity b: Int) {
        let (t, d, f, h) = (s.tokens, s.dim, s.hidden, s.heads)
        dqkv = l.add(p + "d.qkv", [b, t, 3 * d])
        datt = l.add(p + "d.att", [b, h, t, t])
        dattnOut = l.add(p + "d.attnOut", [b, t, d])
        dhidden = l.add(p + "d.hidden", [b, t, f])
        dbranch = s.layerScale ? l.add(p + "d.branch", [b, t, d]) : nil
    }
}

/// Tangent scratch shared by the blocks of a stack in the JVP.
struct BlockTangents {
    let ln, qkv, att, attnOut, proj, hidden, act: Int

    init(adding l: inout Arena.Layout, prefix p: String, shape s: BlockShape, capacity b: Int) {
        let (t, d, f, h) = (s.tokens, s.dim, s.hidden, s.heads)
        ln = l.add(p + "ln", [b, t, d])
        qkv = l.add(p + "qkv", [b, t, 3 * d])
        att = l.add(p + "att", [b, h, t, t])
        attnOut = l.add(p + "attnOut", [b, t, d])
        proj = l.add(p + "proj", [b, t, d])
        hidden = l.add(p + "hidden", [b, t, f])
        act = l.add(p + "act", [b, t, f])
    }
}

/// A stack of transformer blocks of one shape, its parameters at `params` in some arena. Forward,
/// backward and JVP are lists of kernel calls (llm.c's `gpt2_forward` loop body), on pointers:
/// parameters `p`, gradients `g` and tangents `v` share one layout; saved activations and scratch
/// live in the caller's activation arena `a` at the offsets given.
public struct BlockStack: Sendable {
    public let shape: BlockShape
    public let params: [BlockOffsets]

    public init(shape: BlockShape, params: [BlockOffsets]) {
        self.shape = shape
        self.params = params
    }

    /// Runs x[B,T,D] through every block, saving what the backward needs (the attention
    /// probabilities only when `saveProbabilities`); returns the stack's output (the last block's
    /// `out`, or `x` itself for an empty stack).
    func forward(
        x input: UnsafePointer<Float>, batch: Int, params p: UnsafePointer<Float>, acts: [BlockActivations],
        in a: UnsafeMutablePointer<Float>, saveProbabilities: Bool = true, pool: ThreadPool
    ) -> UnsafePointer<Float> {
        let s = shape
        let (t, d, f) = (s.tokens, s.dim, s.hidden)
        let n = batch * t
        var x = input
        for l in 0..<params.count {
            let o = params[l]  // (an index loop: enumerated() allocates in debug builds)
            let b = acts[l]
            LayerNorm.forward(
                out: a + b.ln1, mean: a + b.ln1Mean, rstd: a + b.ln1Rstd, inp: x, weight: p + o.norm1W,
                bias: p + o.norm1B, rows: n, cols: d, eps: s.eps, pool: pool)
            // qkv[B,T,3D] = ln1 · W_qkvᵀ (+ b)
            Linear.forward(
                out: a + b.qkv, inp: a + b.ln1, weight: p + o.qkvW, bias: o.qkvB.map { p + $0 }, rows: n,
                inFeatures: d, outFeatures: 3 * d, pool: pool)
            Attention.forward(
                out: a + b.attnOut, att: a + b.att, qkv: a + b.qkv, batch: batch, tokens: t, dim: d, heads: s.heads,
                saveProbabilities: saveProbabilities, pool: pool)
            // res1[B,T,D] = x + (attnOut · W_projᵀ + b_proj), the branch scaled by γ1 with LayerScale
            if let ls1 = o.ls1, let projOut = b.projOut {
                Linear.forward(
                    out: a + projOut, inp: a + b.attnOut, weight: p + o.projW, bias: p + o.projB, rows: n,
                    inFeatures: d, outFeatures: d, pool: pool)
                LayerScale.forward(
                    out: a + b.res1, residual: x, inp: a + projOut, gamma: p + ls1, rows: n, cols: d, pool: pool)
            } else {
                Linear.forward(
                    out: a + b.res1, inp: a + b.attnOut, weight: p + o.projW, bias: nil, rows: n, inFeatures: d,
                    outFeatures: d, pool: pool)
                Residual.forward(
                    out: a + b.res1, residual: x, inp: a + b.res1, bias: p + o.projB, rows: n, cols: d, pool: pool)
            }
            LayerNorm.forward(
                out: a + b.ln2, mean: a + b.ln2Mean, rstd: a + b.ln2Rstd, inp: a + b.res1, weight: p + o.norm2W,
                bias: p + o.norm2B, rows: n, cols: d, eps: s.eps, pool: pool)
            // fc1[B,T,F] = ln2 · W_fc1ᵀ + b; act = gelu(fc1)
            Linear.forward(
                out: a + b.fc1, inp: a + b.ln2, weight: p + o.fc1W, bias: p + o.fc1B, rows: n, inFeatures: d,
                outFeatures: f, pool: pool)
            switch s.activation {
            case .gelu: GELU.forward(out: a + b.act, inp: a + b.fc1, count: n * f, pool: pool)
            case .quickGELU: QuickGELU.forward(out: a + b.act, inp: a + b.fc1, count: n * f, pool: pool)
            }
            // out[B,T,D] = res1 + (act · W_fc2ᵀ + b_fc2), the branch scaled by γ2 with LayerScale
            if let ls2 = o.ls2, let mlpOut = b.mlpOut {
                Linear.forward(
                    out: a + mlpOut, inp: a + b.act, weight: p + o.fc2W, bias: p + o.fc2B, rows: n, inFeatures: f,
                    outFeatures: d, pool: pool)
                LayerScale.forward(
                    out: a + b.out, residual: a + b.res1, inp: a + mlpOut, gamma: p + ls2, rows: n, cols: d,
                    pool: pool)
            } else {
                Linear.forward(
                    out: a + b.out, inp: a + b.act, weight: p + o.fc2W, bias: nil, rows: n, inFeatures: f,
                    outFeatures: d, pool: pool)
                Residual.forward(
                    out: a + b.out, residual: a + b.res1, inp: a + b.out, bias: p + o.fc2B, rows: n, cols: d,
                    pool: pool)
            }
            x = UnsafePointer(a + b.out)
        }
        return x
    }

    /// Backward through the stack for the batch of the last `forward` from input `x`: `dx` [B,T,D]
    /// holds dLoss/d(stack output) on entry and dLoss/d(stack input) on return; `dln` [B,T,D] is
    /// scratch. Parameter gradients accumulate (+=) into `g`. The MLP activations are consumed as
    /// scratch. `gradientReady` is told each block's parameter range, last block first, as soon as
    /// it is final; `end` is the offset just past the last block's parameters.
    ///
    /// The key third of each qkv bias gets an exactly-zero gradient: softmax is invariant to the
    /// q·b_k shift it causes, so its true gradient is 0 (float rounding would give ~1e-8 noise that
    /// Adam amplifies; torch's golden runs zero it the same way).
    func backward(
        dx dres: UnsafeMutablePointer<Float>, dln: UnsafeMutablePointer<Float>, x input: UnsafePointer<Float>,
        batch: Int, params p: UnsafePointer<Float>, grads g: UnsafeMutablePointer<Float>, acts: [BlockActivations],
        scratch sc: BlockScratch, in a: UnsafeMutablePointer<Float>, end: Int, pool: ThreadPool,
        gradientReady: ((Range<Int>) -> Void)?
    ) {
        let s = shape
        let (t, d, f, h) = (s.tokens, s.dim, s.hidden, s.heads)
        let n = batch * t
        let dhidden = a + sc.dhidden, dattn = a + sc.dattnOut, dqkv = a + sc.dqkv
        for r in 0..<params.count {  // blocks in reverse (an index loop: stride allocates in debug builds)
            let l = params.count - 1 - r
            let o = params[l], b = acts[l]
            let blockIn = l > 0 ? UnsafePointer(a + acts[l - 1].out) : input
            // MLP: out = res1 + fc2(act(fc1(ln2))) + b
            // dhidden[B,T,F] = dres · W_fc2; dW_fc2 += dresᵀ · act; db_fc2 += Σ dres (the residual passes dres on)
            if let ls2 = o.ls2, let mlpOut = b.mlpOut, let db = sc.dbranch {
                // LayerScale: the branch gets γ2 ⊙ dres; dγ2 += Σ dres ⊙ (fc2 + b)
                LayerScale.backward(
                    dinp: a + db, dgamma: g + ls2, dout: dres, inp: a + mlpOut, gamma: p + ls2, rows: n, cols: d,
                    pool: pool)
                Linear.backward(
                    dinp: dhidden, dweight: g + o.fc2W, dbias: g + o.fc2B, dout: a + db, inp: a + b.act,
                    weight: p + o.fc2W,
                    rows: n, inFeatures: f, outFeatures: d, pool: pool)
            } else {
                Linear.backward(
                    dinp: dhidden, dweight: g + o.fc2W, dbias: g + o.fc2B, dout: dres, inp: a + b.act,
                    weight: p + o.fc2W,
                    rows: n, inFeatures: f, outFeatures: d, pool: pool)
            }
            let dfc1 = a + b.act  // the activation is no longer needed: reuse it for dfc1
            dfc1.update(repeating: 0, count: n * f)
            switch s.activation {
            case .gelu: GELU.backward(dinp: dfc1, inp: a + b.fc1, dout: dhidden, count: n * f, pool: pool)
            case .quickGELU: QuickGELU.backward(dinp: dfc1, inp: a + b.fc1, dout: dhidden, count: n * f, pool: pool)
            }
            Linear.backward(
                dinp: dln, dweight: g + o.fc1W, dbias: g + o.fc1B, dout: dfc1, inp: a + b.ln2, weight: p + o.fc1W,
                rows: n, inFeatures: d, outFeatures: f, pool: pool)
            LayerNorm.backward(
                dinp: dres, dweight: g + o.norm2W, dbias: g + o.norm2B, dout: dln, inp: a + b.res1,
                weight: p + o.norm2W, mean: a + b.ln2Mean, rstd: a + b.ln2Rstd, rows: n, cols: d, pool: pool)
            // Attention: res1 = x + proj(attn(qkv(ln1(x)))) + b
            if let ls1 = o.ls1, let projOut = b.projOut, let db = sc.dbranch {
                LayerScale.backward(
                    dinp: a + db, dgamma: g + ls1, dout: dres, inp: a + projOut, gamma: p + ls1, rows: n, cols: d,
                    pool: pool)
                Linear.backward(
                    dinp: dattn, dweight: g + o.projW, dbias: g + o.projB, dout: a + db, inp: a + b.attnOut,
                    weight: p + o.projW, rows: n, inFeatures: d, outFeatures: d, pool: pool)
            } else {
                Linear.backward(
                    dinp: dattn, dweight: g + o.projW, dbias: g + o.projB, dout: dres, inp: a + b.attnOut,
                    weight: p + o.projW, rows: n, inFeatures: d, outFeatures: d, pool: pool)
            }
            dqkv.update(repeating: 0, count: n * 3 * d)
            Attention.backward(
                dqkv: dqkv, datt: a + sc.datt, dout: dattn, qkv: a + b.qkv, att: a + b.att, batch: batch, tokens: t,
                dim: d, heads: h, pool: pool)
            Linear.backward(
                dinp: dln, dweight: g + o.qkvW, dbias: nil, dout: dqkv, inp: a + b.ln1, weight: p + o.qkvW,
                rows: n, inFeatures: d, outFeatures: 3 * d, pool: pool)
            if let qb = o.qkvB {
                // q and v thirds; the key third's true gradient is exactly 0 (see above).
                Elementwise.biasAddBackward(dbias: g + qb, dout: dqkv, rows: n, cols: d, ld: 3 * d, pool: pool)
                Elementwise.biasAddBackward(
                    dbias: g + qb + 2 * d, dout: dqkv + 2 * d, rows: n, cols: d, ld: 3 * d, pool: pool)
            }
            LayerNorm.backward(
                dinp: dres, dweight: g + o.norm1W, dbias: g + o.norm1B, dout: dln, inp: blockIn,
                weight: p + o.norm1W, mean: a + b.ln1Mean, rstd: a + b.ln1Rstd, rows: n, cols: d, pool: pool)
            gradientReady?(o.norm1W..<(l + 1 < params.count ? params[l + 1].norm1W : end))
        }
    }

    /// Forward-mode derivative through the stack for the primal batch of the last `forward` from
    /// input `x`: `tx` [B,T,D] holds the input's tangent on entry and the output's on return;
    /// `tscratch` [B,T,D] is scratch; `v` is the parameter tangent (parameters' layout).
    func jvp(
        tx cur: UnsafeMutablePointer<Float>, tscratch other: UnsafeMutablePointer<Float>, x input: UnsafePointer<Float>,
        batch: Int, params p: UnsafePointer<Float>, tangent v: UnsafePointer<Float>, acts: [BlockActivations],
        in a: UnsafeMutablePointer<Float>, tangents tg: BlockTangents, in ta: UnsafeMutablePointer<Float>,
        pool: ThreadPool
    ) {
        let s = shape
        let (t, d, f) = (s.tokens, s.dim, s.hidden)
        let n = batch * t
        let tln = ta + tg.ln, tqkv = ta + tg.qkv, tattn = ta + tg.attnOut, tproj = ta + tg.proj
        let thidden = ta + tg.hidden, tact = ta + tg.act
        for l in 0..<params.count {
            let o = params[l], b = acts[l]
            let blockIn = l > 0 ? UnsafePointer(a + acts[l - 1].out) : input
            LayerNorm.jvp(
                tout: tln, tinp: cur, inp: blockIn, mean: a + b.ln1Mean, rstd: a + b.ln1Rstd, weight: p + o.norm1W,
                tweight: v + o.norm1W, tbias: v + o.norm1B, rows: n, cols: d, pool: pool)
            Linear.jvp(
                tout: tqkv, tinp: tln, inp: a + b.ln1, weight: p + o.qkvW, tweight: v + o.qkvW,
                tbias: o.qkvB.map { v + $0 }, rows: n, inFeatures: d, outFeatures: 3 * d, pool: pool)
            Attention.jvp(
                tout: tattn, tatt: ta + tg.att, tqkv: tqkv, qkv: a + b.qkv, att: a + b.att, batch: batch, tokens: t,
                dim: d, heads: s.heads, pool: pool)
            // t_res1 = t_x + (t_attn · W_projᵀ + attn · t_W_projᵀ + t_b_proj)
            if let ls1 = o.ls1, let projOut = b.projOut {
                // LayerScale: t_res1 = t_x + γ1 ⊙ t_branch + t_γ1 ⊙ branch
                Linear.jvp(
                    tout: tproj, tinp: tattn, inp: a + b.attnOut, weight: p + o.projW, tweight: v + o.projW,
                    tbias: v + o.projB, rows: n, inFeatures: d, outFeatures: d, pool: pool)
                LayerScale.jvp(
                    tout: other, tresidual: cur, tinp: tproj, tgamma: v + ls1, inp: a + projOut, gamma: p + ls1,
                    rows: n, cols: d, pool: pool)
            } else {
                Linear.jvp(
                    tout: tproj, tinp: tattn, inp: a + b.attnOut, weight: p + o.projW, tweight: v + o.projW,
                    tbias: nil, rows: n, inFeatures: d, outFeatures: d, pool: pool)
                Residual.jvp(
                    tout: other, tresidual: cur, tinp: tproj, tbias: v + o.projB, rows: n, cols: d, pool: pool)
            }
            LayerNorm.jvp(
                tout: tln, tinp: other, inp: a + b.res1, mean: a + b.ln2Mean, rstd: a + b.ln2Rstd,
                weight: p + o.norm2W, tweight: v + o.norm2W, tbias: v + o.norm2B, rows: n, cols: d, pool: pool)
            Linear.jvp(
                tout: thidden, tinp: tln, inp: a + b.ln2, weight: p + o.fc1W, tweight: v + o.fc1W, tbias: v + o.fc1B,
                rows: n, inFeatures: d, outFeatures: f, pool: pool)
            tact.update(repeating: 0, count: n * f)
            switch s.activation {  // t_act = act'(fc1) ⊙ t_fc1: the backward kernel with dout = t_fc1
            case .gelu: GELU.backward(dinp: tact, inp: a + b.fc1, dout: thidden, count: n * f, pool: pool)
            case .quickGELU: QuickGELU.backward(dinp: tact, inp: a + b.fc1, dout: thidden, count: n * f, pool: pool)
            }
            // t_out = t_res1 + (t_act · W_fc2ᵀ + act · t_W_fc2ᵀ + t_b_fc2)
            if let ls2 = o.ls2, let mlpOut = b.mlpOut {
                Linear.jvp(
                    tout: tproj, tinp: tact, inp: a + b.act, weight: p + o.fc2W, tweight: v + o.fc2W,
                    tbias: v + o.fc2B, rows: n, inFeatures: f, outFeatures: d, pool: pool)
                LayerScale.jvp(
                    tout: cur, tresidual: other, tinp: tproj, tgamma: v + ls2, inp: a + mlpOut, gamma: p + ls2,
                    rows: n, cols: d, pool: pool)
            } else {
                Linear.jvp(
                    tout: tproj, tinp: tact, inp: a + b.act, weight: p + o.fc2W, tweight: v + o.fc2W, tbias: nil,
                    rows: n, inFeatures: f, outFeatures: d, pool: pool)
                Residual.jvp(
                    tout: cur, tresidual: other, tinp: tproj, tbias: v + o.fc2B, rows: n, cols: d, pool: pool)
            }
        }
    }
}

extension ViTConfig {
    /// The encoder's block shape.
    public var blockShape: BlockShape {
        BlockShape(
            tokens: tokens, dim: embedDim, hidden: hiddenDim, heads: numHeads, qkvBias: qkvBias,
            activation: activation, eps: normEps, layerScale: initValues != nil)
    }
}
