namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q4_0 (quantize_row_q4_0_ref): scale = (value of largest magnitude) / -8, levels 0..15 stored as x/scale + 8.
/// Block: f16 d, qs[16] with element j in the low nibble of byte j and element j+16 in its high nibble (18 bytes).
/// </summary>
public sealed class Q4_0Quantizer() : BlockQuantizer(GgmlType.Q4_0)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        var max = QuantMath.SignedAbsMax32(x);
        var d = max / -8;
        var id = d != 0 ? 1.0f / d : 0.0f;
        QuantMath.WriteHalf(block, d);
        // C's (int8_t) cast truncates toward zero; values stay within 0..16.5 here, so 16 is the only one to clamp.
        QuantMath.QuantizeNibbles32(x, 0f, id, 8.5f, 15, block[2..]);
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = QuantMath.ReadHalf(block);
        var qs = block[2..];
        for (var j = 0; j < 16; j++)
        {
            y[j] = ((qs[j] & 0x0F) - 8) * d;
            y[j + 16] = ((qs[j] >> 4) - 8) * d;
        }
    }
}
