import Foundation

/// OpenBLAS's cblas_sgemm loaded at run time (no link-time dependency); nil when not installed.
struct OpenBLAS {
    typealias SGEMM =
        @convention(c) (
            Int32, Int32, Int32, Int32, Int32, Int32, Float,
            UnsafePointer<Float>, Int32, UnsafePointer<Float>, Int32,
            Float, UnsafeMutablePointer<Float>, Int32
        ) -> Void
    typealias SetThreads = @convention(c) (Int32) -> Void
    let sgemmFn: SGEMM
    let setThreadsFn: SetThreads?
    let path: String

    static func load() -> OpenBLAS? {
        let candidates = [
            ProcessInfo.processInfo.environment["VITMERGE_OPENBLAS"],
            "libopenblas.so.0", "libopenblas.so",
            "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
            "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
        ].compactMap { $0 }
        for path in candidates {
            guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL), let s = dlsym(h, "cblas_sgemm") else { continue }
            let t = dlsym(h, "openblas_set_num_threads")
            return OpenBLAS(
                sgemmFn: unsafeBitCast(s, to: SGEMM.self),
                setThreadsFn: t.map { unsafeBitCast($0, to: SetThreads.self) }, path: path)
        }
        return nil
    }

    func setThreads(_ n: Int) { setThreadsFn?(Int32(n)) }

    /// Row-major C = alpha·op(A)·op(B) + beta·C.
    func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        sgemmFn(
            101, transA ? 112 : 111, transB ? 112 : 111, Int32(m), Int32(n), Int32(k), alpha,
            a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
