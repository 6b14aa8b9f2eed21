using Ertas.Core;

namespace Ertas.Gguf;

/// <summary>
/// Turns tensor bytes of a ggml type back into float32. The one place that knows which types can be read: block
/// dequantizers for Q8_0, Q4_K, ... plug into <see cref="ToFloat32"/>'s switch (and <see cref="CanDequantize"/>).
/// </summary>
public static class GgmlDequantizer
{
    public static bool CanDequantize(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

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
                throw Unsupported(type, tensorName);
        }
    }

    private static ErtasException Unsupported(GgmlType type, string tensorName) =>
        new(ErrorCode.GgufUnsupportedType, $"tensor '{tensorName}' is {type}; reading it back as float32 supports only F32, F16 and BF16 so far");
}
