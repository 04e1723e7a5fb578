/// Exact widening of the 16-bit float formats hub checkpoints are stored in to Float32: every
/// value (normal, subnormal, ±0, ±∞) maps to the Float32 of the same value, and a NaN to a NaN
/// with the same sign and payload (shifted into the top of the Float32 mantissa, not quieted).
public enum HalfFloat {
    /// IEEE 754 binary16 (safetensors F16): 1 sign, 5 exponent (bias 15), 10 mantissa bits.
    @inline(__always)
    public static func float(f16 h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16, exponent = UInt32(h >> 10) & 0x1F, mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F {  // ±∞ (mantissa 0) or NaN: all-ones exponent, payload kept
            return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13)
        }
        if exponent != 0 {  // normal: rebias 15 → 127
            return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)
        }
        // ±0 or subnormal: mantissa · 2^−24, exact in Float32 (a 10-bit integer times a power of two).
        let magnitude = Float(mantissa) * 0x1p-24
        return sign != 0 ? -magnitude : magnitude
    }

    /// bfloat16 (safetensors BF16): the top 16 bits of a Float32, so widening is a shift.
    @inline(__always)
    public static func float(bf16 b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }
}
