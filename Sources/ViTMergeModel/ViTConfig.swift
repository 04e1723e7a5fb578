import Foundation

/// Errors from building or configuring a model. Each says what was wrong and what to do.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case unknownConfigKey(String)

    public var description: String {
        switch self {
        case .invalidConfig(let why): "invalid model config: \(why)"
        case .unknownConfigKey(let key):
            "unknown model config key '\(key)'; the keys are timm's VisionTransformer arguments: "
                + ViTConfig.CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")
        }
    }
}

/// The subset of timm's `VisionTransformer` arguments ViTMerge implements, with timm's names
/// (FORMATS.md). Values are validated by `validate()`; derived sizes are computed properties.
public struct ViTConfig: Codable, Equatable, Sendable {
    public enum GlobalPool: String, Codable, Sendable { case token, avg }
    public enum Activation: String, Codable, Sendable {
        case gelu
        case quickGELU = "quick_gelu"
    }

    public var imageHeight: Int
    public var imageWidth: Int
    public var patchSize: Int
    public var inChannels: Int
    public var numClasses: Int
    public var embedDim: Int
    public var depth: Int
    public var numHeads: Int
    public var mlpRatio: Double
    public var qkvBias: Bool
    public var classToken: Bool
    public var globalPool: GlobalPool
    public var fcNorm: Bool
    public var preNorm: Bool
    public var activation: Activation
    public var normEps: Float
    /// timm's `init_values`: LayerScale on both residual branches of every block, γ initialized to this
    /// value (DeiT-III, DINOv2); nil for none (absent from the JSON then).
    public var initValues: Float?
    /// timm's `reg_tokens`: register tokens (`reg_token` [1, R, D]) after the class token and before
    /// the patches (DINOv2-reg, the `_reg*_gap` models); 0 for none (absent from the JSON then).
    public var regTokens: Int
    /// timm's `no_embed_class`: `pos_embed` [1, numPatches, D] covers only the patches and is added
    /// before the prefix tokens are put in front (DeiT-III, DINOv2-reg, FlexiViT); false (absent
    /// from the JSON) for timm's default, a `pos_embed` with a row for every token.
    public var noEmbedClass: Bool

    public init(
        imageSize: Int, patchSize: Int, inChannels: Int, numClasses: Int, embedDim: Int, depth: Int,
        numHeads: Int, mlpRatio: Double = 4, qkvBias: Bool = true, classToken: Bool = true,
        globalPool: GlobalPool = .token, fcNorm: Bool? = nil, preNorm: Bool = false,
        activation: Activation = .gelu, normEps: Float = 1e-6, initValues: Float? = nil, regTokens: Int = 0,
        noEmbedClass: Bool = false
    ) {
        self.imageHeight = imageSize
        self.imageWidth = imageSize
        self.patchSize = patchSize
        self.inChannels = inChannels
        self.numClasses = numClasses
        self.embedDim = embedDim
        self.depth = depth
        self.numHeads = numHeads
        self.mlpRatio = mlpRatio
        self.qkvBias = qkvBias
        self.classToken = classToken
        self.globalPool = globalPool
        self.fcNorm = fcNorm ?? (globalPool == .avg)
        self.preNorm = preNorm
        self.activation = activation
        self.normEps = normEps
        self.initValues = initValues
        self.regTokens = regTokens
        self.noEmbedClass = noEmbedClass
    }

    // MARK: Derived sizes

    public var gridHeight: Int { imageHeight / patchSize }
    public var gridWidth: Int { imageWidth / patchSize }
    public var numPatches: Int { gridHeight * gridWidth }
    /// timm's `num_prefix_tokens`: the class token (if any) and the register tokens, in that order,
    /// in front of the patch tokens.
    public var numPrefixTokens: Int { (classToken ? 1 : 0) + regTokens }
    /// Tokens per image: the prefix tokens, then the patches.
    public var tokens: Int { numPatches + numPrefixTokens }
    /// Rows of `pos_embed`: every token, or only the patches with `no_embed_class`.
    public var posEmbedTokens: Int { noEmbedClass ? numPatches : tokens }
    public var headDim: Int { embedDim / numHeads }
    /// MLP hidden width, `int(embed_dim * mlp_ratio)` as in timm.
    public var hiddenDim: Int { Int(Double(embedDim) * mlpRatio) }
    /// Flattened patch length C·p·p (the patch-embedding weight's input size).
    public var patchDim: Int { inChannels * patchSize * patchSize }

    public func validate() throws(ModelError) {
        func check(_ ok: Bool, _ why: @autoclosure () -> String) throws(ModelError) {
            if !ok { throw .invalidConfig(why()) }
        }
        // Bounds first, so nothing derived below can overflow (a config may come from an untrusted file).
        try check(patchSize >= 1 && patchSize <= 4096, "patch_size must be in 1…4096, got \(patchSize)")
        try check(
            imageHeight <= 1 << 16 && imageWidth <= 1 << 16,
            "img_size \(imageHeight)×\(imageWidth) is implausibly large (max 65536)")
        try check(
            inChannels <= 4096 && numClasses <= 1 << 24,
            "in_chans (max 4096) or num_classes (max 16777216) is implausibly large")
        try check(
            embedDim <= 1 << 16 && depth <= 1024 && numHeads <= 1 << 16,
            "embed_dim (max 65536), depth (max 1024) or num_heads is implausibly large")
        try check(mlpRatio.isFinite && mlpRatio <= 64, "mlp_ratio must be a finite number ≤ 64, got \(mlpRatio)")
        try check(
            imageHeight >= patchSize && imageWidth >= patchSize,
            "img_size \(imageHeight)×\(imageWidth) is smaller than patch_size \(patchSize)")
        try check(
            imageHeight % patchSize == 0 && imageWidth % patchSize == 0,
            "img_size \(imageHeight)×\(imageWidth) must be a multiple of patch_size \(patchSize)")
        try check(inChannels >= 1, "in_chans must be ≥ 1, got \(inChannels)")
        try check(numClasses >= 0, "num_classes must be ≥ 0 (0 = features only), got \(numClasses)")
        try check(embedDim >= 1 && depth >= 0 && numHeads >= 1, "embed_dim, depth and num_heads must be positive")
        try check(embedDim % numHeads == 0, "embed_dim \(embedDim) must be divisible by num_heads \(numHeads)")
        try check(mlpRatio > 0 && hiddenDim >= 1, "mlp_ratio \(mlpRatio) gives an empty MLP")
        try check(normEps > 0 && normEps.isFinite, "norm_eps must be positive and finite, got \(normEps)")
        try check(initValues.map(\.isFinite) ?? true, "init_values must be a finite number or null")
        try check(regTokens >= 0 && regTokens <= 4096, "reg_tokens must be in 0…4096, got \(regTokens)")
        try check(classToken || globalPool == .avg, "global_pool 'token' needs class_token true")
        try check(embedDim <= 1 << 16 && depth <= 1024 && tokens <= 1 << 16, "model is implausibly large")
    }

    // MARK: Presets

    /// timm vit_tiny_patch16_224 (5.7 M parameters).
    public static func vitTiny(numClasses: Int = 1000) -> ViTConfig {
        ViTConfig(
            imageSize: 224, patchSize: 16, inChannels: 3, numClasses: numClasses, embedDim: 192, depth: 12, numHeads: 3)
    }
    /// timm vit_small_patch16_224 (22 M parameters).
    public static func vitSmall(numClasses: Int = 1000) -> ViTConfig {
        ViTConfig(
            imageSize: 224, patchSize: 16, inChannels: 3, numClasses: numClasses, embedDim: 384, depth: 12, numHeads: 6)
    }
    /// timm vit_base_patch16_224 (86 M parameters).
    public static func vitBase(numClasses: Int = 1000) -> ViTConfig {
        ViTConfig(
            imageSize: 224, patchSize: 16, inChannels: 3, numClasses: numClasses, embedDim: 768, depth: 12, numHeads: 12
        )
    }
    /// The 28×28 single-channel model ViTMerge pre-trains and fine-tunes on the embedded tasks
    /// (patch 4 → 49 patches + class token, 6 blocks of width 96, 3 heads of 32; 0.68 M parameters).
    public static func mini28(numClasses: Int = 10) -> ViTConfig {
        ViTConfig(
            imageSize: 28, patchSize: 4, inChannels: 1, numClasses: numClasses, embedDim: 96, depth: 6, numHeads: 3)
    }
    public static let presets: [String: ViTConfig] = [
        "vit_tiny_patch16_224": vitTiny(), "vit_small_patch16_224": vitSmall(),
        "vit_base_patch16_224": vitBase(), "vit_mini_patch4_28": mini28(),
    ]

    // MARK: JSON with timm names

    enum CodingKeys: String, CodingKey, CaseIterable {
        case imgSize = "img_size", patchSize = "patch_size", inChans = "in_chans", numClasses = "num_classes"
        case embedDim = "embed_dim", depth, numHeads = "num_heads", mlpRatio = "mlp_ratio", qkvBias = "qkv_bias"
        case classToken = "class_token", globalPool = "global_pool", fcNorm = "fc_norm", preNorm = "pre_norm"
        case actLayer = "act_layer", normEps = "norm_eps", initValues = "init_values", regTokens = "reg_tokens"
        case noEmbedClass = "no_embed_class"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let s = try? c.decode(Int.self, forKey: .imgSize) {
            imageHeight = s; imageWidth = s
        } else {
            let hw = try c.decode([Int].self, forKey: .imgSize)
            guard hw.count == 2 else {
                throw ModelError.invalidConfig("img_size must be an integer or [H, W], got \(hw)")
            }
            imageHeight = hw[0]; imageWidth = hw[1]
        }
        patchSize = try c.decode(Int.self, forKey: .patchSize)
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChans) ?? 3
        numClasses = try c.decodeIfPresent(Int.self, forKey: .numClasses) ?? 1000
        embedDim = try c.decode(Int.self, forKey: .embedDim)
        depth = try c.decode(Int.self, forKey: .depth)
        numHeads = try c.decode(Int.self, forKey: .numHeads)
        mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? 4
        qkvBias = try c.decodeIfPresent(Bool.self, forKey: .qkvBias) ?? true
        classToken = try c.decodeIfPresent(Bool.self, forKey: .classToken) ?? true
        globalPool = try c.decodeIfPresent(GlobalPool.self, forKey: .globalPool) ?? .token
        fcNorm = try c.decodeIfPresent(Bool.self, forKey: .fcNorm) ?? (globalPool == .avg)
        preNorm = try c.decodeIfPresent(Bool.self, forKey: .preNorm) ?? false
        activation = try c.decodeIfPresent(Activation.self, forKey: .actLayer) ?? .gelu
        normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? 1e-6
        initValues = try c.decodeIfPresent(Float.self, forKey: .initValues)
        regTokens = try c.decodeIfPresent(Int.self, forKey: .regTokens) ?? 0
        noEmbedClass = try c.decodeIfPresent(Bool.self, forKey: .noEmbedClass) ?? false
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if imageHeight == imageWidth {
            try c.encode(imageHeight, forKey: .imgSize)
        } else {
            try c.encode([imageHeight, imageWidth], forKey: .imgSize)
        }
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(inChannels, forKey: .inChans)
        try c.encode(numClasses, forKey: .numClasses)
        try c.encode(embedDim, forKey: .embedDim)
        try c.encode(depth, forKey: .depth)
        try c.encode(numHeads, forKey: .numHeads)
        try c.encode(mlpRatio, forKey: .mlpRatio)
        try c.encode(qkvBias, forKey: .qkvBias)
        try c.encode(classToken, forKey: .classToken)
        try c.encode(globalPool, forKey: .globalPool)
        try c.encode(fcNorm, forKey: .fcNorm)
        try c.encode(preNorm, forKey: .preNorm)
        try c.encode(activation, forKey: .actLayer)
        try c.encode(normEps, forKey: .normEps)
        try c.encodeIfPresent(initValues, forKey: .initValues)
        if regTokens != 0 { try c.encode(regTokens, forKey: .regTokens) }
        if noEmbedClass { try c.encode(noEmbedClass, forKey: .noEmbedClass) }
    }

    /// Parses a config JSON object (timm argument names), rejecting unknown keys and invalid values.
    public static func parse(json: Data) throws -> ViTConfig {
        guard let object = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw ModelError.invalidConfig("the config must be a JSON object")
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let bad = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw ModelError.unknownConfigKey(bad)
        }
        let config: ViTConfig
        do { config = try JSONDecoder().decode(ViTConfig.self, from: json) } catch let e as ModelError { throw e } catch
        {
            throw ModelError.invalidConfig("\(error)")
        }
        try config.validate()
        return config
    }

    /// The config as compact JSON with sorted keys (stable across runs, used in checkpoint metadata).
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }
}
