using System.Buffers.Binary;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Q5_1 (quantize_row_q5_1_ref): as Q4_1 with 32 levels.
/// Block: f16 d, f16 m, qh (u32 fifth bits), qs[16] (24 bytes).
/// </summary>
public sealed class Q5_1Quantizer() : BlockQuantizer(GgmlType.Q5_1)
{
    protected override void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block)
    {
        var (min, max) = QuantMath.MinMax32(x);
        var d = (max - min) / ((1 << 5) - 1);
        var id = d != 0 ? 1.0f / d : 0.0f;
        QuantMath.WriteHalf(block, d);
        QuantMath.WriteHalf(block[2..], min);
        // ggml casts straight to uint8_t here (no clamp); the value stays within 0..31.5.
        BinaryPrimitives.WriteUInt32LittleEndian(block[4..], QuantMath.QuantizeNibbles32(x, min, id, 0.5f, 31, block[8..]));
    }

    protected override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = QuantMath.ReadHalf(block);
        var m = QuantMath.ReadHalf(block[2..]);
        var qh = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
        var qs = block[8..];
        for (var j = 0; j < 16; j++)
        {
            var xh0 = (int)((qh >> j) << 4) & 0x10;
            var xh1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = ((qs[j] & 0x0F) | xh0) * d + m;
            y[j + 16] = ((qs[j] >> 4) | xh1) * d + m;
        }
    }
}
