namespace Ertas.Mistral.Checkpoints;

/// <summary>
/// One tensor of a safetensors file. <paramref name="Offset"/> is the absolute byte position of its data in the
/// file (past the length prefix and header), not the header's relative <c>data_offsets</c>.
/// </summary>
public sealed record SafeTensorInfo(string Name, DType DType, long[] Shape, long Offset, long ByteLength)
{
    public long ElementCount => ByteLength / DType.Size();

    public string ShapeText => FormatShape(Shape);

    public static string FormatShape(IReadOnlyList<long> shape) => $"[{string.Join(", ", shape)}]";
}

/// <summary>
/// A tensor to write: its bytes are produced on demand by <paramref name="Fill"/> into a zeroed buffer of exactly
/// the tensor's size (little-endian, row-major), so a writer holds one tensor in memory at a time.
/// </summary>
public sealed record SafeTensorEntry(string Name, DType DType, long[] Shape, Action<Span<byte>> Fill)
{
    public long ByteLength => ElementCount(Shape) * DType.Size();

    internal static long ElementCount(IReadOnlyList<long> shape)
    {
        long count = 1;
        foreach (var d in shape)
            count = checked(count * d);
        return count;
    }
}
