namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q4_1 (quantize_row_q4_1_ref): levels 0..15 between the block's min and max.
/// Block: f16 d, f16 m (the min), qs[16] packed as Q4_0 (20 bytes).
/// </summary>
public sealed class Q4_1Quantizer() : BlockQuantizer(GgmlType.Q4_1)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        var (min, max) = QuantMath.MinMax32(x);
        var d = (max - min) / ((1 << 4) - 1);
        var id = d != 0 ? 1.0f / d : 0.0f;
        QuantMath.WriteHalf(block, d);
        QuantMath.WriteHalf(block[2..], min);
        QuantMath.QuantizeNibbles32(x, min, id, 0.5f, 15, block[4..]);
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = QuantMath.ReadHalf(block);
        var m = QuantMath.ReadHalf(block[2..]);
        var qs = block[4..];
        for (var j = 0; j < 16; j++)
        {
            y[j] = (qs[j] & 0x0F) * d + m;
            y[j + 16] = (qs[j] >> 4) * d + m;
        }
    }
}
