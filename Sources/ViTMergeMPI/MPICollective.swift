// Compiled only with `--traits MPI`: the default build must not need MPI's headers.
#if MPI
    import CMPI
    import Foundation
    import ViTMergeCore

    /// `Collective` over MPI's COMM_WORLD (built with `--traits MPI`; see README "Scale-out").
    ///
    /// Only the thread that called `initialize` may use it (MPI_THREAD_FUNNELED): the trainer calls
    /// it between kernels, never from the pool's workers. A failed MPI call ends the whole job
    /// with MPI's error text (MPI_Abort), so no rank is left waiting.
    public final class MPICollective: Collective {
        public let rank: Int
        public let size: Int
        /// The MPI library's version line, e.g. "Open MPI v4.1.4, …".
        public let libraryVersion: String
        private var requests: [MPI_Request?] = []
        private var firstOpen = 0
        private var finalized = false

        /// Joins the job (MPI_Init_thread). Call once per process.
        public static func initialize() -> MPICollective { MPICollective() }

        private init() {
            var r: Int32 = 0, s: Int32 = 0
            let rc = vm_mpi_init(&r, &s)
            if rc != MPI_SUCCESS {
                FileHandle.standardError.write(
                    Data("vitmerge: MPI_Init failed (error \(rc)); is this process started by mpirun?\n".utf8))
                exit(1)
            }
            rank = Int(r)
            size = Int(s)
            var text = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING) + 1)
            _ = vm_mpi_library_version(&text, Int32(text.count))
            libraryVersion =
                String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .split(separator: "\n").first.map(String.init) ?? "MPI"
        }

        /// Leaves the job (MPI_Finalize); the process should exit next.
        public func finalize() {
            guard !finalized else { return }
            finishStarted()
            finalized = true
            check(vm_mpi_finalize(), "MPI_Finalize")
        }

        public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
            check(vm_mpi_allreduce_sum_f32(buffer, count), "MPI_Allreduce")
        }

        public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
            check(vm_mpi_allreduce_sum_f64(buffer, Int32(count)), "MPI_Allreduce")
        }

        public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
            var done = 0
            while done < count {
                let n = min(count - done, 1 << 30)
                var request: MPI_Request? = vm_mpi_request_null()
                check(vm_mpi_iallreduce_sum_f32(buffer + done, Int32(n), &request), "MPI_Iallreduce")
                requests.append(request)
                done += n
            }
        }

        /// Tests the oldest open request: any MPI call drives Open MPI's progress engine.
        public func progress() {
            while firstOpen < requests.count {
                var done: Int32 = 0
                check(vm_mpi_test(&requests[firstOpen], &done), "MPI_Test")
                if done == 0 { return }
                firstOpen += 1
            }
        }

        public func finishStarted() {
            for i in firstOpen..<requests.count { check(vm_mpi_wait(&requests[i]), "MPI_Wait") }
            requests.removeAll(keepingCapacity: true)
            firstOpen = 0
        }

        public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {
            check(vm_mpi_bcast(buffer, bytes, Int32(root)), "MPI_Bcast")
        }

        public func abort(code: Int32, message: String) -> Never {
            FileHandle.standardError.write(Data((message + "\n").utf8))
            vm_mpi_abort(code)
            exit(code)  // MPI_Abort does not return; this keeps the compiler's promise if it did
        }

        private func check(_ rc: Int32, _ call: String) {
            guard rc != MPI_SUCCESS else { return }
            var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
            _ = vm_mpi_error_string(rc, &text, Int32(text.count))
            let reason = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            abort(code: 1, message: "vitmerge: \(call) failed on rank \(rank): \(reason)")
        }
    }
#endif
