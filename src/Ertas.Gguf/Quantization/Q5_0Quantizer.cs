using System.Buffers.Binary;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q5_0 (quantize_row_q5_0_ref): as Q4_0 with 32 levels, scale = (value of largest magnitude) / -16.
/// Block: f16 d, qh (u32: bit j is the fifth bit of element j), qs[16] low nibbles as Q4_0 (22 bytes).
/// </summary>
public sealed class Q5_0Quantizer() : BlockQuantizer(GgmlType.Q5_0)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        var max = QuantMath.SignedAbsMax32(x);
        var d = max / -16;
        var id = d != 0 ? 1.0f / d : 0.0f;
        QuantMath.WriteHalf(block, d);
        BinaryPrimitives.WriteUInt32LittleEndian(block[2..], QuantMath.QuantizeNibbles32(x, 0f, id, 16.5f, 31, block[6..]));
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = QuantMath.ReadHalf(block);
        var qh = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
        var qs = block[6..];
        for (var j = 0; j < 16; j++)
        {
            var xh0 = (int)((qh >> j) << 4) & 0x10;
            var xh1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (((qs[j] & 0x0F) | xh0) - 16) * d;
            y[j + 16] = (((qs[j] >> 4) | xh1) - 16) * d;
        }
    }
}
