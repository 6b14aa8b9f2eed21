using System.Runtime.Intrinsics;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q8_0 (quantize_row_q8_0_ref): 32 weights share an f16 scale amax/127 and keep roundf(x/scale) as int8.
/// Block: f16 d, int8 qs[32] (34 bytes).
/// </summary>
public sealed class Q8_0Quantizer() : BlockQuantizer(GgmlType.Q8_0)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        // The absolute maximum is exact in any order, so a vector reduction gives ggml's value.
        float amax;
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Max(
                Vector256.Max(Vector256.Abs(Vector256.Create(x)), Vector256.Abs(Vector256.Create(x[8..]))),
                Vector256.Max(Vector256.Abs(Vector256.Create(x[16..])), Vector256.Abs(Vector256.Create(x[24..]))));
            var half = Vector128.Max(m.GetLower(), m.GetUpper());
            amax = MathF.Max(MathF.Max(half[0], half[1]), MathF.Max(half[2], half[3]));
        }
        else
        {
            amax = 0f;
            foreach (var v in x)
                amax = MathF.Max(amax, MathF.Abs(v));
        }
        var d = amax / ((1 << 7) - 1);
        var id = d != 0 ? 1.0f / d : 0.0f;
        QuantMath.WriteHalf(block, d);
        var qs = block[2..];
        for (var j = 0; j < 32; j++)
            qs[j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = QuantMath.ReadHalf(block);
        var qs = block[2..];
        for (var j = 0; j < 32; j++)
            y[j] = (sbyte)qs[j] * d;
    }
}
