using System.Globalization;
using Ertas.Core;
using Ertas.Mistral;

namespace Ertas.Gguf;

public sealed record GgufExportOptions
{
    /// <summary><c>general.name</c>; convert_hf_to_gguf.py uses the checkpoint folder's name.</summary>
    public string ModelName { get; init; } = "mistral";

    /// <summary><c>general.version</c>, written only when given.</summary>
    public string? Version { get; init; }

    /// <summary><c>llama.context_length</c>; null means the config's max_position_embeddings.</summary>
    public int? ContextLength { get; init; }

    /// <summary>Tensor data alignment; anything but the default 32 is written as <c>general.alignment</c>.</summary>
    public uint Alignment { get; init; } = GgufConstants.DefaultAlignment;

    public IProgressSink Progress { get; init; } = NullProgressSink.Instance;
}

/// <summary>
/// Hugging Face Mistral/Llama checkpoint to a llama.cpp GGUF (architecture "llama"), writing the metadata
/// convert_hf_to_gguf.py's <c>LlamaModel</c> writes. Streams: one tensor is read as float32, converted and written
/// before the next is read, so memory is bounded by the largest tensor (token_embd), not the model.
/// </summary>
public static class GgufExporter
{
    public static IReadOnlyList<GgmlType> SupportedTypes { get; } = [GgmlType.F32, GgmlType.F16, GgmlType.BF16];

    /// <summary>Writes <paramref name="outPath"/> atomically: on failure or cancellation no file is left.</summary>
    public static void Export(MistralConfig config, ITensorSource source, GgufVocabulary vocab, string outPath, GgmlType type,
        GgufExportOptions? options = null, CancellationToken ct = default)
    {
        options ??= new GgufExportOptions();
        options.Progress.Report($"exporting GGUF ({type}) to {outPath}");
        AtomicFile.Write(outPath, stream => Export(config, source, vocab, stream, type, options, ct));
    }

    public static void Export(MistralConfig config, ITensorSource source, GgufVocabulary vocab, Stream output, GgmlType type,
        GgufExportOptions? options = null, CancellationToken ct = default)
    {
        options ??= new GgufExportOptions();
        var fileType = FileTypeFor(type);
        config.Validate();
        vocab.Validate();
        vocab = vocab.PadTo(config.VocabSize);
        var tensors = config.ExpectedTensors().ToList();
        CheckSource(source, tensors);

        var writer = new GgufWriter(output);
        WriteLlamaMetadata(writer, config, vocab, fileType, options);
        foreach (var (hfName, shape) in tensors)
            writer.AddTensorInfo(HfTensorNames.ToGguf(hfName)!, TensorType(hfName, shape.Length, type), shape);
        writer.WriteMetadata();
        writer.WriteTensorInfos();

        var maxElements = tensors.Max(t => Elements(t.Shape));
        var floats = new float[maxElements];
        var bytes = new byte[tensors.Max(t => TensorType(t.Name, t.Shape.Length, type).Info().ByteSize(Elements(t.Shape)))];
        var meter = new ProgressMeter(writer.TensorDataBytes);
        long done = 0;
        for (var i = 0; i < tensors.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var (hfName, shape) = tensors[i];
            var ggufName = HfTensorNames.ToGguf(hfName)!;
            var tensorType = TensorType(hfName, shape.Length, type);
            var elements = (int)Elements(shape);
            var values = floats.AsSpan(0, elements);
            source.ReadFloat32(hfName, values);
            var byteCount = (int)tensorType.Info().ByteSize(elements);
            var encoded = bytes.AsSpan(0, byteCount);
            var headCount = RopeHeadCount(hfName, config);
            if (headCount is { } heads)
            {
                // Convert row by row straight into the permuted position: no second float buffer.
                var rows = (int)shape[0];
                var cols = (int)shape[1];
                var headDim = RopePermutation.HeadDim(rows, heads);
                var rowBytes = byteCount / rows;
                for (var row = 0; row < rows; row++)
                {
                    var from = RopePermutation.HfRowForGgufRow(row, headDim);
                    Encode(tensorType, values.Slice(from * cols, cols), encoded.Slice(row * rowBytes, rowBytes));
                }
            }
            else
            {
                Encode(tensorType, values, encoded);
            }
            writer.WriteTensorData(ggufName, encoded);
            done += GgufWriter.AlignUp(byteCount, writer.Alignment);
            options.Progress.Report(
                $"[{i + 1}/{tensors.Count}] {ggufName} {tensorType} [{string.Join(", ", shape)}] {meter.Describe(Math.Min(done, meter.Total))}");
        }
        writer.Finish();
        options.Progress.Report($"wrote {tensors.Count} tensors, {done / 1e6:F1} MB of tensor data in {meter.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>
    /// The metadata convert_hf_to_gguf.py writes for a Llama/Mistral model, in its order. Public so that other
    /// writers (quantized exports) produce the same header.
    /// </summary>
    public static void WriteLlamaMetadata(GgufWriter writer, MistralConfig config, GgufVocabulary vocab, LlamaFileType fileType, GgufExportOptions options)
    {
        static string K(string template) => Keys.Llama(template);
        writer.AddString(Keys.General.Architecture, GgufConstants.LlamaArchitecture);
        if (options.Alignment != GgufConstants.DefaultAlignment)
            writer.AddUInt32(Keys.General.Alignment, options.Alignment);
        writer.AddString(Keys.General.Type, Keys.GeneralTypes.Model);
        writer.AddString(Keys.General.Name, options.ModelName);
        if (options.Version is { } version)
            writer.AddString(Keys.General.Version, version);

        writer.AddUInt32(K(Keys.LLM.BlockCount), (uint)config.NumHiddenLayers);
        writer.AddUInt32(K(Keys.LLM.ContextLength), (uint)(options.ContextLength ?? config.MaxPositionEmbeddings));
        writer.AddUInt32(K(Keys.LLM.EmbeddingLength), (uint)config.HiddenSize);
        writer.AddUInt32(K(Keys.LLM.FeedForwardLength), (uint)config.IntermediateSize);
        writer.AddUInt32(K(Keys.Attention.HeadCount), (uint)config.NumAttentionHeads);
        writer.AddUInt32(K(Keys.Attention.HeadCountKv), (uint)config.NumKeyValueHeads);
        writer.AddFloat32(K(Keys.Rope.FreqBase), (float)config.RopeTheta);
        writer.AddFloat32(K(Keys.Attention.LayerNormRmsEpsilon), (float)config.RmsNormEps);
        // convert_hf_to_gguf.py writes these whenever config.json names head_dim; llama.cpp otherwise derives
        // hidden_size / heads, which is wrong exactly when head_dim was given and differs.
        if (config.HeadDimOverride is not null)
        {
            writer.AddUInt32(K(Keys.Attention.KeyLength), (uint)config.HeadDim);
            writer.AddUInt32(K(Keys.Attention.ValueLength), (uint)config.HeadDim);
        }
        writer.AddUInt32(Keys.General.FileType, (uint)fileType);
        writer.AddUInt32(K(Keys.LLM.VocabSize), (uint)config.VocabSize);
        writer.AddUInt32(K(Keys.Rope.DimensionCount), (uint)config.HeadDim);

        writer.AddString(Keys.Tokenizer.Model, "llama");
        writer.AddString(Keys.Tokenizer.Pre, "default");
        writer.AddArray(Keys.Tokenizer.Tokens, vocab.Tokens);
        writer.AddArray(Keys.Tokenizer.Scores, vocab.Scores);
        writer.AddArray(Keys.Tokenizer.TokenType, vocab.TokenTypes);
        writer.AddUInt32(Keys.Tokenizer.BosId, (uint)vocab.BosId);
        writer.AddUInt32(Keys.Tokenizer.EosId, (uint)vocab.EosId);
        writer.AddUInt32(Keys.Tokenizer.UnknownId, (uint)vocab.UnkId);
        writer.AddBool(Keys.Tokenizer.AddBos, vocab.AddBos);
        writer.AddBool(Keys.Tokenizer.AddEos, vocab.AddEos);
        if (vocab.ChatTemplate is { } template)
            writer.AddString(Keys.Tokenizer.ChatTemplate, template);

        // convert_hf_to_gguf.py writes this into every file, quantized or not.
        writer.AddUInt32(Keys.General.QuantizationVersion, GgufConstants.QuantizationVersion);
    }

    public static LlamaFileType FileTypeFor(GgmlType type) => type switch
    {
        GgmlType.F32 => LlamaFileType.AllF32,
        GgmlType.F16 => LlamaFileType.MostlyF16,
        GgmlType.BF16 => LlamaFileType.MostlyBF16,
        _ => throw new ErtasException(ErrorCode.GgufUnsupportedType,
            $"GGUF export writes F32, F16 or BF16, got {type}; quantize the F16 export instead"),
    };

    /// <summary>Norms and other 1-D tensors stay F32 (llama.cpp expects it); weights take the requested type.</summary>
    public static GgmlType TensorType(string name, int dimensions, GgmlType requested) =>
        dimensions <= 1 || name.EndsWith("norm.weight", StringComparison.Ordinal) ? GgmlType.F32 : requested;

    /// <summary>Head count for Q/K projections (which need the RoPE row permutation); null for other tensors.</summary>
    internal static int? RopeHeadCount(string hfName, MistralConfig config) =>
        hfName.EndsWith(".self_attn.q_proj.weight", StringComparison.Ordinal) ? config.NumAttentionHeads
        : hfName.EndsWith(".self_attn.k_proj.weight", StringComparison.Ordinal) ? config.NumKeyValueHeads
        : null;

    private static void Encode(GgmlType type, ReadOnlySpan<float> values, Span<byte> destination)
    {
        switch (type)
        {
            case GgmlType.F32: FloatConversions.SingleToSingleBytes(values, destination); break;
            case GgmlType.F16: FloatConversions.SingleToHalfBytes(values, destination); break;
            case GgmlType.BF16: FloatConversions.SingleToBFloat16Bytes(values, destination); break;
            default: throw new ErtasException(ErrorCode.GgufUnsupportedType, $"cannot encode {type}");
        }
    }

    private static void CheckSource(ITensorSource source, List<(string Name, long[] Shape)> expected)
    {
        var available = new HashSet<string>(source.TensorNames, StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            if (!available.Remove(name))
                throw new ErtasException(ErrorCode.CheckpointMissingTensor, $"checkpoint has no tensor '{name}', which config.json implies");
            var actual = source.GetShape(name);
            if (!actual.AsSpan().SequenceEqual(shape))
                throw new ErtasException(ErrorCode.CheckpointShapeMismatch,
                    $"tensor '{name}' has shape [{string.Join(", ", actual)}], config.json implies [{string.Join(", ", shape)}]");
            if (Elements(shape) > Array.MaxLength)
                throw new ErtasException(ErrorCode.CheckpointShapeMismatch, $"tensor '{name}' is too large to convert in one piece");
        }
        // Buffers HF keeps for RoPE carry no weights; convert_hf_to_gguf.py drops them too.
        available.RemoveWhere(n => n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal));
        if (available.Count > 0)
            throw new ErtasException(ErrorCode.CheckpointUnexpectedTensor,
                $"checkpoint has tensors a Mistral config does not explain: {string.Join(", ", available.Order().Take(5))}{(available.Count > 5 ? ", ..." : "")}");
    }

    private static long Elements(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    internal static double FloatToShortestDouble(float value) =>
        double.Parse(value.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}
