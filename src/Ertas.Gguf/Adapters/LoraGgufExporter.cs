using Ertas.Core;
using Ertas.Mistral;

namespace Ertas.Gguf.Adapters;

public sealed record LoraGgufOptions
{
    /// <summary><c>general.name</c>.</summary>
    public string Name { get; init; } = "lora";

    /// <summary><c>general.version</c>, when set.</summary>
    public string? Version { get; init; }

    public IProgressSink Progress { get; init; } = NullProgressSink.Instance;
}

/// <summary>
/// A PEFT LoRA adapter to the GGUF adapter file llama.cpp loads with <c>--lora</c> (and Ollama with <c>ADAPTER</c>),
/// the layout of convert_lora_to_gguf.py and the checks of llama.cpp's <c>llama_adapter_lora_init</c>:
/// <list type="bullet">
/// <item><c>general.type = "adapter"</c>, <c>adapter.type = "lora"</c>, <c>general.architecture</c> equal to the
/// base's ("llama" for Mistral), <c>adapter.lora.alpha</c> as f32. llama.cpp scales by alpha / rank with the rank read
/// from the tensors, so an rsLoRA adapter is written with the alpha that gives its alpha / sqrt(r).</item>
/// <item>Per module <c>&lt;base GGUF name&gt;.lora_a</c> and <c>.lora_b</c>, F32, laid out as PEFT stores them: A is
/// row-major (r, in), ggml ne = [in, r]; B is (out, r), ne = [r, out]. The loader requires a.ne[0] = base.ne[0] (in),
/// b.ne[1] = base.ne[1] (out) and a.ne[1] = b.ne[0] (r).</item>
/// <item>Q and K rows are in llama.cpp's interleaved RoPE order in the base GGUF, so B's rows (the update's output
/// features) get the same permutation; A's columns are input features and stay.</item>
/// </list>
/// </summary>
public static class LoraGgufExporter
{
    public const string AdapterTypeLora = "lora";
    public const string SuffixA = ".lora_a";
    public const string SuffixB = ".lora_b";

    /// <summary>Checks <paramref name="adapter"/> against <paramref name="baseConfig"/> (<see cref="ErrorCode.AdapterBaseMismatch"/>)
    /// and writes <paramref name="outPath"/> atomically.</summary>
    public static void Export(PeftAdapter adapter, MistralConfig baseConfig, string outPath, LoraGgufOptions? options = null,
        CancellationToken ct = default)
    {
        options ??= new LoraGgufOptions();
        baseConfig.Validate();
        adapter.VerifyBase(baseConfig);
        AtomicFile.Write(outPath, stream => Export(adapter, baseConfig, stream, options, ct));
    }

    public static void Export(PeftAdapter adapter, MistralConfig baseConfig, Stream output, LoraGgufOptions? options = null,
        CancellationToken ct = default)
    {
        options ??= new LoraGgufOptions();
        adapter.VerifyBase(baseConfig);
        var names = adapter.Modules.Select(m => HfTensorNames.ToGguf(m.BaseTensorName)
            ?? throw new ErtasException(ErrorCode.AdapterBaseMismatch,
                $"the adapter changes '{m.BaseTensorName}', which has no llama.cpp tensor name", adapter.Folder)).ToList();
        var writer = Declare(output, options, adapter.Scaling * adapter.Rank,
            adapter.Modules.Select((m, i) => (names[i], m.ShapeA, m.ShapeB)));
        writer.WriteMetadata();
        writer.WriteTensorInfos();

        var largest = adapter.Modules.Max(m => Math.Max(m.Rank * m.InFeatures, m.OutFeatures * m.Rank));
        var values = new float[largest];
        var permuted = new float[largest];
        var meter = new ProgressMeter(adapter.Modules.Count);
        for (var i = 0; i < adapter.Modules.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var module = adapter.Modules[i];
            var a = values.AsSpan(0, (int)(module.Rank * module.InFeatures));
            adapter.ReadA(module, a);
            writer.WriteTensorData(names[i] + SuffixA, a);

            var b = values.AsSpan(0, (int)(module.OutFeatures * module.Rank));
            adapter.ReadB(module, b);
            if (RopeHeadCount(module.BaseTensorName, baseConfig) is { } heads)
            {
                var ordered = permuted.AsSpan(0, b.Length);
                RopePermutation.HfToGguf<float>(b, ordered, (int)module.OutFeatures, (int)module.Rank, heads);
                b = ordered;
            }
            writer.WriteTensorData(names[i] + SuffixB, b);
            options.Progress.Advance($"[{i + 1}/{adapter.Modules.Count}] {names[i]} r {module.Rank} {meter.Describe(i + 1, "modules")}", i + 1, adapter.Modules.Count);
        }
        writer.Finish();
    }

    /// <summary>
    /// The exact size of the adapter GGUF <see cref="Export(PeftAdapter, MistralConfig, Stream, LoraGgufOptions?, CancellationToken)"/>
    /// writes for an adapter of rank <paramref name="rank"/> on <paramref name="targetModules"/> (q_proj, ...) of every
    /// layer of <paramref name="baseConfig"/>, before any adapter exists: the same header and tensor infos, declared on
    /// a writer that writes nothing.
    /// </summary>
    public static long PlannedFileSize(MistralConfig baseConfig, int rank, double alpha, IReadOnlyCollection<string> targetModules, LoraGgufOptions? options = null)
    {
        var modules = TargetTensors(baseConfig, targetModules)
            .Select(t => (HfTensorNames.ToGguf(t.Name)!, new long[] { rank, t.Shape[1] }, new long[] { t.Shape[0], rank }));
        return Declare(Stream.Null, options ?? new LoraGgufOptions(), alpha, modules).PlannedFileSize();
    }

    /// <summary>The base weights (HF name, shape [out, in]) a LoRA on <paramref name="targetModules"/> (q_proj, ...) adapts.</summary>
    public static IEnumerable<(string Name, long[] Shape)> TargetTensors(MistralConfig config, IReadOnlyCollection<string> targetModules) =>
        config.ExpectedTensors().Where(t => t.Shape.Length == 2 && targetModules.Contains(ModuleName(t.Name), StringComparer.Ordinal));

    /// <summary>"q_proj" of "model.layers.0.self_attn.q_proj.weight".</summary>
    private static string ModuleName(string hfTensorName)
    {
        var parts = hfTensorName.Split('.');
        return parts.Length >= 2 ? parts[^2] : hfTensorName;
    }

    /// <summary>A writer with the adapter's key/values and, per module, its F32 lora_a (r, in) and lora_b (out, r) declared.</summary>
    private static GgufWriter Declare(Stream output, LoraGgufOptions options, double alpha, IEnumerable<(string GgufName, long[] ShapeA, long[] ShapeB)> modules)
    {
        var writer = new GgufWriter(output);
        writer.AddString(Keys.General.Architecture, GgufConstants.LlamaArchitecture);
        writer.AddString(Keys.General.Type, Keys.GeneralTypes.Adapter);
        writer.AddString(Keys.General.Name, options.Name);
        if (options.Version is { } version)
            writer.AddString(Keys.General.Version, version);
        writer.AddString(Keys.Adapter.Type, AdapterTypeLora);
        writer.AddFloat32(Keys.Adapter.LoraAlpha, (float)alpha);
        foreach (var (name, shapeA, shapeB) in modules)
        {
            writer.AddTensorInfo(name + SuffixA, GgmlType.F32, shapeA);
            writer.AddTensorInfo(name + SuffixB, GgmlType.F32, shapeB);
        }
        return writer;
    }

    /// <summary>Heads whose rows RoPE rotates: Q's attention heads, K's KV heads; null for other projections.</summary>
    public static int? RopeHeadCount(string hfName, MistralConfig config) =>
        hfName.EndsWith(".self_attn.q_proj.weight", StringComparison.Ordinal) ? config.NumAttentionHeads
        : hfName.EndsWith(".self_attn.k_proj.weight", StringComparison.Ordinal) ? config.NumKeyValueHeads
        : null;
}
