// The few MPI calls ViTMerge's data-parallel training needs, as plain C functions.
// MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM … are macros over implementation-specific globals that
// Swift cannot import; these wrappers turn them into calls that work with any MPI (Open MPI,
// MPICH). Counts above INT_MAX are sent in pieces. Every function returns an MPI error code.
#pragma once
#include <mpi.h>
#include <limits.h>
#include <stddef.h>

/// MPI_Init_thread with MPI_THREAD_FUNNELED (only the main thread calls MPI); rank and size of
/// MPI_COMM_WORLD. Errors return instead of aborting (MPI_ERRORS_RETURN).
static inline int vm_mpi_init(int *rank, int *size) {
    int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    rc = MPI_Comm_rank(MPI_COMM_WORLD, rank);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Comm_size(MPI_COMM_WORLD, size);
}

static inline int vm_mpi_finalize(void) { return MPI_Finalize(); }

/// Ends every process of the job with `code` (used when one rank fails, so none waits forever).
static inline void vm_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

/// In-place sum over all ranks of `count` floats.
static inline int vm_mpi_allreduce_sum_f32(float *buf, size_t count) {
    while (count > 0) {
        int n = count > INT_MAX ? INT_MAX : (int)count;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        buf += n; count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

/// In-place sum over all ranks of `count` doubles.
static inline int vm_mpi_allreduce_sum_f64(double *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/// Starts an in-place sum of `count` (≤ INT_MAX) floats; complete it with vm_mpi_wait.
static inline int vm_mpi_iallreduce_sum_f32(float *buf, int count, MPI_Request *request) {
    return MPI_Iallreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, request);
}

/// Lets outstanding non-blocking operations progress; *done = 1 once `request` completed.
static inline int vm_mpi_test(MPI_Request *request, int *done) { return MPI_Test(request, done, MPI_STATUS_IGNORE); }

static inline int vm_mpi_wait(MPI_Request *request) { return MPI_Wait(request, MPI_STATUS_IGNORE); }

/// Rank `root`'s `bytes` bytes at `buf` on every rank.
static inline int vm_mpi_bcast(void *buf, size_t bytes, int root) {
    char *p = (char *)buf;
    while (bytes > 0) {
        int n = bytes > INT_MAX ? INT_MAX : (int)bytes;
        int rc = MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        p += n; bytes -= (size_t)n;
    }
    return MPI_SUCCESS;
}

static inline int vm_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

/// The MPI library's own version string, e.g. "Open MPI v4.1.4 …".
static inline int vm_mpi_library_version(char *out, int capacity) {
    int length = 0;
    if (capacity < MPI_MAX_LIBRARY_VERSION_STRING) return MPI_ERR_ARG;
    return MPI_Get_library_version(out, &length);
}

static inline int vm_mpi_error_string(int code, char *out, int capacity) {
    int length = 0;
    if (capacity < MPI_MAX_ERROR_STRING) return MPI_ERR_ARG;
    return MPI_Error_string(code, out, &length);
}

static inline MPI_Request vm_mpi_request_null(void) { return MPI_REQUEST_NULL; }
