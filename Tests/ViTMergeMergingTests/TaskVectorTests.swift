import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel
import XCTest

@testable import ViTMergeMerging

final class TaskVectorTests: XCTestCase {
    typealias F = MergeFixture

    /// τ = θ_ft − θ_pre element by element over the encoder, in the encoder layout of the table.
    func testTaskVectorIsTheEncoderDifferenceInTheEncoderLayout() throws {
        let pre = F.pretrained(), ft = pre.copy()
        var rng = RNG(seed: 21)
        for i in 0..<ft.arena.count { ft.base[i] += Float(rng.normal()) }
        let tv = try TaskVector(task: "t", finetuned: ft, pretrained: pre)
        let n = pre.table.encoderEnd
        XCTAssertEqual(tv.values.count, n)
        XCTAssertEqual(F.bits(tv.values), F.bits((0..<n).map { ft.base[$0] - pre.base[$0] }))
        let regions = tv.values.arena.layout.regions
        XCTAssertEqual(regions.map(\.name), pre.table.names.filter { !ParameterTable.isHead($0) })
        for r in regions { XCTAssertEqual(r.offset, pre.table.layout.regions.first { $0.name == r.name }!.offset) }
        XCTAssertEqual(tv.values.arena.tensor("pos_embed")!.shape, pre["pos_embed"]!.shape)
        XCTAssertEqual(tv.base, parameterHash(pre))
    }

    func testTaskVectorRoundTripAndBaseBinding() throws {
        let e = try F.evaluator()
        let path = NSTemporaryDirectory() + "vitmerge-tv-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tv = TaskVector(task: "a", base: parameterHash(e.pretrained), values: e.tasks[0].tau)
        XCTAssertTrue(tv.values.contains { $0 != 0 })
        try tv.save(to: path, table: e.pretrained.table)
        let back = try TaskVector.load(path: path, table: e.pretrained.table)
        XCTAssertEqual(F.bits(back.values), F.bits(tv.values))
        XCTAssertTrue(back.values.hasLayout(of: tv.values))
        XCTAssertFalse(back.values === tv.values)
        XCTAssertEqual(back.task, "a")
        XCTAssertEqual(back.base, parameterHash(e.pretrained))
        let other = e.pretrained.copy()
        other.base[0] += 1
        XCTAssertNotEqual(parameterHash(other), back.base)
        // From an array: the same vector.
        let fromArray = TaskVector(task: "a", base: tv.base, values: Array(tv.values), table: e.pretrained.table)
        XCTAssertEqual(F.bits(fromArray.values), F.bits(tv.values))
        // A table with another encoder cannot read it.
        var wider = F.config
        wider.embedDim = 32
        XCTAssertThrowsError(try TaskVector.load(path: path, table: ParameterTable(config: wider)))
    }
}
