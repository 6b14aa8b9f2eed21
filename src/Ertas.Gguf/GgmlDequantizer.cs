using Ertas.Core;
using Ertas.Gguf.Quantization;

namespace Ertas.Gguf;

/// <summary>
/// Turns tensor bytes of a ggml type back into float32. The one place that knows which types can be read: the float
/// types convert directly, the block types go to their <see cref="BlockQuantizer"/> (bit-for-bit ggml's
/// <c>dequantize_row_*</c>).
/// </summary>
public static class GgmlDequantizer
{
    public static bool CanDequantize(GgmlType type) =>
        type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 || Quantizers.IsSupported(type);

    /// <summary>Throws GgufUnsupportedType naming the tensor when <paramref name="type"/> cannot be read back yet.</summary>
    public static void EnsureSupported(GgmlType type, string tensorName)
    {
        if (!CanDequantize(type))
            throw Unsupported(type, tensorName);
    }

    /// <summary>
    /// Converts <paramref name="source"/>, a whole number of <paramref name="type"/> blocks, into
    /// <paramref name="destination"/> (one float per element).
    /// </summary>
    public static void ToFloat32(GgmlType type, ReadOnlySpan<byte> source, Span<float> destination, string tensorName)
    {
        switch (type)
        {
            case GgmlType.F32: FloatConversions.SingleBytesToSingle(source, destination); break;
            case GgmlType.F16: FloatConversions.HalfBytesToSingle(source, destination); break;
            case GgmlType.BF16: FloatConversions.BFloat16BytesToSingle(source, destination); break;
            default:
                if (!Quantizers.IsSupported(type))
                    throw Unsupported(type, tensorName);
                var quantizer = Quantizers.Get(type);
                if (source.Length % quantizer.BytesPerBlock != 0 || (long)source.Length / quantizer.BytesPerBlock * quantizer.BlockSize != destination.Length)
                    throw new ErtasException(ErrorCode.GgufCorrupt,
                        $"tensor '{tensorName}' is {type}: {source.Length} bytes are not the {destination.Length} elements expected " +
                        $"({quantizer.BytesPerBlock} bytes per {quantizer.BlockSize} elements)");
                quantizer.Dequantize(source, destination);
                break;
        }
    }

    private static ErtasException Unsupported(GgmlType type, string tensorName) =>
        new(ErrorCode.GgufUnsupportedType,
            $"tensor '{tensorName}' is {type}; reading it back as float32 supports F32, F16, BF16 and {string.Join(", ", Quantizers.Supported.Order())}");
}
