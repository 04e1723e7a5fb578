import CMallocCounter
import Foundation
import ViTMergeCore
import ViTMergeTraining
import XCTest

@testable import ViTMergeMerging

/// Heap allocations of a λ step (counted by the malloc interposer of CMallocCounter).
final class MergeAllocationTests: XCTestCase {
    typealias F = MergeFixture

    /// Allocation calls per iteration of `body`, after one warm-up call.
    func allocations(_ iterations: Int = 10, _ body: (Int) -> Void) -> Double {
        body(0)
        let before = vm_malloc_count()
        for i in 1...iterations { body(i) }
        return Double(vm_malloc_count() - before) / Double(iterations)
    }

    /// A λ step writes the merge into the evaluation model's arena: beyond the evaluation itself it
    /// allocates only the few small argument arrays of the merge (the pre-change step, replayed
    /// below with the array path it used, also allocated a fresh encoder of `encoderEnd` floats).
    func testLambdaStepAllocatesNoEncoder() throws {
        try XCTSkipIf(vm_malloc_counting() == 0, "allocations are not counted under a sanitizer or without glibc")
        let e = try F.evaluator(scaleB: 0.03)
        let tau = e.tasks[0].tau, data = e.tasks[0].validation, n = e.pretrained.table.encoderEnd
        let l = e.load(encoder: e.encoder([tau], [0.1]), task: 0)
        let evaluation = allocations { _ in _ = l.evaluator.evaluate(data) }
        let step = allocations { i in
            _ = e.accuracy(encoder: e.encoder([tau], [Float(i) * 0.05]), task: 0, split: .validation)
        }
        let write = allocations { i in e.write(e.encoder([tau], [Float(i) * 0.05]), into: l.model.parameters.base) }
        // The pre-change λ step: a fresh [Float] encoder, the array `combine`, a copy into the model.
        let array = Array(tau)
        let oldStep = allocations { i in
            var enc = [Float](repeating: 0, count: n)
            enc.withUnsafeMutableBufferPointer {
                combine(
                    base: e.pretrained.base, vectors: [array], coefficients: [Float(i) * 0.05], into: $0.baseAddress!,
                    count: n)
            }
            enc.withUnsafeBufferPointer { l.model.parameters.base.update(from: $0.baseAddress!, count: n) }
            _ = l.evaluator.evaluate(data)
        }
        print(
            "allocations per λ step: evaluation alone \(evaluation), in-place step \(step) (merge write \(write)), "
                + "pre-change step \(oldStep) including one encoder array of \(n * 4) bytes")
        // accuracy = write + head copy + evaluation: nothing else is allocated per λ, and fewer than
        // on the array path (whose encoder, copy and pointer plumbing are gone).
        XCTAssertLessThanOrEqual(step, evaluation + write)
        XCTAssertLessThan(step, oldStep)
    }
}
