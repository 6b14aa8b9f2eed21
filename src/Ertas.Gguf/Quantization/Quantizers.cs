using System.Collections.Frozen;

namespace Ertas.Gguf.Quantization;

/// <summary>The block quantizers by ggml type, and a row-parallel driver over them.</summary>
public static class Quantizers
{
    private static readonly FrozenDictionary<GgmlType, BlockQuantizer> Table = new BlockQuantizer[]
    {
        new Q4_0Quantizer(),
        new Q4_1Quantizer(),
        new Q5_0Quantizer(),
        new Q5_1Quantizer(),
        new Q8_0Quantizer(),
        new Q2_KQuantizer(),
        new Q3_KQuantizer(),
        new Q4_KQuantizer(),
        new Q5_KQuantizer(),
        new Q6_KQuantizer(),
    }.ToFrozenDictionary(quantizer => quantizer.Type);

    /// <summary>Types we quantize and dequantize.</summary>
    public static IReadOnlyCollection<GgmlType> Supported => Table.Keys;

    public static bool IsSupported(GgmlType type) => Table.ContainsKey(type);

    public static BlockQuantizer Get(GgmlType type) =>
        Table.TryGetValue(type, out var quantizer)
            ? quantizer
            : throw new ArgumentOutOfRangeException(nameof(type), $"no block quantizer for {type}; supported: {string.Join(", ", Table.Keys.Order())}");

    /// <summary>
    /// Quantizes <paramref name="rows"/> rows of <paramref name="rowLength"/> floats from <paramref name="source"/>
    /// into <paramref name="destination"/> on up to <paramref name="threads"/> threads. Rows are independent, so
    /// the bytes are the same for any thread count. Cancellation is checked between chunks of rows.
    /// </summary>
    public static unsafe void QuantizeRows(GgmlType type, ReadOnlySpan<float> source, Span<byte> destination, int rows, int rowLength,
        int threads, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        var quantizer = Get(type);
        var rowBytes = quantizer.RowBytes(rowLength);
        var elements = (long)rows * rowLength;
        if (source.Length < elements)
            throw new ArgumentException($"{rows} rows of {rowLength} need {elements} floats, source holds {source.Length}", nameof(source));
        if (destination.Length < rows * rowBytes)
            throw new ArgumentException($"{rows} rows of {type} need {rows * rowBytes} bytes, destination holds {destination.Length}", nameof(destination));

        // About 256K floats per chunk: big enough that scheduling is noise, small enough to balance and cancel.
        var rowsPerChunk = (int)Math.Max(1, (1 << 18) / rowLength);
        var chunks = (rows + rowsPerChunk - 1) / rowsPerChunk;
        if (threads == 1 || chunks <= 1)
        {
            for (var chunk = 0; chunk < chunks; chunk++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                QuantizeChunk(quantizer, source, destination, chunk, rowsPerChunk, rows, rowLength, rowBytes);
            }
            return;
        }

        fixed (float* sourcePointer = source)
        fixed (byte* destinationPointer = destination)
        {
            // Spans cannot enter the lambda; the pointers stay pinned until Parallel.For returns.
            var src = (nint)sourcePointer;
            var dst = (nint)destinationPointer;
            var sourceLength = (int)elements;
            var destinationLength = checked((int)(rows * rowBytes));
            var options = new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = cancellationToken };
            Parallel.For(0, chunks, options, chunk =>
                QuantizeChunk(quantizer, new ReadOnlySpan<float>((float*)src, sourceLength), new Span<byte>((byte*)dst, destinationLength),
                    chunk, rowsPerChunk, rows, rowLength, rowBytes));
        }
    }

    private static void QuantizeChunk(BlockQuantizer quantizer, ReadOnlySpan<float> source, Span<byte> destination, int chunk, int rowsPerChunk,
        int rows, int rowLength, long rowBytes)
    {
        var firstRow = chunk * rowsPerChunk;
        var count = Math.Min(rowsPerChunk, rows - firstRow);
        quantizer.Quantize(
            source.Slice(firstRow * rowLength, count * rowLength),
            destination.Slice((int)(firstRow * rowBytes), (int)(count * rowBytes)),
            rowLength);
    }
}
