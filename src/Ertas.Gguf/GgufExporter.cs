using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.ExceptionServices;
using Ertas.Core;
using Ertas.Gguf.Mixes;
using Ertas.Mistral;

namespace Ertas.Gguf;

public sealed record GgufExportOptions
{
    /// <summary><c>general.name</c>; convert_hf_to_gguf.py uses the checkpoint folder's name.</summary>
    public string ModelName { get; init; } = "mistral";

    /// <summary><c>general.version</c>, written only when given.</summary>
    public string? Version { get; init; }

    /// <summary><c>general.description</c>, <c>general.license</c> (an SPDX id such as apache-2.0) and the model it was
    /// fine-tuned from (<c>general.base_model.0.name</c>), each written only when given, where gguf-py writes them.</summary>
    public string? Description { get; init; }
    public string? License { get; init; }
    public string? BaseModelName { get; init; }

    /// <summary><c>llama.context_length</c>; null means the config's max_position_embeddings.</summary>
    public int? ContextLength { get; init; }

    /// <summary>Tensor data alignment; anything but the default 32 is written as <c>general.alignment</c>.</summary>
    public uint Alignment { get; init; } = GgufConstants.DefaultAlignment;

    public IProgressSink Progress { get; init; } = NullProgressSink.Instance;

    /// <summary>Threads quantizing the rows of one tensor (quantized mixes only); the bytes do not depend on it.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
}

/// <summary>
/// Hugging Face Mistral/Llama checkpoint to a llama.cpp GGUF (architecture "llama"), writing the metadata
/// convert_hf_to_gguf.py's <c>LlamaModel</c> writes. Streams: one tensor is read as float32, converted and written
/// before the next is read, so memory is bounded by the largest tensor (token_embd), not the model. Writes go
/// through a small write-behind buffer on a second thread, so reading and converting the next tensor overlaps the
/// kernel throttling this one's writes to the disk's speed (7B f16: 14.5 GB written, the bulk of the time).
/// </summary>
public static class GgufExporter
{
    public static IReadOnlyList<GgmlType> SupportedTypes { get; } = [GgmlType.F32, GgmlType.F16, GgmlType.BF16];

    /// <summary>Writes <paramref name="outPath"/> atomically: on failure or cancellation no file is left.</summary>
    public static void Export(MistralConfig config, ITensorSource source, GgufVocabulary vocab, string outPath, GgmlType type,
        GgufExportOptions? options = null, CancellationToken ct = default) =>
        Export(config, source, vocab, outPath, MixFor(type), options, ct);

    public static void Export(MistralConfig config, ITensorSource source, GgufVocabulary vocab, Stream output, GgmlType type,
        GgufExportOptions? options = null, CancellationToken ct = default) =>
        Export(config, source, vocab, output, MixFor(type), options, ct);

    /// <summary>
    /// Exports with a llama.cpp file-type mix, quantizing straight from the checkpoint: the result is byte for byte
    /// what quantizing our F32 export of the same checkpoint gives (the quantizer sees the same float32 values).
    /// Written atomically: on failure or cancellation no file is left.
    /// </summary>
    public static void Export(MistralConfig config, ITensorSource source, GgufVocabulary vocab, string outPath, QuantizationMix mix,
        GgufExportOptions? options = null, CancellationToken ct = default)
    {
        options ??= new GgufExportOptions();
        options.Progress.Report($"exporting GGUF ({mix}) to {outPath}");
        AtomicFile.Write(outPath, stream => Export(config, source, vocab, stream, mix, options, ct));
    }

    public static void Export(MistralConfig config, ITensorSource source, GgufVocabulary vocab, Stream output, QuantizationMix mix,
        GgufExportOptions? options = null, CancellationToken ct = default)
    {
        options ??= new GgufExportOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Threads, 1);
        config.Validate();
        vocab.Validate();
        vocab = vocab.PadTo(config.VocabSize);
        CheckSource(source, config.ExpectedTensors().ToList());

        using var writeBehind = new WriteBehindStream(output);
        var (writer, tensors, plan) = Declare(writeBehind, config, vocab, mix, options);
        GgmlType TypeOf(string hfName) => plan[HfTensorNames.ToGguf(hfName)!];
        writer.WriteMetadata();
        writer.WriteTensorInfos();

        var maxElements = tensors.Max(t => Elements(t.Shape));
        var floats = new float[maxElements];
        var bytes = new byte[tensors.Max(t => TypeOf(t.Name).Info().ByteSize(Elements(t.Shape)))];
        // Block quantizers need the permuted Q/K rows side by side; the float types convert row by row in place.
        float[]? permuted = null;
        var meter = new ProgressMeter(writer.TensorDataBytes);
        long done = 0;
        for (var i = 0; i < tensors.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var (hfName, shape) = tensors[i];
            var ggufName = HfTensorNames.ToGguf(hfName)!;
            var tensorType = TypeOf(hfName);
            var elements = (int)Elements(shape);
            var values = floats.AsSpan(0, elements);
            source.ReadFloat32(hfName, values);
            var byteCount = (int)tensorType.Info().ByteSize(elements);
            var encoded = bytes.AsSpan(0, byteCount);
            var headCount = RopeHeadCount(hfName, config);
            var rows = (int)shape[0];
            var cols = (int)shape[^1];
            if (headCount is { } heads)
            {
                var headDim = RopePermutation.HeadDim(rows, heads);
                if (tensorType.Info().IsQuantized)
                {
                    permuted ??= new float[tensors.Where(t => RopeHeadCount(t.Name, config) is not null).Max(t => Elements(t.Shape))];
                    var ordered = permuted.AsSpan(0, elements);
                    for (var row = 0; row < rows; row++)
                        values.Slice(RopePermutation.HfRowForGgufRow(row, headDim) * cols, cols).CopyTo(ordered.Slice(row * cols, cols));
                    TensorEncoder.Encode(tensorType, ordered, encoded, cols, options.Threads, ct);
                }
                else
                {
                    // Convert row by row straight into the permuted position: no second float buffer.
                    var rowBytes = byteCount / rows;
                    for (var row = 0; row < rows; row++)
                    {
                        var from = RopePermutation.HfRowForGgufRow(row, headDim);
                        TensorEncoder.Encode(tensorType, values.Slice(from * cols, cols), encoded.Slice(row * rowBytes, rowBytes), cols, options.Threads, ct);
                    }
                }
            }
            else
            {
                TensorEncoder.Encode(tensorType, values, encoded, cols, options.Threads, ct);
            }
            writer.WriteTensorData(ggufName, encoded);
            done += GgufWriter.AlignUp(byteCount, writer.Alignment);
            options.Progress.Advance(
                $"[{i + 1}/{tensors.Count}] {ggufName} {tensorType} [{string.Join(", ", shape)}] {meter.Describe(Math.Min(done, meter.Total))}",
                i + 1, tensors.Count);
        }
        writer.Finish();
        options.Progress.Report($"wrote {tensors.Count} tensors, {done / 1e6:F1} MB of tensor data in {meter.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>
    /// The exact size in bytes of the file <see cref="Export(MistralConfig, ITensorSource, GgufVocabulary, Stream, QuantizationMix, GgufExportOptions?, CancellationToken)"/>
    /// writes for these arguments (and so of <c>ertas quantize</c>'s output from our F16/F32 export, which keeps the
    /// metadata and sizes): the same key/values and tensor infos are declared on a writer that writes nothing.
    /// </summary>
    public static long PlannedFileSize(MistralConfig config, GgufVocabulary vocab, QuantizationMix mix, GgufExportOptions? options = null)
    {
        config.Validate();
        vocab.Validate();
        return Declare(Stream.Null, config, vocab.PadTo(config.VocabSize), mix, options ?? new GgufExportOptions()).Writer.PlannedFileSize();
    }

    /// <summary>A writer over <paramref name="output"/> with every key/value and tensor info of the export declared
    /// (nothing written yet), the tensors in file order, and the type llama-quantize would give each tensor of our F32
    /// export, by GGUF name.</summary>
    private static (GgufWriter Writer, List<(string Name, long[] Shape)> Tensors, IReadOnlyDictionary<string, GgmlType> Plan) Declare(
        Stream output, MistralConfig config, GgufVocabulary paddedVocab, QuantizationMix mix, GgufExportOptions options)
    {
        var tensors = config.ExpectedTensors().ToList();
        var plan = MixPlanner.Plan(mix, MixModel.FromConfig(config),
            tensors.Select(t => new MixTensor(HfTensorNames.ToGguf(t.Name)!, GgmlType.F32, t.Shape)).ToList());
        var writer = new GgufWriter(output);
        WriteLlamaMetadata(writer, config, paddedVocab, mix.FileType, options);
        foreach (var (hfName, shape) in tensors)
            writer.AddTensorInfo(HfTensorNames.ToGguf(hfName)!, plan[HfTensorNames.ToGguf(hfName)!], shape);
        return (writer, tensors, plan);
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
        if (options.Description is { } description)
            writer.AddString(Keys.General.Description, description);
        if (options.License is { } license)
            writer.AddString(Keys.General.License, license);
        if (options.BaseModelName is { } baseModel)
        {
            writer.AddUInt32(Keys.General.BaseModelCount, 1);
            writer.AddString(Keys.General.BaseModelName(0), baseModel);
        }

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
        writer.AddBool(Keys.Tokenizer.AddSpacePrefix, vocab.AddSpacePrefix);
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

    /// <summary>The F32, F16 and BF16 mixes; quantized exports name a <see cref="QuantizationMix"/> (Q4_K_M, ...).</summary>
    public static QuantizationMix MixFor(GgmlType type) => type switch
    {
        GgmlType.F32 => QuantizationMixes.F32,
        GgmlType.F16 => QuantizationMixes.F16,
        GgmlType.BF16 => QuantizationMixes.BF16,
        _ => throw new ErtasException(ErrorCode.GgufUnsupportedType,
            $"a GGUF export of type {type} is not a llama.cpp mix; export with a mix instead ({QuantizationMixes.ValidNames})"),
    };

    /// <summary>Norms and other 1-D tensors stay F32 (llama.cpp expects it); weights take the requested type.</summary>
    public static GgmlType TensorType(string name, int dimensions, GgmlType requested) =>
        dimensions <= 1 || name.EndsWith("norm.weight", StringComparison.Ordinal) ? GgmlType.F32 : requested;

    /// <summary>Head count for Q/K projections (which need the RoPE row permutation); null for other tensors.</summary>
    internal static int? RopeHeadCount(string hfName, MistralConfig config) =>
        hfName.EndsWith(".self_attn.q_proj.weight", StringComparison.Ordinal) ? config.NumAttentionHeads
        : hfName.EndsWith(".self_attn.k_proj.weight", StringComparison.Ordinal) ? config.NumKeyValueHeads
        : null;

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

/// <summary>
/// Hands writes to one background thread through a few fixed buffers (bounded memory, order kept, so the output is
/// byte-for-byte what direct writes give). Flush waits until everything reached the inner stream and flushed it;
/// a failed background write surfaces on the next Write or Flush. Dispose does not dispose the inner stream.
/// </summary>
internal sealed class WriteBehindStream : Stream
{
    private const int ChunkBytes = 8 << 20;
    private const int ChunkCount = 4;

    private readonly Stream _inner;
    private readonly BlockingCollection<byte[]> _free = new();
    /// <summary>A null buffer is a flush request: the writer flushes the inner stream and sets the event.</summary>
    private readonly BlockingCollection<(byte[]? Buffer, int Length, ManualResetEventSlim? Flushed)> _queue = new(ChunkCount + 1);
    private readonly CancellationTokenSource _failed = new();
    private readonly Thread _thread;
    private ExceptionDispatchInfo? _error;
    private byte[]? _current;
    private int _used;
    private long _written;
    private bool _disposed;

    public WriteBehindStream(Stream inner)
    {
        _inner = inner;
        for (var i = 0; i < ChunkCount; i++)
            _free.Add(new byte[ChunkBytes]);
        _thread = new Thread(WriteLoop) { IsBackground = true, Name = "GGUF write-behind" };
        _thread.Start();
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => !_disposed;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _written; set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> data)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        while (data.Length > 0)
        {
            _current ??= Take();
            var n = Math.Min(ChunkBytes - _used, data.Length);
            data[..n].CopyTo(_current.AsSpan(_used));
            _used += n;
            _written += n;
            data = data[n..];
            if (_used == ChunkBytes)
                Enqueue();
        }
    }

    public override void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_used > 0)
            Enqueue();
        using var flushed = new ManualResetEventSlim();
        Add((null, 0, flushed));
        try
        {
            flushed.Wait(_failed.Token);
        }
        catch (OperationCanceledException)
        {
            ThrowFailure();
        }
        ThrowFailure();
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_disposed)
        {
            _disposed = true;
            // Data not flushed by now belongs to a failed or cancelled export, whose file is deleted anyway.
            _failed.Cancel();
            _queue.CompleteAdding();
            _thread.Join();
            _queue.Dispose();
            _free.Dispose();
            _failed.Dispose();
        }
        base.Dispose(disposing);
    }

    private void Enqueue()
    {
        Add((_current, _used, null));
        _current = null;
        _used = 0;
    }

    private byte[] Take()
    {
        try
        {
            return _free.Take(_failed.Token);
        }
        catch (OperationCanceledException)
        {
            ThrowFailure();
            throw;
        }
    }

    private void Add((byte[]?, int, ManualResetEventSlim?) item)
    {
        try
        {
            _queue.Add(item, _failed.Token);
        }
        catch (OperationCanceledException)
        {
            ThrowFailure();
            throw;
        }
    }

    private void ThrowFailure() => _error?.Throw();

    private void WriteLoop()
    {
        try
        {
            foreach (var (buffer, length, flushed) in _queue.GetConsumingEnumerable(_failed.Token))
            {
                if (buffer is null)
                {
                    _inner.Flush();
                    flushed!.Set();
                    continue;
                }
                _inner.Write(buffer, 0, length);
                _free.Add(buffer);
            }
        }
        catch (OperationCanceledException) when (_failed.IsCancellationRequested)
        {
            // Disposed before everything was written: nothing left to do.
        }
        catch (Exception e)
        {
            _error = ExceptionDispatchInfo.Capture(e);
            _failed.Cancel();
        }
    }
}
