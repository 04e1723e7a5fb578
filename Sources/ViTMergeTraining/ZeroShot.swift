import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeKernels
import ViTMergeModel

/// A CLIP checkpoint (`pretrain --scheme clip`): the image encoder and, from its auxiliary
/// tensors, the text tower, the projections and the logit scale (metadata `clip`).
public struct CLIPModel {
    public let encoder: ViT
    public let settings: CLIPSettings
    public let towers: CLIPTowers
    /// The towers' parameters (`towers.layout`).
    public let parameters: Arena

    public init(encoder: ViT, settings: CLIPSettings, parameters: Arena) {
        self.encoder = encoder
        self.settings = settings
        towers = settings.towers(encoder: encoder.config)
        precondition(parameters.layout.count == towers.layout.count, "CLIPModel: the towers' arena has another layout")
        self.parameters = parameters
    }

    /// Reads the encoder with `Checkpoint.load` and the towers from the auxiliary tensors; a
    /// checkpoint without them is `TrainingError.noTextTower`.
    public static func load(path: String) throws -> CLIPModel {
        let file = try SafeTensorsFile.read(path: path)
        let (params, meta) = try Checkpoint.load(file: file)
        guard let json = meta["clip"] else {
            throw TrainingError.noTextTower(
                path: path, reason: "no 'clip' metadata; its scheme is \(meta["scheme"] ?? meta["mode"] ?? "unknown")")
        }
        guard let settings = try? JSONDecoder().decode(CLIPSettings.self, from: Data(json.utf8)),
            settings.problem == nil
        else { throw TrainingError.noTextTower(path: path, reason: "its 'clip' metadata is not valid CLIP settings") }
        let towers = settings.towers(encoder: params.config)
        let arena = Arena(layout: towers.layout)
        for r in towers.layout.regions {
            guard file.contains(r.name) else {
                throw TrainingError.noTextTower(path: path, reason: "tensor '\(r.name)' is missing")
            }
            try file.copyFloats(r.name, into: arena.base + r.offset, shape: r.shape.dims)
        }
        return CLIPModel(encoder: ViT(parameters: params), settings: settings, parameters: arena)
    }

    /// Unit text embeddings [texts.count, E] of `texts` (cut to `captionBytes` UTF-8 bytes).
    public func embed(texts: [String], batch: Int = 64) -> [Float] {
        let (t, e, w) = (towers.contextLength, towers.embedDim, towers.captionBytes)
        let captions = Captions(texts, width: w)
        let cap = max(1, min(batch, texts.count))
        let acts = towers.makeActivations(capacity: cap)
        var ids = [Int32](repeating: 0, count: cap * t), eot = [Int32](repeating: 0, count: cap)
        var norms = [Float](repeating: 0, count: cap)
        var out = [Float](repeating: 0, count: texts.count * e)
        var start = 0
        while start < texts.count {
            let n = min(cap, texts.count - start)
            captions.bytes.withUnsafeBufferPointer { bytes in
                for j in 0..<n {
                    eot[j] = towers.tokenize(bytes.baseAddress! + (start + j) * w, width: w, into: &ids[j * t])
                }
            }
            let raw = towers.forwardText(
                ids: ids, eot: eot, batch: n, params: parameters.base, acts: acts, pool: encoder.pool)
            out.withUnsafeMutableBufferPointer {
                L2Normalize.forward(out: $0.baseAddress! + start * e, norms: &norms, inp: raw, rows: n, cols: e)
            }
            start += n
        }
        return out
    }

    /// Unit image embeddings [data.count, E] of `data`'s images.
    public func embed(images data: LabeledImages, batch: Int = 64) -> [Float] {
        let e = towers.embedDim
        let cap = max(1, min(batch, data.count))
        let acts = encoder.makeActivations(capacity: cap)
        var input = [Float](repeating: 0, count: cap * data.imageSize)
        var raw = [Float](repeating: 0, count: cap * e), norms = [Float](repeating: 0, count: cap)
        var out = [Float](repeating: 0, count: data.count * e)
        var start = 0
        while start < data.count {
            let n = min(cap, data.count - start)
            input.withUnsafeMutableBufferPointer { x in
                data.fill(start..<(start + n), input: x.baseAddress!, labels: nil)
                encoder.forward(input: x.baseAddress!, batch: n, acts: acts, forBackward: false)
            }
            towers.forwardImage(out: &raw, features: acts.output, rows: n, params: parameters.base, pool: encoder.pool)
            out.withUnsafeMutableBufferPointer {
                L2Normalize.forward(out: $0.baseAddress! + start * e, norms: &norms, inp: raw, rows: n, cols: e)
            }
            start += n
        }
        return out
    }

    /// Zero-shot classification of `data`: each image gets the class whose prompt's text
    /// embedding has the largest cosine similarity with its image embedding (the first on ties).
    public func zeroShot(prompts: [String], data: LabeledImages) -> ZeroShotResult {
        precondition(!prompts.isEmpty, "zeroShot: no prompts")
        let e = towers.embedDim, k = prompts.count
        let text = embed(texts: prompts), image = embed(images: data)
        var correct = 0
        for i in 0..<data.count {
            var best = -Float.infinity, arg = 0
            for c in 0..<k {
                var s: Float = 0
                for q in 0..<e { s += image[i * e + q] * text[c * e + q] }
                if s > best { (best, arg) = (s, c) }
            }
            if arg == Int(data.labels[i]) { correct += 1 }
        }
        return ZeroShotResult(correct: correct, count: data.count)
    }
}

/// Top-1 accuracy of zero-shot classification.
public struct ZeroShotResult: Codable, Sendable, Equatable {
    public let correct, count: Int
    public var accuracy: Double { count > 0 ? Double(correct) / Double(count) : 0 }
}

/// The text prompts zero-shot classification encodes for a task's class names.
public enum ZeroShotPrompts {
    /// With a `template`, every name put in place of its "{}"; without one, the pre-training glyphs'
    /// names in the captions' words (`latin_k` → "capital letter K", `greek_gamma` → "Greek capital
    /// letter gamma", `cyrillic_be` → "Cyrillic capital letter be", `hiragana_a` → "hiragana a"),
    /// and any other name as it is.
    public static func prompts(classes: [String], template: String?) -> [String] {
        classes.map { name in
            if let template { return template.replacingOccurrences(of: "{}", with: name) }
            return glyphPrompt(name) ?? name
        }
    }

    /// The caption words for a pre-training glyph class name, or nil for another name.
    public static func glyphPrompt(_ name: String) -> String? {
        guard let cut = name.firstIndex(of: "_") else { return nil }
        let script = name[..<cut], letter = String(name[name.index(after: cut)...])
        guard !letter.isEmpty else { return nil }
        switch script {
        case "latin": return "capital letter " + letter.uppercased()
        case "greek": return "Greek capital letter " + letter
        case "cyrillic": return "Cyrillic capital letter " + letter
        case "hiragana": return "hiragana " + letter
        default: return nil
        }
    }
}
