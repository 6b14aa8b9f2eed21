using System.Runtime.CompilerServices;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q6_K (quantize_row_q6_K_ref): 16 sub-blocks of 16 weights with signed 8-bit scales (in units of the block's
/// f16 d) and 6-bit levels (4 low bits in ql, 2 high bits in qh).
/// Block: ql[128], qh[64], int8 scales[16], f16 d (210 bytes).
/// </summary>
[SkipLocalsInit]
public sealed class Q6_KQuantizer() : BlockQuantizer(GgmlType.Q6_K)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        Span<sbyte> levels = stackalloc sbyte[256];
        Span<float> scales = stackalloc float[16];
        var ql = block[..128];
        var qh = block.Slice(128, 64);
        var packedScales = block.Slice(192, 16);

        float maxScale = 0;
        float maxAbsScale = 0;
        for (var ib = 0; ib < 16; ib++)
        {
            var scale = QuantMath.MakeQxQuantsRmse(32, x.Slice(16 * ib, 16), levels.Slice(16 * ib, 16));
            scales[ib] = scale;
            var absScale = MathF.Abs(scale);
            if (absScale > maxAbsScale)
            {
                maxAbsScale = absScale;
                maxScale = scale;
            }
        }

        if (maxAbsScale < QuantMath.GroupMaxEps)
        {
            // An all-zero block: ggml zeroes it and stores fp16(0), which is zero bits too.
            block.Clear();
            return;
        }

        var iscale = -128f / maxScale;
        QuantMath.WriteHalf(block[208..], 1 / iscale);
        for (var ib = 0; ib < 16; ib++)
            packedScales[ib] = (byte)(sbyte)Math.Min(127, QuantMath.NearestInt(iscale * scales[ib]));

        var blockD = QuantMath.ReadHalf(block[208..]);
        for (var j = 0; j < 16; j++)
        {
            var d = blockD * (sbyte)packedScales[j];
            if (d == 0)
                continue;
            for (var ii = 0; ii < 16; ii++)
                levels[16 * j + ii] = (sbyte)(Math.Max(-32, Math.Min(31, QuantMath.NearestInt(x[16 * j + ii] / d))) + 32);
        }

        for (var j = 0; j < 256; j += 128)
        {
            for (var l = 0; l < 32; l++)
            {
                var q1 = levels[j + l] & 0xF;
                var q2 = levels[j + l + 32] & 0xF;
                var q3 = levels[j + l + 64] & 0xF;
                var q4 = levels[j + l + 96] & 0xF;
                ql[l] = (byte)(q1 | (q3 << 4));
                ql[l + 32] = (byte)(q2 | (q4 << 4));
                qh[l] = (byte)((levels[j + l] >> 4) | ((levels[j + l + 32] >> 4) << 2) | ((levels[j + l + 64] >> 4) << 4) | ((levels[j + l + 96] >> 4) << 6));
            }
            ql = ql[64..];
            qh = qh[32..];
        }
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = QuantMath.ReadHalf(block[208..]);
        var ql = block[..128];
        var qh = block.Slice(128, 64);
        var sc = block.Slice(192, 16);
        for (var n = 0; n < 256; n += 128)
        {
            for (var l = 0; l < 32; l++)
            {
                var scaleIndex = l / 16;
                var q1 = (sbyte)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                var q2 = (sbyte)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                var q3 = (sbyte)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                var q4 = (sbyte)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[n + l] = d * (sbyte)sc[scaleIndex] * q1;
                y[n + l + 32] = d * (sbyte)sc[scaleIndex + 2] * q2;
                y[n + l + 64] = d * (sbyte)sc[scaleIndex + 4] * q3;
                y[n + l + 96] = d * (sbyte)sc[scaleIndex + 6] * q4;
            }
            ql = ql[64..];
            qh = qh[32..];
            sc = sc[8..];
        }
    }
}
