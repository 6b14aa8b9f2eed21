using Ertas.Core;

namespace Ertas.Gguf.Mixes;

public sealed record GgufQuantizeOptions
{
    /// <summary>Threads quantizing the rows of one tensor; the bytes are the same for any count.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Replace an existing output file; without it an existing file is an error.</summary>
    public bool Overwrite { get; init; }

    public IProgressSink Progress { get; init; } = NullProgressSink.Instance;

    /// <summary>Floats converted at a time (whole rows; at least one row). Tests shrink it to cross slice edges.</summary>
    internal long SliceFloats { get; init; } = 1 << 23;
}

/// <summary>What one quantization wrote.</summary>
public sealed record GgufQuantizeResult(string OutputPath, QuantizationMix Mix, int TensorCount, long Weights, long TensorBytes, TimeSpan Elapsed)
{
    /// <summary>Tensor bytes (padding excluded) per weight, as llama-quantize reports its BPW.</summary>
    public double BitsPerWeight => Weights == 0 ? 0 : TensorBytes * 8.0 / Weights;
}

/// <summary>
/// An F32/F16/BF16 llama GGUF to a quantized one, as llama-quantize does it (no importance matrix): all metadata is
/// copied (general.file_type and general.quantization_version updated in place), each tensor is read, turned into
/// float32, and written in the type <see cref="MixPlanner"/> chose; tensors whose type stays are copied byte for byte.
/// Streams one tensor at a time from the input by positional reads (not through the map), so memory is a few
/// tensors, never the model. The output is written atomically: on any failure or cancellation no file is left.
/// </summary>
public static class GgufQuantizer
{
    private static readonly HashSet<GgmlType> InputTypes = [GgmlType.F32, GgmlType.F16, GgmlType.BF16];

    public static GgufQuantizeResult Quantize(string inputPath, string outputPath, QuantizationMix mix, GgufQuantizeOptions? options = null,
        CancellationToken ct = default)
    {
        options ??= new GgufQuantizeOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Threads, 1);
        if (!File.Exists(inputPath))
            throw new ErtasException(ErrorCode.FileNotFound, $"'{inputPath}' does not exist", inputPath);
        if (string.Equals(Path.GetFullPath(inputPath), Path.GetFullPath(outputPath), StringComparison.Ordinal))
            throw new ErtasException(ErrorCode.InvalidArgument, "the output would replace the input it is read from; choose another output path", outputPath);
        if (File.Exists(outputPath) && !options.Overwrite)
            throw new ErtasException(ErrorCode.OutputExists, $"'{outputPath}' exists and is not ours to overwrite; pass --force to replace it", outputPath);

        using var reader = new GgufReader(inputPath);
        var architecture = reader.Architecture;
        if (architecture != GgufConstants.LlamaArchitecture)
            throw new ErtasException(ErrorCode.GgufWrongArchitecture,
                $"GGUF architecture is '{architecture ?? "(none)"}'; quantization follows llama.cpp's rules for '{GgufConstants.LlamaArchitecture}' (Mistral, Llama) models only", inputPath);
        var quantized = reader.Tensors.FirstOrDefault(t => !InputTypes.Contains(t.Type));
        if (quantized is not null)
            throw new ErtasException(ErrorCode.GgufUnsupportedType,
                $"tensor '{quantized.Name}' is already {quantized.Type}: quantize from the F32, F16 or BF16 GGUF (re-quantizing loses precision twice)", inputPath);

        var plan = MixPlanner.Plan(mix, MixModel.FromGguf(reader), reader.Tensors.Select(t => new MixTensor(t.Name, t.Type, t.Shape)).ToList());
        options.Progress.Report($"quantizing {inputPath} ({reader.Tensors.Count} tensors) to {mix} at {outputPath}, {options.Threads} threads");
        GgufQuantizeResult? result = null;
        AtomicFile.Write(outputPath, stream => result = Write(reader, plan, mix, stream, outputPath, options, ct));
        return result!;
    }

    private static GgufQuantizeResult Write(GgufReader reader, IReadOnlyDictionary<string, GgmlType> plan, QuantizationMix mix, Stream output,
        string outputPath, GgufQuantizeOptions options, CancellationToken ct)
    {
        using var writeBehind = new WriteBehindStream(output);
        var writer = new GgufWriter(writeBehind);
        CopyMetadata(reader, writer, mix);
        foreach (var t in reader.Tensors)
            writer.AddTensorInfo(t.Name, plan[t.Name], t.Shape);
        writer.WriteMetadata();
        writer.WriteTensorInfos();

        var converted = reader.Tensors.Where(t => plan[t.Name] != t.Type).ToList();
        // Float32 goes through in slices of whole rows, so only the encoded tensor is held whole (the writer takes a
        // tensor in one piece): 7B's token_embd is 32 MB of floats at a time instead of 524 MB.
        var floats = new float[converted.Select(t => Math.Min(t.ElementCount, SliceRows(t, options) * t.Dimensions[0])).DefaultIfEmpty(0).Max()];
        var bytes = new byte[converted.Select(t => plan[t.Name].Info().ByteSize(t.ElementCount)).DefaultIfEmpty(0).Max()];
        // The input arrives by positional reads into this buffer (a slice of a converted tensor, or a whole copied
        // one), never through the reader's map: mapped pages, once touched, would stay in RSS up to the model's size.
        var sourceBuffer = new byte[reader.Tensors.Select(t => plan[t.Name] == t.Type
                ? t.ByteSize
                : Math.Min(t.ByteSize, SliceRows(t, options) * t.Type.Info().ByteSize(t.Dimensions[0])))
            .DefaultIfEmpty(0).Max()];
        var meter = new ProgressMeter(reader.Tensors.Sum(t => t.ElementCount));
        long doneWeights = 0, tensorBytes = 0;
        for (var i = 0; i < reader.Tensors.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var tensor = reader.Tensors[i];
            var target = plan[tensor.Name];
            if (target == tensor.Type)
            {
                var source = sourceBuffer.AsSpan(0, checked((int)tensor.ByteSize));
                reader.ReadTensorRange(tensor, 0, source);
                writer.WriteTensorData(tensor.Name, source);
                tensorBytes += source.Length;
            }
            else
            {
                var rowLength = (int)tensor.Dimensions[0];
                var rows = (int)(tensor.ElementCount / rowLength);
                var sourceRowBytes = (int)tensor.Type.Info().ByteSize(rowLength);
                var targetRowBytes = (int)target.Info().ByteSize(rowLength);
                var encoded = bytes.AsSpan(0, rows * targetRowBytes);
                var sliceRows = (int)SliceRows(tensor, options);
                for (var first = 0; first < rows; first += sliceRows)
                {
                    var count = Math.Min(sliceRows, rows - first);
                    var values = floats.AsSpan(0, count * rowLength);
                    var source = sourceBuffer.AsSpan(0, count * sourceRowBytes);
                    reader.ReadTensorRange(tensor, (long)first * sourceRowBytes, source);
                    TensorEncoder.Transcode(tensor.Type, source, target, encoded.Slice(first * targetRowBytes, count * targetRowBytes), values, rowLength,
                        options.Threads, tensor.Name, ct);
                }
                writer.WriteTensorData(tensor.Name, encoded);
                tensorBytes += encoded.Length;
            }
            doneWeights += tensor.ElementCount;
            options.Progress.Advance(
                $"[{i + 1}/{reader.Tensors.Count}] {tensor.Name} {tensor.Type} -> {target} [{string.Join(", ", tensor.Shape)}] {meter.Describe(doneWeights, " weights")}",
                i + 1, reader.Tensors.Count);
        }
        writer.Finish();
        var result = new GgufQuantizeResult(outputPath, mix, reader.Tensors.Count, doneWeights, tensorBytes, meter.Elapsed);
        options.Progress.Report($"quantized {result.TensorCount} tensors to {mix}: {tensorBytes / 1e6:F1} MB of tensor data, {result.BitsPerWeight:F2} bits per weight, in {meter.Elapsed.TotalSeconds:F1} s");
        return result;
    }

    private static long SliceRows(GgufTensorInfo tensor, GgufQuantizeOptions options) => Math.Max(1, options.SliceFloats / tensor.Dimensions[0]);

    /// <summary>
    /// Every key in its place, with <c>general.file_type</c> and <c>general.quantization_version</c> set (appended
    /// when absent) and split-file keys dropped, as llama-quantize writes one file. Updating in place rather than
    /// moving the keys to the end keeps quantizing our F32 export byte-identical to exporting with the mix directly.
    /// </summary>
    private static void CopyMetadata(GgufReader reader, GgufWriter writer, QuantizationMix mix)
    {
        var fileTypeWritten = false;
        var versionWritten = false;
        foreach (var kv in reader.Metadata)
        {
            if (kv.Key.StartsWith("split.", StringComparison.Ordinal))
                continue;
            if (kv.Key == Keys.General.FileType)
            {
                writer.AddUInt32(kv.Key, (uint)mix.FileType);
                fileTypeWritten = true;
            }
            else if (kv.Key == Keys.General.QuantizationVersion)
            {
                writer.AddUInt32(kv.Key, GgufConstants.QuantizationVersion);
                versionWritten = true;
            }
            else
            {
                writer.AddKeyValue(kv);
            }
        }
        if (!versionWritten)
            writer.AddUInt32(Keys.General.QuantizationVersion, GgufConstants.QuantizationVersion);
        if (!fileTypeWritten)
            writer.AddUInt32(Keys.General.FileType, (uint)mix.FileType);
    }
}
