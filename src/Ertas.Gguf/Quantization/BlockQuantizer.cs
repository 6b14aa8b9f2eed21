using System.Runtime.CompilerServices;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// Quantizes float32 rows into one ggml block type and back, byte for byte as ggml's reference quantizers do when no
/// importance matrix is given (what <c>ggml_quantize_chunk(type, ..., imatrix: NULL)</c> and so llama-quantize
/// write). Like gguf-py's <c>quants.py</c>: this base checks shapes and walks blocks, one subclass per type knows a
/// block. Every block is quantized on its own, so any split of the rows gives the same bytes.
/// </summary>
public abstract class BlockQuantizer
{
    protected BlockQuantizer(GgmlType type)
    {
        var info = type.Info();
        Type = type;
        BlockSize = info.BlockSize;
        BytesPerBlock = info.BytesPerBlock;
    }

    public GgmlType Type { get; }

    /// <summary>Elements per block (32, or 256 for the K-quants).</summary>
    public int BlockSize { get; }

    public int BytesPerBlock { get; }

    /// <summary>Bytes one row of <paramref name="rowLength"/> elements takes (ggml_row_size).</summary>
    public long RowBytes(long rowLength)
    {
        CheckRowLength(rowLength);
        return rowLength / BlockSize * BytesPerBlock;
    }

    /// <summary>
    /// Quantizes <paramref name="rows"/> (a whole number of rows of <paramref name="rowLength"/> elements) into the
    /// first <c>rows.Length / BlockSize * BytesPerBlock</c> bytes of <paramref name="destination"/>.
    /// The row length only has to be a multiple of <see cref="BlockSize"/>: ggml's reference quantizers do not look
    /// across blocks, so rows just concatenate.
    /// </summary>
    public void Quantize(ReadOnlySpan<float> rows, Span<byte> destination, int rowLength)
    {
        CheckRowLength(rowLength);
        if (rows.Length % rowLength != 0)
            throw new ArgumentException($"{rows.Length} elements are not a whole number of rows of {rowLength}", nameof(rows));
        var blocks = rows.Length / BlockSize;
        if (destination.Length < (long)blocks * BytesPerBlock)
            throw new ArgumentException($"{Type} needs {(long)blocks * BytesPerBlock} bytes for {rows.Length} elements, destination holds {destination.Length}", nameof(destination));
        for (var b = 0; b < blocks; b++)
            QuantizeBlock(rows.Slice(b * BlockSize, BlockSize), destination.Slice(b * BytesPerBlock, BytesPerBlock));
    }

    /// <summary>
    /// Turns <paramref name="source"/>, a whole number of blocks, back into <c>blocks * BlockSize</c> floats at the
    /// start of <paramref name="destination"/>, with the same float operations as ggml's <c>dequantize_row_*</c>.
    /// </summary>
    public void Dequantize(ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (source.Length % BytesPerBlock != 0)
            throw new ArgumentException($"{source.Length} bytes are not a whole number of {Type} blocks of {BytesPerBlock} bytes", nameof(source));
        var blocks = source.Length / BytesPerBlock;
        if (destination.Length < (long)blocks * BlockSize)
            throw new ArgumentException($"{blocks} {Type} blocks hold {(long)blocks * BlockSize} elements, destination holds {destination.Length}", nameof(destination));
        for (var b = 0; b < blocks; b++)
            DequantizeBlock(source.Slice(b * BytesPerBlock, BytesPerBlock), destination.Slice(b * BlockSize, BlockSize));
    }

    /// <summary><paramref name="x"/> has exactly <see cref="BlockSize"/> elements, <paramref name="block"/> exactly <see cref="BytesPerBlock"/> bytes.</summary>
    protected abstract void QuantizeBlock(ReadOnlySpan<float> x, Span<byte> block);

    protected abstract void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> y);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckRowLength(long rowLength)
    {
        if (rowLength <= 0 || rowLength % BlockSize != 0)
            throw new ArgumentException($"{Type} quantizes rows whose length is a positive multiple of {BlockSize}; got {rowLength}", nameof(rowLength));
    }
}
