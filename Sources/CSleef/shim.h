// SLEEF vector math behind one 16-lane interface, on whatever vector width this build targets.
// The importer compiles these inline functions with the package's -target-cpu, so the width
// chosen here always matches the Swift code that calls them.
#include <sleef.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

/// Vector width in bits of the instruction set this build targets (512, 256, 128 or 0 = scalar).
static inline int vm_build_vector_bits(void) {
#if defined(__AVX512F__)
    return 512;
#elif defined(__AVX2__) && defined(__FMA__)
    return 256;
#elif defined(__SSE2__)
    return 128;
#else
    return 0;
#endif
}

/// 1 when the CPU running this process supports AVX-512F (0 when not, or not x86).
static inline int vm_cpu_has_avx512f(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

static inline int vm_cpu_has_avx2_fma(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
#else
    return 0;
#endif
}

#if defined(__AVX512F__)
#define VM_SLEEF16(NAME, F16)                                                   \
    static inline void NAME(const float *in, float *out) {                     \
        _mm512_storeu_ps(out, F16(_mm512_loadu_ps(in)));                        \
    }
#define VM_SLEEF16_SEL(F16, F8, F4, F1) F16
#elif defined(__AVX2__)
#define VM_SLEEF16(NAME, F8)                                                    \
    static inline void NAME(const float *in, float *out) {                     \
        _mm256_storeu_ps(out, F8(_mm256_loadu_ps(in)));                         \
        _mm256_storeu_ps(out + 8, F8(_mm256_loadu_ps(in + 8)));                 \
    }
#define VM_SLEEF16_SEL(F16, F8, F4, F1) F8
#elif defined(__SSE2__)
#define VM_SLEEF16(NAME, F4)                                                    \
    static inline void NAME(const float *in, float *out) {                     \
        for (int i = 0; i < 16; i += 4) _mm_storeu_ps(out + i, F4(_mm_loadu_ps(in + i))); \
    }
#define VM_SLEEF16_SEL(F16, F8, F4, F1) F4
#else
// Portable fallback: SLEEF's scalar entry points.
#define VM_SLEEF16(NAME, F1)                                                    \
    static inline void NAME(const float *in, float *out) {                     \
        for (int i = 0; i < 16; i++) out[i] = F1(in[i]);                        \
    }
#define VM_SLEEF16_SEL(F16, F8, F4, F1) F1
#endif

/// out[0..<16] = exp(in[0..<16]), 1.0-ULP.
VM_SLEEF16(vm_expf16, VM_SLEEF16_SEL(Sleef_expf16_u10, Sleef_expf8_u10, Sleef_expf4_u10, Sleef_expf_u10))
/// out[0..<16] = erf(in[0..<16]), 1.0-ULP.
VM_SLEEF16(vm_erff16, VM_SLEEF16_SEL(Sleef_erff16_u10, Sleef_erff8_u10, Sleef_erff4_u10, Sleef_erff_u10))
/// out[0..<16] = tanh(in[0..<16]), 1.0-ULP.
VM_SLEEF16(vm_tanhf16, VM_SLEEF16_SEL(Sleef_tanhf16_u10, Sleef_tanhf8_u10, Sleef_tanhf4_u10, Sleef_tanhf_u10))

/// Scalar twins (same accuracy class), for tails and references.
static inline float vm_expf(float x) { return Sleef_expf_u10(x); }
static inline float vm_erff(float x) { return Sleef_erff_u10(x); }
static inline float vm_tanhf(float x) { return Sleef_tanhf_u10(x); }

/// Asks for the cache line holding `p` ahead of a read-modify-write (prefetchw where the CPU has it;
/// a hint only: no fault on any address). Locality 2 keeps it in L2 and below.
static inline void vm_prefetch_l2(const void *p) { __builtin_prefetch(p, 1, 2); }

/// 1 when this build targets AVX512_BF16 (then `vm_dpbf16` exists).
static inline int vm_build_has_bf16(void) {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    return 1;
#else
    return 0;
#endif
}

/// 1 when the CPU running this process supports AVX512_BF16.
static inline int vm_cpu_has_avx512bf16(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    return __builtin_cpu_supports("avx512bf16") ? 1 : 0;
#else
    return 0;
#endif
}

typedef float vm_f32x16 __attribute__((ext_vector_type(16)));
typedef unsigned int vm_u32x16 __attribute__((ext_vector_type(16)));
/// acc[j] += a.hi[j]·b.hi[j] + a.lo[j]·b.lo[j], each 32-bit lane of a and b holding two bfloat16
/// (vdpbf16ps: exact products, FP32 sums, bfloat16 subnormals read as zero). Builds without
/// AVX512_BF16 get a scalar stand-in so the Swift code compiles; `GEMM.bf16Supported` is false there
/// and the bf16 path is never taken.
static inline vm_f32x16 vm_dpbf16(vm_f32x16 acc, vm_u32x16 a, vm_u32x16 b) {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    return (vm_f32x16)_mm512_dpbf16_ps((__m512)acc, (__m512bh)a, (__m512bh)b);
#else
    for (int j = 0; j < 16; j++) {
        union { unsigned int u; float f; } ah = {a[j] & 0xFFFF0000u}, al = {a[j] << 16}, bh = {b[j] & 0xFFFF0000u},
            bl = {b[j] << 16};
        acc[j] = (acc[j] + ah.f * bh.f) + al.f * bl.f;
    }
    return acc;
#endif
}

/// Asks for the cache line holding `p` ahead of a read (a hint only: no fault on any address). Locality 2 keeps it
/// in L2 and below.
static inline void vm_prefetch_read_l2(const void *p) { __builtin_prefetch(p, 0, 2); }
/// Lanes 0..<n of the result are p[0..<n], the others `fill` (n in 0...16); reads nothing at or past p + n
/// (AVX-512 and AVX2 masked loads do not fault on masked-off lanes).
static inline vm_f32x16 vm_load_partial16(const float *p, int n, float fill) {
#if defined(__AVX512F__)
    __mmask16 m = (__mmask16)((1u << n) - 1u);
    return (vm_f32x16)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p);
#elif defined(__AVX2__)
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    __m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane);
    __m256 f = _mm256_set1_ps(fill);
    __m256 a = _mm256_blendv_ps(f, _mm256_maskload_ps(p, lo), _mm256_castsi256_ps(lo));
    __m256 b = _mm256_blendv_ps(f, _mm256_maskload_ps(p + 8, hi), _mm256_castsi256_ps(hi));
    vm_f32x16 v;
    _mm256_storeu_ps((float *)&v, a);
    _mm256_storeu_ps((float *)&v + 8, b);
    return v;
#else
    vm_f32x16 v;
    for (int j = 0; j < 16; j++) v[j] = j < n ? p[j] : fill;
    return v;
#endif
}
/// p[0..<n] = lanes 0..<n of v (n in 0...16); writes nothing at or past p + n.
static inline void vm_store_partial16(float *p, vm_f32x16 v, int n) {
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), (__m512)v);
#elif defined(__AVX2__)
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    __m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane);
    _mm256_maskstore_ps(p, lo, _mm256_loadu_ps((const float *)&v));
    _mm256_maskstore_ps(p + 8, hi, _mm256_loadu_ps((const float *)&v + 8));
#else
    for (int j = 0; j < n; j++) p[j] = v[j];
#endif
}
