using System.Runtime.CompilerServices;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q5_K (quantize_row_q5_K_ref): as Q4_K with 5-bit levels; the fifth bits live in qh.
/// Block: f16 d, f16 dmin, scales[12], qh[32], qs[128] (176 bytes).
/// </summary>
[SkipLocalsInit]
public sealed class Q5_KQuantizer() : BlockQuantizer(GgmlType.Q5_K)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        Span<byte> levels = stackalloc byte[256];
        KQuantCommon.QuantizeScaleMinBlock(x, block, levels, nmax: 31, rmin: -0.5f, rdelta: 0.1f, nstep: 15);
        var qh = block.Slice(16, 32);
        var ql = block.Slice(48, 128);
        qh.Clear();
        byte m1 = 1, m2 = 2;
        for (var n = 0; n < 256; n += 64)
        {
            for (var j = 0; j < 32; j++)
            {
                int l1 = levels[n + j];
                if (l1 > 15)
                {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                int l2 = levels[n + j + 32];
                if (l2 > 15)
                {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = (byte)(l1 | (l2 << 4));
            }
            m1 <<= 2;
            m2 <<= 2;
            ql = ql[32..];
        }
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = QuantMath.ReadHalf(block);
        var min = QuantMath.ReadHalf(block[2..]);
        var scales = block.Slice(4, 12);
        var qh = block.Slice(16, 32);
        var ql = block.Slice(48, 128);
        var output = 0;
        byte u1 = 1, u2 = 2;
        for (var sub = 0; sub < 8; sub += 2)
        {
            QuantMath.GetScaleMinK4(sub, scales, out var sc, out var m);
            var d1 = d * sc;
            var m1 = min * m;
            QuantMath.GetScaleMinK4(sub + 1, scales, out sc, out m);
            var d2 = d * sc;
            var m2 = min * m;
            for (var l = 0; l < 32; l++)
                y[output++] = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
            for (var l = 0; l < 32; l++)
                y[output++] = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
            ql = ql[32..];
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}
