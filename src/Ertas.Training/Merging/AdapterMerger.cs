using System.Diagnostics;
using System.Globalization;
using Ertas.Core;
using Ertas.Gguf;
using Ertas.Gguf.Adapters;
using Ertas.Gguf.Mixes;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Tokenization;

namespace Ertas.Training.Merging;

public sealed record MergeOptions
{
    /// <summary>Which base the update is added to; null decides from <c>ertas_adapter.json</c> (see <see cref="AdapterMerger.ResolveBase"/>).</summary>
    public BaseWeights? BaseWeights { get; init; }

    public IProgressSink Progress { get; init; } = NullProgressSink.Instance;
}

/// <summary>How a merge was done and what it wrote.</summary>
public sealed record MergeResult(BaseWeights BaseWeights, ComputePrecision Compute, string BaseWeightsReason, int MergedModules,
    long OutputBytes, TimeSpan Elapsed);

/// <summary>
/// Folds a PEFT LoRA adapter into its base checkpoint and writes the result as a GGUF file (any llama.cpp type or mix)
/// or as a Hugging Face folder, streaming through <see cref="MergedTensorSource"/>.
/// </summary>
public static class AdapterMerger
{
    /// <summary>Files copied from the base folder into a merged HF folder when present, so it loads as the base did.</summary>
    public static readonly IReadOnlyList<string> TokenizerFiles =
        [CheckpointLayout.TokenizerFileName, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

    /// <summary>
    /// The base weights to merge into: <paramref name="requested"/> when given; else the sidecar's <c>quantize_base</c>;
    /// else NF4, because an adapter without the sidecar most likely comes from a QLoRA run, and adding a QLoRA update to
    /// the exact weights changes the model less than the reverse mistake would hide. The compute type comes from the
    /// sidecar (default f32).
    /// </summary>
    public static (BaseWeights Weights, ComputePrecision Compute, string Reason) ResolveBase(PeftAdapter adapter, BaseWeights? requested)
    {
        var compute = adapter.Sidecar?.Compute == "bf16" ? ComputePrecision.BF16 : ComputePrecision.F32;
        if (requested is { } weights)
            return (weights, compute, "requested");
        if (adapter.Sidecar?.QuantizeBase is { } quantized)
            return (quantized ? BaseWeights.Nf4 : BaseWeights.Exact, compute, $"{PeftAdapter.SidecarFileName} says quantize_base {(quantized ? "true" : "false")}");
        return (BaseWeights.Nf4, compute, $"no {PeftAdapter.SidecarFileName}: assuming a QLoRA adapter (pass --base-weights exact for plain LoRA)");
    }

    /// <summary>Merges and exports a GGUF file of <paramref name="mix"/>, written atomically.</summary>
    public static MergeResult MergeToGguf(string baseFolder, string adapterFolder, string outPath, QuantizationMix mix, MergeOptions options,
        GgufExportOptions exportOptions, CancellationToken ct = default)
    {
        var clock = Stopwatch.StartNew();
        using var adapter = PeftAdapter.Open(adapterFolder);
        using var checkpoint = HfCheckpoint.Open(baseFolder);
        var vocab = TokenizerVocabularies.FromTokenizer(LoadTokenizer(checkpoint));
        var (weights, compute, reason) = ResolveBase(adapter, options.BaseWeights);
        var source = new MergedTensorSource(checkpoint, adapter, weights, compute);
        Report(options.Progress, adapter, source, reason);
        GgufExporter.Export(checkpoint.Config, source, vocab, outPath, mix, exportOptions with { Progress = options.Progress }, ct);
        return new MergeResult(weights, compute, reason, source.MergedReads, new FileInfo(outPath).Length, clock.Elapsed);
    }

    /// <summary>
    /// Merges into a Hugging Face folder: <c>config.json</c>, safetensors with each tensor in the base's dtype (sharded
    /// like the base when it was larger than <paramref name="maxShardBytes"/>), and the tokenizer files.
    /// </summary>
    public static MergeResult MergeToHf(string baseFolder, string adapterFolder, string outFolder, MergeOptions options,
        long maxShardBytes = 5_000_000_000, CancellationToken ct = default)
    {
        var clock = Stopwatch.StartNew();
        var fullOut = Path.GetFullPath(outFolder);
        if (string.Equals(fullOut.TrimEnd(Path.DirectorySeparatorChar), Path.GetFullPath(baseFolder).TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal))
            throw new ErtasException(ErrorCode.InvalidArgument, "the merged folder must not be the base folder (the base is read while the merge is written)", fullOut);
        using var adapter = PeftAdapter.Open(adapterFolder);
        using var checkpoint = HfCheckpoint.Open(baseFolder);
        var (weights, compute, reason) = ResolveBase(adapter, options.BaseWeights);
        var source = new MergedTensorSource(checkpoint, adapter, weights, compute);
        Report(options.Progress, adapter, source, reason);

        var tensors = checkpoint.Config.ExpectedTensors().ToList();
        var total = tensors.Sum(t => checkpoint.GetByteLength(t.Name));
        var meter = new ProgressMeter(total);
        long written = 0;
        var floats = new float[tensors.Max(t => t.Shape.Aggregate(1L, (x, y) => x * y))];
        var entries = tensors.Select((t, index) => new SafeTensorEntry(t.Name, checkpoint.GetDType(t.Name), t.Shape, bytes =>
        {
            ct.ThrowIfCancellationRequested();
            var dtype = checkpoint.GetDType(t.Name);
            var values = floats.AsSpan(0, bytes.Length / dtype.Size());
            source.ReadFloat32(t.Name, values);
            switch (dtype)
            {
                case DType.F32: FloatConversions.SingleToSingleBytes(values, bytes); break;
                case DType.F16: FloatConversions.SingleToHalfBytes(values, bytes); break;
                case DType.BF16: FloatConversions.SingleToBFloat16Bytes(values, bytes); break;
                default: throw new ErtasException(ErrorCode.UnsupportedDtype, $"cannot write {dtype}");
            }
            written += bytes.Length;
            options.Progress.Report(string.Create(CultureInfo.InvariantCulture,
                $"[{index + 1}/{tensors.Count}] {t.Name} {dtype}{(adapter.ForBaseTensor(t.Name) is null ? "" : " (merged)")} {meter.Describe(written)}"));
        }));
        Directory.CreateDirectory(fullOut);
        HfCheckpointWriter.Write(fullOut, checkpoint.Config, entries, Math.Max(maxShardBytes, 1));
        foreach (var file in TokenizerFiles)
        {
            var from = Path.Combine(checkpoint.Folder, file);
            if (File.Exists(from))
                AtomicFile.WriteAllBytes(Path.Combine(fullOut, file), File.ReadAllBytes(from));
        }
        var bytesOut = Directory.EnumerateFiles(fullOut).Sum(f => new FileInfo(f).Length);
        options.Progress.Report(string.Create(CultureInfo.InvariantCulture,
            $"merge: wrote {fullOut} ({bytesOut / 1e6:F1} MB) in {clock.Elapsed.TotalSeconds:F1} s"));
        return new MergeResult(weights, compute, reason, source.MergedReads, bytesOut, clock.Elapsed);
    }

    /// <summary>The base folder's tokenizer, which must agree with config.json's vocabulary size (GGUF carries it).</summary>
    public static MistralTokenizer LoadTokenizer(HfCheckpoint checkpoint)
    {
        var path = checkpoint.TokenizerPath
            ?? throw new ErtasException(ErrorCode.TokenizerMissing,
                "the base folder has no tokenizer.model; GGUF needs the vocabulary", Path.Combine(checkpoint.Folder, CheckpointLayout.TokenizerFileName));
        var tokenizer = MistralTokenizer.Load(path);
        if (tokenizer.VocabSize != checkpoint.Config.VocabSize)
            throw new ErtasException(ErrorCode.TokenizerVocabMismatch,
                $"tokenizer.model has {tokenizer.VocabSize} pieces but config.json says vocab_size {checkpoint.Config.VocabSize}", path);
        return tokenizer;
    }

    private static void Report(IProgressSink progress, PeftAdapter adapter, MergedTensorSource source, string reason) =>
        progress.Report(string.Create(CultureInfo.InvariantCulture,
            $"merge: {adapter.Modules.Count} LoRA modules, r {adapter.Rank}, alpha {adapter.Alpha}, scale {adapter.Scaling:0.####}; " +
            $"base weights {source.BaseWeights.ToString().ToLowerInvariant()} ({reason}), compute {source.Compute.ToString().ToLowerInvariant()}"));
}
