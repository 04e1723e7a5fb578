import Foundation
import ViTMergeModel

/// timm's plain VisionTransformer architectures: names → keyword arguments (the generated
/// `table`), keyword arguments → `ViTConfig` (refusing what ViTMerge does not implement), and back
/// (the `model_args` that rebuild a config from an architecture).
public enum TimmArchitectures {
    /// Every architecture in the table, with its keyword arguments.
    public static let all: [String: [String: JSONValue]] = {
        (try? JSONDecoder().decode([String: [String: JSONValue]].self, from: Data(tableJSON.utf8))) ?? [:]
    }()

    /// The keyword arguments of `name` (a `.tag` suffix such as `.augreg2_in21k_ft_in1k` is dropped).
    public static func arguments(of name: String) -> [String: JSONValue]? {
        all[String(name.split(separator: ".", maxSplits: 1).first ?? "")]
    }

    /// timm options ViTMerge does not implement, with the value that means "off" (absent counts as
    /// off). A config that turns one on is refused, naming it. Delete an entry once implemented.
    public static let unimplemented: [(key: String, off: JSONValue, what: String)] = [
        ("dynamic_img_size", .bool(false), "dynamic image size (pos-embed resampling per input)"),
        ("dynamic_img_pad", .bool(false), "dynamic padding of the input"),
        ("qk_norm", .bool(false), "query/key normalization"),
        ("scale_attn_norm", .bool(false), "a norm inside attention"),
        ("scale_mlp_norm", .bool(false), "a norm inside the MLP"),
        ("proj_bias", .bool(true), "projections without bias"),
        ("final_norm", .bool(true), "no final norm"),
        ("pos_embed", .string("learn"), "position embeddings other than learned"),
        ("pool_include_prefix", .bool(false), "pooling over the prefix tokens"),
        ("patch_drop_rate", .int(0), "patch dropout"),
        ("distilled", .bool(false), "DeiT distillation (dist_token, head_dist)"),
        ("norm_layer", .null, "norm layers other than LayerNorm"),
        ("embed_norm_layer", .null, "a norm in the patch embedding"),
        ("block_fn", .null, "blocks other than timm's Block"),
        ("mlp_layer", .null, "MLPs other than timm's Mlp (e.g. SwiGLU)"),
        ("attn_layer", .null, "attention other than timm's Attention"),
        ("embed_layer", .null, "patch embeddings other than timm's PatchEmbed"),
    ]

    /// Arguments that only change training (dropout, stochastic depth, init), not the model function.
    static let trainingOnly: Set<String> = [
        "drop_rate", "pos_drop_rate", "proj_drop_rate", "attn_drop_rate", "drop_path_rate", "weight_init", "fix_init",
    ]

    /// timm's VisionTransformer defaults for the arguments ViTMerge implements.
    static let implemented: Set<String> = [
        "img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads", "mlp_ratio",
        "qkv_bias", "class_token", "global_pool", "fc_norm", "pre_norm", "act_layer", "norm_eps", "init_values",
        "reg_tokens", "no_embed_class",
    ]

    /// The config timm's VisionTransformer builds from `args` (table arguments merged with model_args).
    /// Errors name `path` and the option.
    public static func config(arguments args: [String: JSONValue], path: String) throws(IOError) -> ViTConfig {
        func refuse(_ what: String, _ hint: String) -> IOError { .unsupported(path: path, what: what, hint: hint) }
        let plain = "use a plain ViT (e.g. timm/vit_base_patch16_224.augreg2_in21k_ft_in1k)"
        for (key, off, what) in unimplemented {
            if let v = args[key], v != .null, !v.sameValue(off) {
                throw refuse("\(key)=\(v) (\(what))", plain)
            }
        }
        let known = implemented.union(trainingOnly).union(unimplemented.map(\.key))
        if let key = args.keys.sorted().first(where: { !known.contains($0) }) {
            throw refuse("the VisionTransformer option '\(key)'", "remove it from model_args or \(plain)")
        }
        func bad(_ key: String, _ expected: String) -> IOError {
            .invalidFile(
                path: path, reason: "\(key) is \(args[key].map { "\($0)" } ?? "missing"), expected \(expected)",
                hint: "fix config.json")
        }
        func int(_ key: String, _ fallback: Int) throws(IOError) -> Int {
            guard let v = args[key], v != .null else { return fallback }
            guard let i = v.int else { throw bad(key, "an integer") }
            return i
        }
        func bool(_ key: String, _ fallback: Bool) throws(IOError) -> Bool {
            guard let v = args[key], v != .null else { return fallback }
            guard let b = v.bool else { throw bad(key, "true or false") }
            return b
        }
        func pair(_ key: String, _ fallback: Int) throws(IOError) -> (Int, Int) {
            guard let v = args[key], v != .null else { return (fallback, fallback) }
            if let i = v.int { return (i, i) }
            guard let a = v.array, a.count == 2, let h = a[0].int, let w = a[1].int else {
                throw bad(key, "an integer or [H, W]")
            }
            return (h, w)
        }
        let (h, w) = try pair("img_size", 224)
        let (ph, pw) = try pair("patch_size", 16)
        guard ph == pw else { throw refuse("patch_size=[\(ph), \(pw)] (non-square patches)", plain) }
        let pool: ViTConfig.GlobalPool
        switch args["global_pool"] ?? .string("token") {
        case .string("token"): pool = .token
        case .string("avg"): pool = .avg
        case let v: throw refuse("global_pool=\(v) (only 'token' and 'avg' pooling)", plain)
        }
        let act: ViTConfig.Activation
        switch args["act_layer"] ?? .null {
        case .null, .string("gelu"): act = .gelu
        case .string("quick_gelu"): act = .quickGELU
        case let v: throw refuse("act_layer=\(v) (only gelu and quick_gelu)", plain)
        }
        var mlpRatio = 4.0
        if let v = args["mlp_ratio"], v != .null {
            guard let r = v.double else { throw bad("mlp_ratio", "a number") }
            mlpRatio = r
        }
        var eps: Float = 1e-6
        if let v = args["norm_eps"] {
            guard let e = v.double else { throw bad("norm_eps", "a number") }
            eps = Float(e)
        }
        var initValues: Float?
        if let v = args["init_values"], v != .null {
            guard let x = v.double, x.isFinite else { throw bad("init_values", "a number or null") }
            initValues = Float(x)
        }
        var fcNorm: Bool?
        if let v = args["fc_norm"], v != .null {
            guard let b = v.bool else { throw bad("fc_norm", "true, false or null") }
            fcNorm = b
        }
        let regTokens = try int("reg_tokens", 0)
        guard regTokens >= 0 else { throw bad("reg_tokens", "an integer ≥ 0") }
        var c = ViTConfig(
            imageSize: h, patchSize: ph, inChannels: try int("in_chans", 3), numClasses: try int("num_classes", 1000),
            embedDim: try int("embed_dim", 768), depth: try int("depth", 12), numHeads: try int("num_heads", 12),
            mlpRatio: mlpRatio, qkvBias: try bool("qkv_bias", true), classToken: try bool("class_token", true),
            globalPool: pool, fcNorm: fcNorm, preNorm: try bool("pre_norm", false), activation: act, normEps: eps,
            initValues: initValues, regTokens: regTokens, noEmbedClass: try bool("no_embed_class", false))
        c.imageWidth = w
        do { try c.validate() } catch {
            throw .invalidFile(
                path: path, reason: "the model it describes is invalid: \(error)", hint: "fix config.json")
        }
        return c
    }

    /// `model_args` that make timm build `config` from `architecture` (with img_size, in_chans,
    /// num_classes and global_pool always present, as timm's save_for_hf writes them), or nil when
    /// no model_args can (the architecture turns on an option ViTMerge lacks, or its norm eps differs).
    public static func modelArguments(for config: ViTConfig, architecture: String) -> [String: JSONValue]? {
        guard let base = arguments(of: architecture),
            let baseConfig = try? self.config(arguments: base, path: architecture)
        else { return nil }
        guard baseConfig.normEps == config.normEps else { return nil }
        var m: [String: JSONValue] = [
            "img_size": .array([.int(config.imageHeight), .int(config.imageWidth)]),
            "in_chans": .int(config.inChannels), "num_classes": .int(config.numClasses),
            "global_pool": .string(config.globalPool.rawValue),
        ]
        func set(_ key: String, _ ours: JSONValue, _ theirs: JSONValue) { if !ours.sameValue(theirs) { m[key] = ours } }
        let b = baseConfig
        set("patch_size", .int(config.patchSize), .int(b.patchSize))
        set("embed_dim", .int(config.embedDim), .int(b.embedDim))
        set("depth", .int(config.depth), .int(b.depth))
        set("num_heads", .int(config.numHeads), .int(b.numHeads))
        set("mlp_ratio", .number(config.mlpRatio), .number(b.mlpRatio))
        set("qkv_bias", .bool(config.qkvBias), .bool(b.qkvBias))
        set("class_token", .bool(config.classToken), .bool(b.classToken))
        set("pre_norm", .bool(config.preNorm), .bool(b.preNorm))
        set("act_layer", .string(config.activation.rawValue), .string(b.activation.rawValue))
        set(
            "init_values", config.initValues.map { .number(Double($0)) } ?? .null,
            b.initValues.map { .number(Double($0)) } ?? .null)
        set("reg_tokens", .int(config.regTokens), .int(b.regTokens))
        set("no_embed_class", .bool(config.noEmbedClass), .bool(b.noEmbedClass))
        var merged = base.merging(m) { $1 }
        if (try? self.config(arguments: merged, path: architecture))?.fcNorm != config.fcNorm {
            m["fc_norm"] = .bool(config.fcNorm)
            merged["fc_norm"] = .bool(config.fcNorm)
        }
        guard (try? self.config(arguments: merged, path: architecture)) == config else { return nil }
        return m
    }

    /// The architecture (and its model_args) to export `config` as: `preferred` when it can express
    /// it, else the table entry needing the fewest model_args; among those, timm's own `vit_` names
    /// before the aliases that build the same model (`deit_tiny_patch16_224` is `vit_tiny_patch16_224`'s
    /// model), then the entry made for the config's image size (`vit_base_patch16_384` for a 384² model),
    /// then the first name in order. A config that only another family expresses exactly (e.g.
    /// DeiT-III's LayerScale with `no_embed_class`) keeps that family's name.
    public static func exportArchitecture(
        for config: ViTConfig, preferred: String? = nil
    ) -> (architecture: String, modelArgs: [String: JSONValue])? {
        if let p = preferred, let m = modelArguments(for: config, architecture: p) {
            return (String(p.split(separator: ".").first!), m)
        }
        func rank(_ name: String, _ m: [String: JSONValue]) -> (Int, Int, Int) {
            let own = arguments(of: name).flatMap { try? self.config(arguments: $0, path: name) }
            let sameSize = own.map { $0.imageHeight == config.imageHeight && $0.imageWidth == config.imageWidth }
            return (m.count, name.hasPrefix("vit_") ? 0 : 1, sameSize == true ? 0 : 1)
        }
        var best: (String, [String: JSONValue])?
        for name in all.keys.sorted() {
            guard let m = modelArguments(for: config, architecture: name) else { continue }
            if best == nil || rank(name, m) < rank(best!.0, best!.1) { best = (name, m) }
        }
        return best
    }
}
