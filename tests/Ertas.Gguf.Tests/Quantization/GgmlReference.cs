using System.Runtime.InteropServices;
using LLama.Native;

namespace Ertas.Gguf.Tests.Quantization;

/// <summary>
/// ggml itself, as the judge: the <c>libggml-base.so</c> that LLamaSharp's llama.cpp already loaded, so the
/// quantizer we compare with is exactly the one llama-quantize runs. <c>ggml_quantize_chunk</c> with a null
/// imatrix is what llama.cpp calls per tensor; <c>dequantize_row_*</c> are ggml's exported reference
/// dequantizers (the <c>to_float</c> of each type's traits).
/// </summary>
internal sealed unsafe class GgmlReference
{
    private static readonly Lazy<GgmlReference> Shared = new(Load);

    private readonly nint _library;
    private readonly delegate* unmanaged<int, float*, void*, long, long, long, float*, nuint> _quantizeChunk;

    private GgmlReference(string path, nint library)
    {
        Path = path;
        _library = library;
        _quantizeChunk = (delegate* unmanaged<int, float*, void*, long, long, long, float*, nuint>)Export("ggml_quantize_chunk");
    }

    public static GgmlReference Instance => Shared.Value;

    /// <summary>The file the process loaded, for messages.</summary>
    public string Path { get; }

    /// <summary>ggml_quantize_chunk(type, src, dst, 0, rows, rowLength, imatrix: NULL).</summary>
    public byte[] Quantize(GgmlType type, ReadOnlySpan<float> source, int rowLength)
    {
        var rows = source.Length / rowLength;
        var bytes = new byte[type.Info().ByteSize(source.Length)];
        fixed (float* src = source)
        fixed (byte* dst = bytes)
        {
            var written = _quantizeChunk((int)type, src, dst, 0, rows, rowLength, null);
            if ((long)written != bytes.Length)
                throw new InvalidOperationException($"ggml_quantize_chunk wrote {written} bytes of {type}, expected {bytes.Length}");
        }
        return bytes;
    }

    /// <summary>dequantize_row_&lt;type&gt;(blocks, y, elements).</summary>
    public float[] Dequantize(GgmlType type, ReadOnlySpan<byte> blocks)
    {
        var info = type.Info();
        var elements = blocks.Length / info.BytesPerBlock * info.BlockSize;
        var result = new float[elements];
        var dequantizeRow = (delegate* unmanaged<void*, float*, long, void>)Export($"dequantize_row_q{info.Name[1..]}");
        fixed (byte* src = blocks)
        fixed (float* dst = result)
            dequantizeRow(src, dst, elements);
        return result;
    }

    private nint Export(string name) =>
        NativeLibrary.TryGetExport(_library, name, out var address)
            ? address
            : throw new InvalidOperationException($"{Path} does not export {name}");

    private static GgmlReference Load()
    {
        // Let LLamaSharp pick and load its native build first, then take the ggml it brought in, rather than
        // loading a second copy from another folder next to it.
        NativeApi.llama_empty_call();
        var path = File.ReadLines("/proc/self/maps")
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 6)
            .Select(fields => string.Join(' ', fields.Skip(5)))
            .FirstOrDefault(file => System.IO.Path.GetFileName(file) == "libggml-base.so")
            ?? throw new InvalidOperationException("LLamaSharp loaded llama.cpp but no libggml-base.so appears in /proc/self/maps");
        // dlopen of a file that is already loaded returns the same handle (it only bumps the reference count).
        return new GgmlReference(path, NativeLibrary.Load(path));
    }
}
