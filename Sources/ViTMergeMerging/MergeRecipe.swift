import Foundation
import Yams

/// A merge written down as a mergekit-style YAML recipe (`vitmerge merge --recipe FILE`):
///
///     merge_method: ties                    # any `merge --method` name
///     base_model: runs/pretrained.safetensors
///     models:
///       - model: runs/mnist.safetensors     # fine-tuned checkpoint
///         task: data/mnist                  # its task data
///         vector: runs/mnist.tv.safetensors # optional: a task vector instead of θ_ft − θ_pre
///         parameters: {weight: 1.0}         # optional: τ is scaled by weight before merging
///     parameters:
///       keep: [0.1, 0.2, 0.3]               # a list: searched on validation
///       lambda:                             # per tensor filter: the first filter that is a substring
///         - {filter: attn, value: 0.4}      # of the tensor's timm name wins; the entry without a
///         - {value: 0.3}                    # filter is the default (required)
///     seed: 0
///     samples: 256
///     output: runs/merged                   # optional; --output overrides it
///
/// Paths are taken as written (relative ones from the working directory, as mergekit). Every key is
/// checked: an unknown key, a parameter the method does not take or a value out of range is refused
/// with the line it is on. Anchors and aliases are refused (a recipe has no use for them, and they
/// let a small file expand without bound).
public struct MergeRecipe: Sendable {
    public struct Model: Sendable, Equatable {
        public var checkpoint: String
        public var task: String
        public var vector: String?
        public var weight: Double
    }

    /// One entry of a per-filter parameter: `filter` nil is the default for the tensors no filter matches.
    public struct Filtered: Sendable, Equatable {
        public var filter: String?
        public var value: Double
    }

    /// A parameter's value: one number, numbers searched on validation, or one number per tensor filter.
    public enum Value: Sendable, Equatable {
        case fixed(Double)
        case search([Double])
        case filtered([Filtered])
    }

    public var method: MergeMethod
    public var base: String
    public var models: [Model]
    /// By recipe key (`lambda`, the method's hyper-parameter key, `outliers`, `ada_steps`, …).
    public var parameters: [String: Value]
    public var seed: UInt64
    public var samples: Int
    public var output: String?
    public var imageCache: String?
    /// The recipe as written; the merged checkpoints keep it in their metadata (`recipe`).
    public let text: String

    /// Recipes over this size are refused before parsing.
    public static let maxBytes = 1 << 20

    /// Reads and checks the recipe at `path`.
    public static func load(path: String) throws -> MergeRecipe {
        let url = URL(fileURLWithPath: path)
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        guard let size = attributes?[.size] as? Int else {
            throw RecipeError(file: path, line: nil, message: "cannot read the recipe: check the path")
        }
        guard size <= maxBytes else {
            throw RecipeError(file: path, line: nil, message: "\(size) bytes is over the \(maxBytes)-byte limit")
        }
        guard let data = try? Data(contentsOf: url) else {
            throw RecipeError(file: path, line: nil, message: "cannot read the recipe: check its permissions")
        }
        return try parse(data, file: path)
    }

    /// Parses and checks recipe bytes; `file` names it in errors.
    public static func parse(_ data: Data, file: String) throws -> MergeRecipe {
        guard data.count <= maxBytes else {
            throw RecipeError(file: file, line: nil, message: "\(data.count) bytes is over the \(maxBytes)-byte limit")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RecipeError(file: file, line: nil, message: "not UTF-8 text")
        }
        try screen(text, file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw RecipeError(file: file, line: nil, message: "not valid YAML: \(e)")
        }
        guard let root, case .mapping(let top) = root else {
            throw RecipeError(file: file, line: root?.mark?.line, message: "the recipe must be a mapping (key: value)")
        }
        var p = RecipeParser(file: file)
        return try p.recipe(top, text: text)
    }

    /// Refuses anchors and aliases, and flow nesting deeper than 16, before the YAML parser (which recurses
    /// once per level) sees the text. Quoted strings and comments are skipped.
    static func screen(_ text: String, file: String) throws {
        let bytes = Array(text.utf8)
        var i = 0, depth = 0, line = 1
        var tokenStart = true
        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "\n"):
                line += 1
                tokenStart = true
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                tokenStart = true
            case UInt8(ascii: ","):
                // A separator only inside [ ] or { }.
                tokenStart = tokenStart || depth > 0
            case UInt8(ascii: ":"), UInt8(ascii: "-"), UInt8(ascii: "?"):
                // Indicators only when followed by a blank (YAML 1.2 §6), as in `key: &a` or `- *a`.
                let next = i + 1 < bytes.count ? bytes[i + 1] : UInt8(ascii: " ")
                let blank =
                    next == UInt8(ascii: " ") || next == UInt8(ascii: "\t") || next == UInt8(ascii: "\n")
                    || next == UInt8(ascii: "\r")
                tokenStart = blank || (c == UInt8(ascii: ":") && depth > 0)
            case UInt8(ascii: "#") where tokenStart:
                while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                guard tokenStart else { break }
                i += 1
                while i < bytes.count && bytes[i] != c {
                    if bytes[i] == UInt8(ascii: "\n") { line += 1 }
                    if c == UInt8(ascii: "\"") && bytes[i] == UInt8(ascii: "\\") { i += 1 }
                    i += 1
                }
                tokenStart = false
            case UInt8(ascii: "&"), UInt8(ascii: "*"):
                if tokenStart {
                    throw RecipeError(
                        file: file, line: line,
                        message: "anchors and aliases (&name, *name) are not supported: write the values out "
                            + "(quote a path that starts with & or *)")
                }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > 16 {
                    throw RecipeError(file: file, line: line, message: "nested over 16 levels deep")
                }
                tokenStart = true
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth = max(depth - 1, 0)
                tokenStart = true
            default:
                tokenStart = false
            }
            i += 1
        }
    }
}

/// A recipe that cannot be used: the file, the line when known, and what to change.
public struct RecipeError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int?
    public let message: String

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

extension MergeMethod {
    /// The recipe key of the method's own hyper-parameter (nil: none).
    public var recipeKey: String? {
        switch self {
        case .ties: "keep"
        case .dare: "drop"
        case .isoCTS: "common_fraction"
        case .consensus: "mask_scale"
        case .breadcrumbs: "density"
        case .regMean, .regMeanPlusPlus: "alpha"
        case .sum, .average, .tsv, .isoC, .magMax, .fisher, .adaMerging, .adaMergingLayer, .emr: nil
        }
    }

    /// Every parameter key a recipe may give this method.
    public var recipeKeys: [String] {
        if self == .emr { return [] }
        var keys = ["lambda"] + (recipeKey.map { [$0] } ?? [])
        if self == .breadcrumbs { keys.append("outliers") }
        if self == .adaMerging || self == .adaMergingLayer { keys += ["ada_steps", "ada_lr", "ada_batch"] }
        return keys
    }

    /// The range a recipe value for `key` must fall in, with its wording for errors.
    static func recipeRange(_ key: String) -> (ok: (Double) -> Bool, wording: String) {
        switch key {
        case "lambda": ({ $0 >= -10 && $0 <= 10 }, "in [−10, 10]")
        case "keep", "density": ({ $0 > 0 && $0 <= 1 }, "in (0, 1]")
        case "drop", "outliers": ({ $0 >= 0 && $0 < 1 }, "in [0, 1)")
        case "common_fraction", "alpha": ({ $0 >= 0 && $0 <= 1 }, "in [0, 1]")
        case "mask_scale": ({ $0 >= 0 && $0 <= 10 }, "in [0, 10]")
        case "ada_steps": ({ $0 >= 1 && $0 <= 1_000_000 && $0 == $0.rounded() }, "a whole number in 1…1000000")
        case "ada_batch": ({ $0 >= 1 && $0 <= 128 && $0 == $0.rounded() }, "a whole number in 1…128")
        case "ada_lr": ({ $0 > 0 && $0 <= 10 }, "in (0, 10]")
        default: ({ _ in false }, "unknown")
        }
    }
}

/// Walks the composed YAML, checking each key and value.
private struct RecipeParser {
    let file: String

    func fail(_ node: Node?, _ message: String) -> RecipeError {
        RecipeError(file: file, line: node?.mark?.line, message: message)
    }

    /// The mapping's entries by string key; a non-string or unknown key is refused.
    func entries(_ m: Node.Mapping, allowed: [String], context: String) throws -> [String: Node] {
        var out: [String: Node] = [:]
        for (k, v) in m {
            guard case .scalar(let s) = k else { throw fail(k, "\(context): keys must be plain names") }
            guard allowed.contains(s.string) else {
                let accepted = allowed.isEmpty ? "takes no parameters" : "accepted: \(allowed.joined(separator: ", "))"
                throw fail(k, "\(context): unknown key '\(s.string)' (\(accepted))")
            }
            out[s.string] = v
        }
        return out
    }

    func string(_ n: Node, _ context: String) throws -> String {
        guard case .scalar(let s) = n, !s.string.isEmpty else { throw fail(n, "\(context) must be a non-empty text") }
        return s.string
    }

    func number(_ n: Node, _ context: String) throws -> Double {
        guard case .scalar = n, let d = n.float, d.isFinite else { throw fail(n, "\(context) must be a number") }
        return d
    }

    func integer(_ n: Node, _ context: String, range: ClosedRange<Int>) throws -> Int {
        guard case .scalar = n, let v = n.int, range.contains(v) else {
            throw fail(n, "\(context) must be a whole number in \(range.lowerBound)…\(range.upperBound)")
        }
        return v
    }

    mutating func recipe(_ top: Node.Mapping, text: String) throws -> MergeRecipe {
        let keys = [
            "merge_method", "method", "base_model", "base", "models", "parameters", "seed", "samples",
            "output", "image_cache",
        ]
        let e = try entries(top, allowed: keys, context: "recipe")
        if e["merge_method"] != nil && e["method"] != nil { throw fail(e["method"], "give merge_method or method") }
        if e["base_model"] != nil && e["base"] != nil { throw fail(e["base"], "give base_model or base") }
        guard let methodNode = e["merge_method"] ?? e["method"] else {
            throw fail(
                nil, "no merge_method: name one of \(MergeMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let name = try string(methodNode, "merge_method")
        guard let method = MergeMethod(rawValue: name) else {
            let names = MergeMethod.allCases.map(\.rawValue).joined(separator: ", ")
            throw fail(methodNode, "unknown merge_method '\(name)' (one of \(names))")
        }
        guard let baseNode = e["base_model"] ?? e["base"] else {
            throw fail(nil, "no base_model: give the pre-trained checkpoint")
        }
        let base = try string(baseNode, "base_model")
        guard let modelsNode = e["models"] else { throw fail(nil, "no models: list the fine-tuned checkpoints") }
        guard case .sequence(let seq) = modelsNode, !seq.isEmpty else {
            throw fail(modelsNode, "models must be a list of {model, task} entries")
        }
        guard seq.count <= 64 else { throw fail(modelsNode, "models: \(seq.count) entries, at most 64") }
        let models = try seq.enumerated().map { try model($1, index: $0) }
        var parameters: [String: MergeRecipe.Value] = [:]
        if let p = e["parameters"] {
            guard case .mapping(let m) = p else { throw fail(p, "parameters must be a mapping (name: value)") }
            for (k, v) in try entries(m, allowed: method.recipeKeys, context: "parameters of \(method.rawValue)") {
                parameters[k] = try value(v, key: k, method: method)
            }
        }
        let seed = try e["seed"].map { UInt64(try integer($0, "seed", range: 0...Int.max)) } ?? 0
        let samples = try e["samples"].map { try integer($0, "samples", range: 1...1_000_000) } ?? 256
        return MergeRecipe(
            method: method, base: base, models: models, parameters: parameters, seed: seed, samples: samples,
            output: try e["output"].map { try string($0, "output") },
            imageCache: try e["image_cache"].map { try string($0, "image_cache") }, text: text)
    }

    func model(_ n: Node, index: Int) throws -> MergeRecipe.Model {
        let context = "models[\(index)]"
        guard case .mapping(let m) = n else { throw fail(n, "\(context) must be a mapping {model, task}") }
        let e = try entries(m, allowed: ["model", "task", "vector", "weight", "parameters"], context: context)
        guard let c = e["model"] else { throw fail(n, "\(context): no model (the fine-tuned checkpoint)") }
        guard let t = e["task"] else { throw fail(n, "\(context): no task (the task's data)") }
        var weight = try e["weight"].map { try number($0, "\(context).weight") }
        if let p = e["parameters"] {
            guard case .mapping(let pm) = p else { throw fail(p, "\(context).parameters must be a mapping") }
            let pe = try entries(pm, allowed: ["weight"], context: "\(context).parameters")
            if let w = pe["weight"] {
                if weight != nil { throw fail(w, "\(context): weight is given twice") }
                weight = try number(w, "\(context).parameters.weight")
            }
        }
        if let w = weight, !(w >= -10 && w <= 10) { throw fail(n, "\(context): weight must be in [−10, 10]") }
        return MergeRecipe.Model(
            checkpoint: try string(c, "\(context).model"), task: try string(t, "\(context).task"),
            vector: try e["vector"].map { try string($0, "\(context).vector") }, weight: weight ?? 1)
    }

    func value(_ n: Node, key: String, method: MergeMethod) throws -> MergeRecipe.Value {
        let (ok, wording) = MergeMethod.recipeRange(key)
        let context = "parameters.\(key)"
        func checked(_ v: Node, _ c: String) throws -> Double {
            let d = try number(v, c)
            guard ok(d) else { throw fail(v, "\(c) must be \(wording)") }
            return d
        }
        let searchable = key == "lambda" || key == method.recipeKey
        switch n {
        case .scalar: return .fixed(try checked(n, context))
        case .sequence(let s):
            guard searchable else { throw fail(n, "\(context) takes one number") }
            guard !s.isEmpty, s.count <= 256 else { throw fail(n, "\(context): give 1 to 256 values") }
            if case .mapping = s[s.startIndex] {
                var seen = Set<String>(), out: [MergeRecipe.Filtered] = []
                for (i, entry) in s.enumerated() {
                    guard case .mapping(let m) = entry else {
                        throw fail(entry, "\(context)[\(i)]: every entry must be {filter, value} or {value}")
                    }
                    let f = try entries(m, allowed: ["filter", "value"], context: "\(context)[\(i)]")
                    guard let v = f["value"] else { throw fail(entry, "\(context)[\(i)]: no value") }
                    let filter = try f["filter"].map { try string($0, "\(context)[\(i)].filter") }
                    guard seen.insert(filter ?? "").inserted else {
                        throw fail(entry, "\(context)[\(i)]: filter '\(filter ?? "(default)")' given twice")
                    }
                    out.append(.init(filter: filter, value: try checked(v, "\(context)[\(i)].value")))
                }
                guard out.contains(where: { $0.filter == nil }) else {
                    throw fail(n, "\(context): add an entry without filter, the value for the other tensors")
                }
                return .filtered(out)
            }
            return .search(try s.enumerated().map { try checked($1, "\(context)[\($0)]") })
        case .mapping: throw fail(n, "\(context): a number, a list of numbers, or a list of {filter, value}")
        case .alias: throw fail(n, "\(context): aliases are not supported")
        }
    }
}
