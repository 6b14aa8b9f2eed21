using System.Runtime.CompilerServices;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q4_K (quantize_row_q4_K_ref): 8 sub-blocks of 32 weights, each with a 6-bit scale and 6-bit min (in units of
/// the block's f16 d and dmin) and 4-bit levels.
/// Block: f16 d, f16 dmin, scales[12] (get_scale_min_k4 packing), qs[128] (sub-blocks 2i and 2i+1 share 32 bytes,
/// low and high nibbles) (144 bytes).
/// </summary>
[SkipLocalsInit]
public sealed class Q4_KQuantizer() : BlockQuantizer(GgmlType.Q4_K)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        Span<byte> levels = stackalloc byte[256];
        KQuantCommon.QuantizeScaleMinBlock(x, block, levels, nmax: 15, rmin: -1f, rdelta: 0.1f, nstep: 20);
        var q = block.Slice(16, 128);
        for (var j = 0; j < 256; j += 64)
        {
            for (var l = 0; l < 32; l++)
                q[l] = (byte)(levels[j + l] | (levels[j + l + 32] << 4));
            q = q[32..];
        }
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = QuantMath.ReadHalf(block);
        var min = QuantMath.ReadHalf(block[2..]);
        var scales = block.Slice(4, 12);
        var q = block.Slice(16, 128);
        var output = 0;
        for (var sub = 0; sub < 8; sub += 2)
        {
            QuantMath.GetScaleMinK4(sub, scales, out var sc, out var m);
            var d1 = d * sc;
            var m1 = min * m;
            QuantMath.GetScaleMinK4(sub + 1, scales, out sc, out m);
            var d2 = d * sc;
            var m2 = min * m;
            for (var l = 0; l < 32; l++)
                y[output++] = d1 * (q[l] & 0xF) - m1;
            for (var l = 0; l < 32; l++)
                y[output++] = d2 * (q[l] >> 4) - m2;
            q = q[32..];
        }
    }
}
