import Foundation
import ViTMergeModel

/// DINO's head, multi-crop views, temperatures and momenta (`TrainMode.dino`, Caron et al. 2021),
/// scaled down from the published ImageNet values (hidden 2048, bottleneck 256, 65536
/// prototypes) to the small models and glyph data here.
public struct DINOSettings: Codable, Sendable, Equatable {
    /// Local crops per image, besides the 2 global ones.
    public var localCrops: Int
    /// The projection head: MLP width, bottleneck, prototypes K.
    public var hidden: Int, bottleneck: Int, prototypes: Int
    /// [lo, hi] area fraction of the global and of the local crops (DINO: 0.4–1 and 0.05–0.4).
    public var globalScale: [Double], localScale: [Double]
    /// Brightness and contrast factors drawn from [1 − jitter, 1 + jitter] (0: no jitter), applied
    /// to each view with probability 0.8 (DINO's ColorJitter(0.4, 0.4, …) with p 0.8).
    public var jitter: Double
    /// τs, and τt after a linear warm-up from `warmupTeacherTemperature` over
    /// `teacherTemperatureWarmupSteps` steps (0: τt from the first step).
    public var studentTemperature: Double, teacherTemperature: Double
    public var warmupTeacherTemperature: Double, teacherTemperatureWarmupSteps: Int
    /// The centre's EMA momentum (0.9) and the teacher's starting momentum (0.996, cosine to 1).
    public var centerMomentum: Double, teacherMomentum: Double

    public init(
        localCrops: Int = 4, hidden: Int = 256, bottleneck: Int = 64, prototypes: Int = 256,
        globalScale: [Double] = [0.4, 1], localScale: [Double] = [0.05, 0.4], jitter: Double = 0.4,
        studentTemperature: Double = 0.1, teacherTemperature: Double = 0.04, warmupTeacherTemperature: Double? = nil,
        teacherTemperatureWarmupSteps: Int = 0, centerMomentum: Double = 0.9, teacherMomentum: Double = 0.996
    ) {
        self.localCrops = localCrops
        (self.hidden, self.bottleneck, self.prototypes) = (hidden, bottleneck, prototypes)
        (self.globalScale, self.localScale, self.jitter) = (globalScale, localScale, jitter)
        (self.studentTemperature, self.teacherTemperature) = (studentTemperature, teacherTemperature)
        self.warmupTeacherTemperature = warmupTeacherTemperature ?? teacherTemperature
        self.teacherTemperatureWarmupSteps = teacherTemperatureWarmupSteps
        (self.centerMomentum, self.teacherMomentum) = (centerMomentum, teacherMomentum)
    }

    /// Views per image: 2 global crops, then the local ones.
    public var views: Int { 2 + localCrops }

    /// τt at 0-based `step`: linear from the warm-up value to `teacherTemperature`, then constant.
    public func teacherTemperature(step: Int) -> Double {
        let w = teacherTemperatureWarmupSteps
        guard step < w else { return teacherTemperature }
        return warmupTeacherTemperature + (teacherTemperature - warmupTeacherTemperature) * Double(step) / Double(w)
    }

    /// The teacher's EMA momentum for the update after optimizer step `step` (1-based) of `steps`:
    /// DINO's cosine schedule 1 − (1 − m0)·(1 + cos(π·(step − 1)/steps))/2, from m0 towards 1.
    public func teacherMomentum(step: Int, of steps: Int) -> Double {
        let t = Double(step - 1) / Double(max(steps, 1))
        return 1 - (1 - teacherMomentum) * (1 + cos(Double.pi * t)) / 2
    }

    /// Why these settings cannot be used, or nil.
    public var problem: String? {
        if localCrops < 0 { return "--local-crops must be ≥ 0" }
        if hidden < 1 || bottleneck < 1 || prototypes < 2 {
            return "--dino-hidden and --dino-bottleneck must be ≥ 1 and --dino-prototypes ≥ 2"
        }
        for (name, s) in [("global", globalScale), ("local", localScale)]
        where !(s.count == 2 && 0 < s[0] && s[0] <= s[1] && s[1] <= 1) {
            return "the \(name) crop scale must be [lo, hi] with 0 < lo ≤ hi ≤ 1"
        }
        if !(0..<1).contains(jitter) { return "--dino-jitter must be in [0, 1)" }
        if !(studentTemperature > 0 && teacherTemperature > 0 && warmupTeacherTemperature > 0) {
            return "the temperatures must be > 0"
        }
        if teacherTemperatureWarmupSteps < 0 { return "--teacher-temperature-warmup-steps must be ≥ 0" }
        if !(0..<1).contains(centerMomentum) { return "--center-momentum must be in [0, 1)" }
        if !(0...1).contains(teacherMomentum) { return "--teacher-momentum must be in [0, 1]" }
        return nil
    }
}
