using System.Runtime.CompilerServices;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q2_K (quantize_row_q2_K_ref): 16 sub-blocks of 16 weights, each with a 4-bit scale and 4-bit min (in units of
/// the block's f16 d and dmin) and 2-bit levels.
/// Block: scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16 dmin (84 bytes).
/// </summary>
[SkipLocalsInit]
public sealed class Q2_KQuantizer() : BlockQuantizer(GgmlType.Q2_K)
{
    private const float Q4Scale = 15f;

    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        Span<byte> levels = stackalloc byte[256];
        Span<float> weights = stackalloc float[256];
        Span<float> mins = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        var packedScales = block[..16];
        var qs = block.Slice(16, 64);

        for (var l = 0; l < 256; l++)
            weights[l] = MathF.Abs(x[l]);
        // Sixteen independent fits of 16 weights, eight at a time, one per vector lane.
        QuantMath.MakeQkx2Quants8(16, 3, x[..128], weights[..128], levels[..128], scales[..8], mins[..8], -0.5f, 0.1f, 15, useMad: true);
        QuantMath.MakeQkx2Quants8(16, 3, x[128..], weights[128..], levels[128..], scales[8..], mins[8..], -0.5f, 0.1f, 15, useMad: true);
        float maxScale = 0;
        float maxMin = 0;
        for (var j = 0; j < 16; j++)
        {
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        if (maxScale > 0)
        {
            var iscale = Q4Scale / maxScale;
            for (var j = 0; j < 16; j++)
                packedScales[j] = (byte)QuantMath.NearestInt(iscale * scales[j]);
            QuantMath.WriteHalf(block[80..], maxScale / Q4Scale);
        }
        else
        {
            packedScales.Clear();
            QuantMath.WriteHalf(block[80..], 0f);
        }
        if (maxMin > 0)
        {
            var iscale = Q4Scale / maxMin;
            for (var j = 0; j < 16; j++)
                packedScales[j] |= (byte)(QuantMath.NearestInt(iscale * mins[j]) << 4);
            QuantMath.WriteHalf(block[82..], maxMin / Q4Scale);
        }
        else
        {
            QuantMath.WriteHalf(block[82..], 0f);
        }

        // Requantize against the scales as stored; sub-blocks whose stored scale is zero keep their first levels.
        var blockD = QuantMath.ReadHalf(block[80..]);
        var blockMin = QuantMath.ReadHalf(block[82..]);
        for (var j = 0; j < 16; j++)
        {
            var d = blockD * (packedScales[j] & 0xF);
            if (d == 0)
                continue;
            var dm = blockMin * (packedScales[j] >> 4);
            for (var ii = 0; ii < 16; ii++)
                levels[16 * j + ii] = (byte)Math.Max(0, Math.Min(3, QuantMath.NearestInt((x[16 * j + ii] + dm) / d)));
        }

        for (var j = 0; j < 256; j += 128)
            for (var l = 0; l < 32; l++)
                qs[j / 4 + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 2) | (levels[j + l + 64] << 4) | (levels[j + l + 96] << 6));
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var scales = block[..16];
        var d = QuantMath.ReadHalf(block[80..]);
        var min = QuantMath.ReadHalf(block[82..]);
        var q = block.Slice(16, 64);
        var output = 0;
        var scaleIndex = 0;
        for (var n = 0; n < 256; n += 128)
        {
            for (var shift = 0; shift < 8; shift += 2)
            {
                for (var half = 0; half < 32; half += 16)
                {
                    var sc = scales[scaleIndex++];
                    var dl = d * (sc & 0xF);
                    var ml = min * (sc >> 4);
                    for (var l = 0; l < 16; l++)
                        y[output++] = dl * ((q[l + half] >> shift) & 3) - ml;
                }
            }
            q = q[32..];
        }
    }
}
