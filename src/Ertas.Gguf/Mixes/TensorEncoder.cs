using Ertas.Core;
using Ertas.Gguf.Quantization;

namespace Ertas.Gguf.Mixes;

/// <summary>Float32 rows to the bytes of any type a mix writes: the float types convert, the block types quantize.</summary>
public static class TensorEncoder
{
    /// <summary>Encodes <paramref name="values"/> (whole rows of <paramref name="rowLength"/>) into exactly the type's byte size.</summary>
    public static void Encode(GgmlType type, ReadOnlySpan<float> values, Span<byte> destination, int rowLength, int threads, CancellationToken ct)
    {
        switch (type)
        {
            case GgmlType.F32: FloatConversions.SingleToSingleBytes(values, destination); break;
            case GgmlType.F16: FloatConversions.SingleToHalfBytes(values, destination); break;
            case GgmlType.BF16: FloatConversions.SingleToBFloat16Bytes(values, destination); break;
            default:
                if (!Quantizers.IsSupported(type))
                    throw new ErtasException(ErrorCode.GgufUnsupportedType,
                        $"cannot write {type}; supported: F32, F16, BF16, {string.Join(", ", Quantizers.Supported.Order())}");
                Quantizers.QuantizeRows(type, values, destination, values.Length / rowLength, rowLength, threads, ct);
                break;
        }
    }
}
