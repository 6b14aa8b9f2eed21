using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q3_K (quantize_row_q3_K_ref): 16 sub-blocks of 16 weights with signed 6-bit scales and 3-bit levels
/// (2 low bits in qs, the high bit in hmask).
/// Block: hmask[32], qs[64], scales[12] (16 six-bit values), f16 d (110 bytes).
/// </summary>
[SkipLocalsInit]
public sealed class Q3_KQuantizer() : BlockQuantizer(GgmlType.Q3_K)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        Span<sbyte> levels = stackalloc sbyte[256];
        Span<float> scales = stackalloc float[16];
        var hmask = block[..32];
        var qs = block.Slice(32, 64);
        var packedScales = block.Slice(96, 12);

        float maxScale = 0;
        float amax = 0;
        for (var j = 0; j < 16; j++)
        {
            scales[j] = QuantMath.MakeQ3Quants(4, x.Slice(16 * j, 16), levels.Slice(16 * j, 16));
            var scale = MathF.Abs(scales[j]);
            if (scale > amax)
            {
                amax = scale;
                maxScale = scales[j];
            }
        }

        packedScales.Clear();
        if (maxScale != 0)
        {
            var iscale = -32f / maxScale;
            for (var j = 0; j < 16; j++)
            {
                // ggml keeps this in an int8_t, so the nearest_int result wraps before clamping.
                var l = (sbyte)QuantMath.NearestInt(iscale * scales[j]);
                l = (sbyte)(Math.Max(-32, Math.Min(31, (int)l)) + 32);
                if (j < 8)
                    packedScales[j] = (byte)(l & 0xF);
                else
                    packedScales[j - 8] |= (byte)((l & 0xF) << 4);
                l >>= 4;
                packedScales[j % 4 + 8] |= (byte)(l << (2 * (j / 4)));
            }
            QuantMath.WriteHalf(block[108..], 1 / iscale);
        }
        else
        {
            QuantMath.WriteHalf(block[108..], 0f);
        }

        var blockD = QuantMath.ReadHalf(block[108..]);
        if (Vector256.IsHardwareAccelerated)
        {
            RequantizeAndPackVector(x, packedScales, blockD, levels, hmask, qs);
            return;
        }
        for (var j = 0; j < 16; j++)
        {
            var d = blockD * SubBlockScale(packedScales, j);
            if (d == 0)
                continue;
            for (var ii = 0; ii < 16; ii++)
                levels[16 * j + ii] = (sbyte)(Math.Max(-4, Math.Min(3, QuantMath.NearestInt(x[16 * j + ii] / d))) + 4);
        }

        // The high bit of the first 32 levels goes to bit 0 of hmask[0..31], of the next 32 to bit 1, and so on.
        hmask.Clear();
        var m = 0;
        byte hm = 1;
        for (var j = 0; j < 256; j++)
        {
            if (levels[j] > 3)
            {
                hmask[m] |= hm;
                levels[j] -= 4;
            }
            if (++m == 32)
            {
                m = 0;
                hm <<= 1;
            }
        }
        for (var j = 0; j < 256; j += 128)
            for (var l = 0; l < 32; l++)
                qs[j / 4 + l] = (byte)((byte)levels[j + l] | ((byte)levels[j + l + 32] << 2) | ((byte)levels[j + l + 64] << 4) | ((byte)levels[j + l + 96] << 6));
    }

    /// <summary>
    /// The scalar tail above, lane-wise: x / d, nearest_int and the clamp are per element (a vector division is the
    /// same IEEE division), and the hmask and 2-bit packing are per byte.
    /// </summary>
    private static void RequantizeAndPackVector(ReadOnlySpan<float> x, ReadOnlySpan<byte> packedScales, float blockD, Span<sbyte> levels,
        Span<byte> hmask, Span<byte> qs)
    {
        ref var xRef = ref MemoryMarshal.GetReference(x);
        ref var levelRef = ref Unsafe.As<sbyte, byte>(ref MemoryMarshal.GetReference(levels));
        var low = Vector256.Create(-4);
        var high = Vector256.Create(3);
        var offset = Vector256.Create(4);
        for (var j = 0; j < 16; j++)
        {
            var d = blockD * SubBlockScale(packedScales, j);
            if (d == 0)
                continue;
            var dv = Vector256.Create(d);
            var a = Vector256.Min(Vector256.Max(QuantMath.NearestInt(Vector256.LoadUnsafe(ref xRef, (nuint)(16 * j)) / dv), low), high) + offset;
            var b = Vector256.Min(Vector256.Max(QuantMath.NearestInt(Vector256.LoadUnsafe(ref xRef, (nuint)(16 * j + 8)) / dv), low), high) + offset;
            var shorts = Vector256.Narrow(a, b);
            Vector128.Narrow(shorts.GetLower(), shorts.GetUpper()).AsByte().StoreUnsafe(ref levelRef, (nuint)(16 * j));
        }

        // Group g of 32 levels puts its high bit (level > 3) in bit g of hmask[0..31] and keeps the low 2 bits.
        var mask = Vector256<byte>.Zero;
        var three = Vector256.Create((byte)3);
        for (var g = 0; g < 8; g++)
        {
            var v = Vector256.LoadUnsafe(ref levelRef, (nuint)(32 * g));
            var highBit = Vector256.GreaterThan(v, three);
            mask |= highBit & Vector256.Create((byte)(1 << g));
            (v & three).StoreUnsafe(ref levelRef, (nuint)(32 * g));
        }
        mask.StoreUnsafe(ref MemoryMarshal.GetReference(hmask));
        ref var qsRef = ref MemoryMarshal.GetReference(qs);
        for (var j = 0; j < 256; j += 128)
        {
            var q = Vector256.LoadUnsafe(ref levelRef, (nuint)j)
                | Vector256.ShiftLeft(Vector256.LoadUnsafe(ref levelRef, (nuint)(j + 32)), 2)
                | Vector256.ShiftLeft(Vector256.LoadUnsafe(ref levelRef, (nuint)(j + 64)), 4)
                | Vector256.ShiftLeft(Vector256.LoadUnsafe(ref levelRef, (nuint)(j + 96)), 6);
            q.StoreUnsafe(ref qsRef, (nuint)(j / 4));
        }
    }

    /// <summary>The signed scale of sub-block <paramref name="j"/>: 4 low bits from scales[0..7], 2 high bits from scales[8..11].</summary>
    private static int SubBlockScale(ReadOnlySpan<byte> packed, int j)
    {
        var low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        var high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        return (sbyte)(low | (high << 4)) - 32;
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var hm = block[..32];
        var q = block.Slice(32, 64);
        var packedScales = block.Slice(96, 12);
        var dAll = QuantMath.ReadHalf(block[108..]);
        var output = 0;
        var scaleIndex = 0;
        byte m = 1;
        for (var n = 0; n < 256; n += 128)
        {
            for (var shift = 0; shift < 8; shift += 2)
            {
                for (var half = 0; half < 32; half += 16)
                {
                    var dl = dAll * SubBlockScale(packedScales, scaleIndex++);
                    for (var l = 0; l < 16; l++)
                        y[output++] = dl * (((q[l + half] >> shift) & 3) - ((hm[l + half] & m) != 0 ? 0 : 4));
                }
                m <<= 1;
            }
            q = q[32..];
        }
    }
}
