using System.Runtime.ExceptionServices;
using Ertas.Core;
using Ertas.Gguf.Quantization;

namespace Ertas.Gguf.Mixes;

/// <summary>Float32 rows to the bytes of any type a mix writes: the float types convert, the block types quantize.</summary>
public static class TensorEncoder
{
    /// <summary>Rows per parallel chunk: about 256K floats, 1 MB of float32 that stays in cache between its two steps.</summary>
    private const int ChunkFloats = 1 << 18;

    /// <summary>
    /// Whole rows of a tensor stored as <paramref name="sourceType"/> to <paramref name="targetType"/>: each chunk of
    /// rows is turned into float32 (in its part of <paramref name="scratch"/>) and encoded by the same thread, so the
    /// conversion runs on every thread too and its floats are still in cache when they are encoded. Rows are
    /// independent, so the bytes are those of converting everything first and encoding after, for any thread count.
    /// </summary>
    public static unsafe void Transcode(GgmlType sourceType, ReadOnlySpan<byte> source, GgmlType targetType, Span<byte> destination,
        Span<float> scratch, int rowLength, int threads, string tensorName, CancellationToken ct)
    {
        var sourceRowBytes = checked((int)sourceType.Info().ByteSize(rowLength));
        var targetRowBytes = checked((int)targetType.Info().ByteSize(rowLength));
        var rows = source.Length / sourceRowBytes;
        var rowsPerChunk = Math.Max(1, ChunkFloats / rowLength);
        var chunks = (rows + rowsPerChunk - 1) / rowsPerChunk;
        if (threads == 1 || chunks <= 1)
        {
            for (var chunk = 0; chunk < chunks; chunk++)
            {
                ct.ThrowIfCancellationRequested();
                TranscodeChunk(sourceType, source, targetType, destination, scratch, rowLength, sourceRowBytes, targetRowBytes, rows, rowsPerChunk, chunk, tensorName);
            }
            return;
        }
        fixed (byte* sourcePointer = source)
        fixed (byte* destinationPointer = destination)
        fixed (float* scratchPointer = scratch)
        {
            // Spans cannot enter the lambda; the pointers stay pinned until Parallel.For returns.
            var (src, dst, tmp) = ((nint)sourcePointer, (nint)destinationPointer, (nint)scratchPointer);
            var (sourceLength, destinationLength, scratchLength) = (source.Length, destination.Length, scratch.Length);
            var options = new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = ct };
            try
            {
                Parallel.For(0, chunks, options, chunk => TranscodeChunk(sourceType, new ReadOnlySpan<byte>((byte*)src, sourceLength), targetType,
                    new Span<byte>((byte*)dst, destinationLength), new Span<float>((float*)tmp, scratchLength), rowLength, sourceRowBytes, targetRowBytes,
                    rows, rowsPerChunk, chunk, tensorName));
            }
            catch (AggregateException e) when (e.InnerExceptions[0] is ErtasException)
            {
                // Bad input is one user-facing error, as on one thread, not an AggregateException.
                ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
            }
        }
    }

    private static void TranscodeChunk(GgmlType sourceType, ReadOnlySpan<byte> source, GgmlType targetType, Span<byte> destination, Span<float> scratch,
        int rowLength, int sourceRowBytes, int targetRowBytes, int rows, int rowsPerChunk, int chunk, string tensorName)
    {
        var first = chunk * rowsPerChunk;
        var count = Math.Min(rowsPerChunk, rows - first);
        var values = scratch.Slice(first * rowLength, count * rowLength);
        GgmlDequantizer.ToFloat32(sourceType, source.Slice(first * sourceRowBytes, count * sourceRowBytes), values, tensorName);
        Encode(targetType, values, destination.Slice(first * targetRowBytes, count * targetRowBytes), rowLength, threads: 1, CancellationToken.None);
    }

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
