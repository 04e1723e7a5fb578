import CMallocCounter
import Foundation
import ViTMergeCore
import ViTMergeKernels
import ViTMergeModel
import ViTMergeTraining

extension Bench {
    /// Heap allocations per training step after warm-up (0 is the target), counted by the malloc
    /// interposer (CMallocCounter) at 1 and 2 threads, whatever `--threads` says, for the demo
    /// model's full and linearized steps at batch 32 (with `--bf16`, the full step in bf16 too).
    func allocationSuite() {
        guard vm_malloc_counting() != 0 else {
            print("  note: heap allocations cannot be counted here (needs glibc, no sanitizer); allocations skipped")
            return
        }
        let capacity = ThreadPool.shared.capacity
        if capacity < 2 {
            print(
                "  note: the pool has \(capacity) thread(s) (set VITMERGE_THREADS=2); allocations at 2 threads skipped")
        }
        let (warmUp, counted) = (3, 10)
        let config = ViTConfig.mini28()
        let images = randomImages(config, count: 32)
        for threads in [1, 2] where threads <= capacity {
            ThreadPool.shared.threads = threads
            let runs: [(TrainMode, GEMM.Precision)] =
                [(.full, .fp32), (.linearized, .fp32)] + (options.bf16 ? [(.full, .bf16)] : [])
            for (mode, precision) in runs {
                GEMM.precision = precision
                defer { GEMM.precision = .fp32 }
                let trainer = benchTrainer(ViT(config: config, seed: 1), images, mode)
                for _ in 0..<warmUp { _ = trainer.step() }
                let before = vm_malloc_count()
                for _ in 0..<counted { _ = trainer.step() }
                let perStep = Double(vm_malloc_count() - before) / Double(counted)
                if perStep > 0, ProcessInfo.processInfo.environment["VITMERGE_TRACE_ALLOCS"] != nil {
                    vm_malloc_trace(1)  // one more step, printing each allocation's call stack
                    _ = trainer.step()
                    vm_malloc_trace(0)
                }
                record(
                    "allocs", "vit_mini28 \(mode.rawValue) step" + (precision == .bf16 ? " bf16" : ""), [32],
                    threads: threads,
                    value: perStep, unit: "allocs/step")
            }
        }
        ThreadPool.shared.threads = capacity
    }
}
