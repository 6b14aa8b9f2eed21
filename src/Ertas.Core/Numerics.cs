using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Ertas.Core;

/// <summary>
/// Bulk conversions between float32 and the 16-bit float formats checkpoints and GGUF files store
/// (IEEE binary16 "F16" and bfloat16 "BF16"). Vectorised with <see cref="Vector{T}"/>; each vector path gives
/// bit-for-bit the same result as its scalar reference:
/// <list type="bullet">
/// <item>F16 conversions match <see cref="Half"/> (and x86 F16C, which ggml uses): round-to-nearest-even,
/// subnormals kept, overflow to infinity, NaN kept as a quiet NaN with its sign and top payload bits.</item>
/// <item>F32 to BF16 matches ggml's <c>ggml_compute_fp32_to_bf16</c> and torch: round-to-nearest-even on the
/// upper 16 bits; a NaN becomes <c>(bits &gt;&gt; 16) | 64</c> so it stays a (quiet) NaN.</item>
/// </list>
/// Byte overloads read and write little-endian data, the byte order of safetensors and GGUF.
/// Destinations may be longer than sources; exactly <c>source.Length</c> elements are converted.
/// </summary>
public static class FloatConversions
{
    // Fully optimised from the first call: a checkpoint load calls these a few hundred times, each on megabytes.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void HalfToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var step = Vector<ushort>.Count;
            var half = Vector<uint>.Count;
            for (; i <= source.Length - step; i += step)
            {
                Vector.Widen(new Vector<ushort>(source[i..]), out var low, out var high);
                HalfBitsToSingle(low).CopyTo(destination[i..]);
                HalfBitsToSingle(high).CopyTo(destination[(i + half)..]);
            }
        }
        for (; i < source.Length; i++)
            destination[i] = (float)BitConverter.UInt16BitsToHalf(source[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SingleToHalf(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        CheckLengths(source.Length, destination.Length);
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var step = Vector<ushort>.Count;
            var half = Vector<float>.Count;
            for (; i <= source.Length - step; i += step)
            {
                var low = SingleToHalfBits(new Vector<float>(source[i..]));
                var high = SingleToHalfBits(new Vector<float>(source[(i + half)..]));
                Vector.Narrow(low, high).CopyTo(destination[i..]);
            }
        }
        for (; i < source.Length; i++)
            destination[i] = BitConverter.HalfToUInt16Bits((Half)source[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var step = Vector<ushort>.Count;
            var half = Vector<uint>.Count;
            var bits = MemoryMarshal.Cast<float, uint>(destination);
            for (; i <= source.Length - step; i += step)
            {
                Vector.Widen(new Vector<ushort>(source[i..]), out var low, out var high);
                (low << 16).CopyTo(bits[i..]);
                (high << 16).CopyTo(bits[(i + half)..]);
            }
        }
        for (; i < source.Length; i++)
            destination[i] = BFloat16ToSingle(source[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SingleToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        CheckLengths(source.Length, destination.Length);
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var step = Vector<ushort>.Count;
            var half = Vector<float>.Count;
            for (; i <= source.Length - step; i += step)
            {
                var low = SingleToBFloat16Bits(new Vector<float>(source[i..]));
                var high = SingleToBFloat16Bits(new Vector<float>(source[(i + half)..]));
                Vector.Narrow(low, high).CopyTo(destination[i..]);
            }
        }
        for (; i < source.Length; i++)
            destination[i] = SingleToBFloat16(source[i]);
    }

    /// <summary>Scalar reference for BF16 to F32: the BF16 bits are the upper half of the float's bits.</summary>
    public static float BFloat16ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Scalar reference for F32 to BF16, as ggml_compute_fp32_to_bf16.</summary>
    public static ushort SingleToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
            return (ushort)((bits >> 16) | 64);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }

    public static float HalfToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort SingleToHalf(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    // Byte views: safetensors and GGUF data are little-endian, which MemoryMarshal.Cast reads directly.

    public static void HalfBytesToSingle(ReadOnlySpan<byte> source, Span<float> destination) =>
        HalfToSingle(AsUInt16(source), destination);

    public static void BFloat16BytesToSingle(ReadOnlySpan<byte> source, Span<float> destination) =>
        BFloat16ToSingle(AsUInt16(source), destination);

    public static void SingleBytesToSingle(ReadOnlySpan<byte> source, Span<float> destination)
    {
        RequireLittleEndian();
        if (source.Length % sizeof(float) != 0)
            throw new ArgumentException($"a float32 byte span needs a multiple of 4 bytes, got {source.Length}", nameof(source));
        var floats = MemoryMarshal.Cast<byte, float>(source);
        CheckLengths(floats.Length, destination.Length);
        floats.CopyTo(destination);
    }

    public static void SingleToHalfBytes(ReadOnlySpan<float> source, Span<byte> destination) =>
        SingleToHalf(source, AsUInt16(destination));

    public static void SingleToBFloat16Bytes(ReadOnlySpan<float> source, Span<byte> destination) =>
        SingleToBFloat16(source, AsUInt16(destination));

    public static void SingleToSingleBytes(ReadOnlySpan<float> source, Span<byte> destination)
    {
        RequireLittleEndian();
        MemoryMarshal.AsBytes(source).CopyTo(destination);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> HalfBitsToSingle(Vector<uint> h)
    {
        var sign = (h & new Vector<uint>(0x8000u)) << 16;
        var magnitude = h & new Vector<uint>(0x7FFFu);
        // Normal halves: move the exponent/mantissa into place and rebias the exponent from 15 to 127.
        var normal = (magnitude << 13) + new Vector<uint>((127u - 15u) << 23);
        // Exponent 31 (inf/NaN) maps to exponent 255; NaNs get the quiet bit, as Half and F16C do.
        var quietBit = Vector.GreaterThan(magnitude, new Vector<uint>(0x7C00u)) & new Vector<uint>(0x0040_0000u);
        var infOrNan = (magnitude << 13) | new Vector<uint>(0x7F80_0000u) | quietBit;
        // Subnormals (and zero) are magnitude * 2^-24 exactly: magnitude < 1024 converts to float without rounding.
        var subnormal = Vector.AsVectorUInt32(Vector.ConvertToSingle(Vector.AsVectorInt32(magnitude)) * new Vector<float>(1f / (1 << 24)));
        var isSubnormal = Vector.LessThan(magnitude, new Vector<uint>(0x0400u));
        var isInfOrNan = Vector.GreaterThanOrEqual(magnitude, new Vector<uint>(0x7C00u));
        var bits = Vector.ConditionalSelect(isSubnormal, subnormal, Vector.ConditionalSelect(isInfOrNan, infOrNan, normal));
        return Vector.AsVectorSingle(bits | sign);
    }

    /// <summary>
    /// Round-to-nearest-even by letting the FPU do it (Maratyszcza's FP16 trick, also ggml's scalar path): adding a
    /// power of two chosen from the input's exponent pushes the bits that do not fit a half out of the mantissa.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> SingleToHalfBits(Vector<float> f)
    {
        var w = Vector.AsVectorUInt32(f);
        // Two separate scalings: the first overflows values too large for a half to infinity, the second brings
        // the rest back; one combined factor would not overflow.
        var scaled = Vector.Abs(f) * new Vector<float>(BitConverter.UInt32BitsToSingle(0x7780_0000u)) // 2^112
            * new Vector<float>(BitConverter.UInt32BitsToSingle(0x0880_0000u)); // 2^-110
        var doubled = w + w;
        var sign = w & new Vector<uint>(0x8000_0000u);
        var bias = Vector.Max(doubled & new Vector<uint>(0xFF00_0000u), new Vector<uint>(0x7100_0000u));
        var rounded = Vector.AsVectorUInt32(Vector.AsVectorSingle((bias >> 1) + new Vector<uint>(0x0780_0000u)) + scaled);
        var exponent = (rounded >> 13) & new Vector<uint>(0x7C00u);
        var mantissa = rounded & new Vector<uint>(0x0FFFu);
        var isNan = Vector.GreaterThan(doubled, new Vector<uint>(0xFF00_0000u));
        var nan = new Vector<uint>(0x7E00u) | ((w >> 13) & new Vector<uint>(0x03FFu));
        return (sign >> 16) | Vector.ConditionalSelect(isNan, nan, exponent + mantissa);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> SingleToBFloat16Bits(Vector<float> f)
    {
        var w = Vector.AsVectorUInt32(f);
        var isNan = Vector.GreaterThan(w & new Vector<uint>(0x7FFF_FFFFu), new Vector<uint>(0x7F80_0000u));
        var rounded = (w + new Vector<uint>(0x7FFFu) + ((w >> 16) & Vector<uint>.One)) >> 16;
        var nan = (w >> 16) | new Vector<uint>(64u);
        return Vector.ConditionalSelect(isNan, nan, rounded);
    }

    private static ReadOnlySpan<ushort> AsUInt16(ReadOnlySpan<byte> bytes)
    {
        RequireLittleEndian();
        if (bytes.Length % 2 != 0)
            throw new ArgumentException($"a 16-bit float byte span needs an even number of bytes, got {bytes.Length}", nameof(bytes));
        return MemoryMarshal.Cast<byte, ushort>(bytes);
    }

    private static Span<ushort> AsUInt16(Span<byte> bytes)
    {
        RequireLittleEndian();
        if (bytes.Length % 2 != 0)
            throw new ArgumentException($"a 16-bit float byte span needs an even number of bytes, got {bytes.Length}", nameof(bytes));
        return MemoryMarshal.Cast<byte, ushort>(bytes);
    }

    private static void CheckLengths(int sourceLength, int destinationLength)
    {
        if (destinationLength < sourceLength)
            throw new ArgumentException($"destination holds {destinationLength} elements, source has {sourceLength}", "destination");
    }

    private static void RequireLittleEndian()
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("checkpoint and GGUF byte views assume a little-endian machine");
    }
}
