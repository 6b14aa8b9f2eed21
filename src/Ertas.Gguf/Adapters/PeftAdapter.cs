using System.Globalization;
using System.Text.Json;
using Ertas.Core;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;

namespace Ertas.Gguf.Adapters;

/// <summary>
/// One adapted projection: the HF module name (<c>model.layers.0.self_attn.q_proj</c>), A (r, in) and B (out, r) as
/// stored, and their keys in <c>adapter_model.safetensors</c>.
/// </summary>
public sealed record LoraModule(string Name, string KeyA, string KeyB, long[] ShapeA, long[] ShapeB)
{
    /// <summary>The base tensor this module changes: <c>model.layers.0.self_attn.q_proj.weight</c>.</summary>
    public string BaseTensorName => Name + ".weight";

    public long Rank => ShapeA[0];
    public long InFeatures => ShapeA[1];
    public long OutFeatures => ShapeB[0];
}

/// <summary>
/// What <c>ertas train</c> records beside the PEFT files (<c>ertas_adapter.json</c>): how the base looked while training.
/// <see cref="QuantizeBase"/> true means the adapter learned against the NF4 round trip of the base (QLoRA), so a
/// faithful merge adds it to that round trip; <see cref="Compute"/> is "f32" or "bf16".
/// </summary>
public sealed record AdapterSidecar(int Format, bool? QuantizeBase, string? Compute);

/// <summary>
/// A PEFT LoRA adapter folder (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>, optionally
/// <c>ertas_adapter.json</c>), validated on open: every tensor is a lora_A/lora_B pair under PEFT's
/// <c>base_model.model.</c> prefix, ranks agree with <c>r</c>, and features the exporters cannot represent (DoRA,
/// per-module rank or alpha patterns, trained biases, saved modules) are refused rather than silently dropped.
/// Factors are read one at a time as float32 from the memory-mapped file.
/// </summary>
public sealed class PeftAdapter : IDisposable
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";
    public const string SidecarFileName = "ertas_adapter.json";

    /// <summary>PEFT wraps the HF model as <c>PeftModel.base_model.model</c>; saved keys carry that path.</summary>
    public const string KeyPrefix = "base_model.model.";

    private const string SuffixA = ".lora_A.weight";
    private const string SuffixB = ".lora_B.weight";

    private readonly SafeTensorsFile _weights;
    private readonly Dictionary<string, LoraModule> _byBaseTensor;

    private PeftAdapter(string folder, int rank, double alpha, bool useRsLora, IReadOnlyList<string> targetModules,
        string? baseModel, AdapterSidecar? sidecar, SafeTensorsFile weights, IReadOnlyList<LoraModule> modules)
    {
        (Folder, Rank, Alpha, UsesRsLora, TargetModules, BaseModelNameOrPath, Sidecar, _weights, Modules) =
            (folder, rank, alpha, useRsLora, targetModules, baseModel, sidecar, weights, modules);
        _byBaseTensor = modules.ToDictionary(m => m.BaseTensorName, StringComparer.Ordinal);
    }

    public string Folder { get; }

    /// <summary><c>r</c>.</summary>
    public int Rank { get; }

    /// <summary><c>lora_alpha</c>.</summary>
    public double Alpha { get; }

    /// <summary><c>use_rslora</c>: the update is scaled by alpha / sqrt(r) instead of alpha / r.</summary>
    public bool UsesRsLora { get; }

    /// <summary>W' = W + Scaling * B A.</summary>
    public double Scaling => UsesRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    public IReadOnlyList<string> TargetModules { get; }
    public string? BaseModelNameOrPath { get; }

    /// <summary><c>ertas_adapter.json</c>, or null when the folder has none (an adapter from another trainer).</summary>
    public AdapterSidecar? Sidecar { get; }

    /// <summary>Adapted modules sorted by layer, then by name.</summary>
    public IReadOnlyList<LoraModule> Modules { get; }

    /// <summary>The module that changes base tensor <paramref name="baseTensorName"/>, or null.</summary>
    public LoraModule? ForBaseTensor(string baseTensorName) =>
        _byBaseTensor.TryGetValue(baseTensorName, out var module) ? module : null;

    public static PeftAdapter Open(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(full))
            throw new ErtasException(ErrorCode.AdapterMissing, $"adapter folder '{full}' does not exist", full);
        var configPath = Path.Combine(full, ConfigFileName);
        var weightsPath = Path.Combine(full, WeightsFileName);
        foreach (var path in (ReadOnlySpan<string>)[configPath, weightsPath])
            if (!File.Exists(path))
                throw new ErtasException(ErrorCode.AdapterMissing,
                    $"adapter folder '{full}' has no {Path.GetFileName(path)}; a PEFT LoRA adapter needs {ConfigFileName} and {WeightsFileName}", path);

        var (rank, alpha, useRsLora, targets, baseModel) = ReadConfig(configPath);
        var sidecarPath = Path.Combine(full, SidecarFileName);
        var sidecar = File.Exists(sidecarPath) ? ReadSidecar(sidecarPath) : null;

        SafeTensorsFile weights;
        try
        {
            weights = SafeTensorsFile.Open(weightsPath);
        }
        catch (ErtasException e) when (e.Code is not ErrorCode.AdapterMissing)
        {
            throw new ErtasException(ErrorCode.AdapterInvalid, $"{WeightsFileName} is not a valid safetensors file: {e.Message}", weightsPath);
        }
        try
        {
            var modules = ReadModules(weights, rank, weightsPath);
            return new PeftAdapter(full, rank, alpha, useRsLora, targets, baseModel, sidecar, weights, modules);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>A as float32 (r * in values, row-major); throws <see cref="ErrorCode.AdapterInvalid"/> on NaN or infinity.</summary>
    public void ReadA(LoraModule module, Span<float> destination) => ReadFinite(module.KeyA, destination);

    /// <summary>B as float32 (out * r values, row-major, HF row order); throws on NaN or infinity.</summary>
    public void ReadB(LoraModule module, Span<float> destination) => ReadFinite(module.KeyB, destination);

    /// <summary>
    /// Checks that this adapter was made for a base of <paramref name="config"/>'s shapes: every module's base tensor
    /// exists, A's columns equal its input features and B's rows its output features. Throws
    /// <see cref="ErrorCode.AdapterBaseMismatch"/> naming the first disagreement.
    /// </summary>
    public void VerifyBase(MistralConfig config, string? baseFolder = null)
    {
        var expected = config.ExpectedTensors().ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);
        var where = baseFolder is null ? "the base model" : $"the base model in '{baseFolder}'";
        foreach (var module in Modules)
        {
            if (!expected.TryGetValue(module.BaseTensorName, out var shape) || shape.Length != 2)
                throw new ErtasException(ErrorCode.AdapterBaseMismatch,
                    $"the adapter changes '{module.BaseTensorName}', which {where} does not have ({config.NumHiddenLayers} layers); " +
                    "was it trained on another base?", Path.Combine(Folder, WeightsFileName));
            if (module.OutFeatures != shape[0] || module.InFeatures != shape[1])
                throw new ErtasException(ErrorCode.AdapterBaseMismatch,
                    $"the adapter for '{module.BaseTensorName}' has lora_A {Format(module.ShapeA)} and lora_B {Format(module.ShapeB)}, " +
                    $"which make a [{module.OutFeatures}, {module.InFeatures}] update, but {where} has {Format(shape)}; was it trained on another base?",
                    Path.Combine(Folder, WeightsFileName));
        }
    }

    public void Dispose() => _weights.Dispose();

    private void ReadFinite(string key, Span<float> destination)
    {
        _weights.ReadFloat32(key, destination);
        // A diverged run saves NaN factors; merged into a GGUF they would only show up as garbage output much later.
        foreach (var value in destination)
            if (!float.IsFinite(value))
                throw new ErtasException(ErrorCode.AdapterInvalid, $"tensor '{key}' holds NaN or infinity; the training run diverged",
                    Path.Combine(Folder, WeightsFileName));
    }

    private static (int Rank, double Alpha, bool UseRsLora, IReadOnlyList<string> Targets, string? BaseModel) ReadConfig(string path)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.AdapterInvalid, $"{ConfigFileName} is not valid JSON: {e.Message}", path,
                checked((int)((e.LineNumber ?? -1) + 1)), checked((int)((e.BytePositionInLine ?? -1) + 1)));
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw Invalid(path, $"{ConfigFileName} must hold a JSON object");
            if (root.TryGetProperty("peft_type", out var peftType) && peftType.ValueKind == JsonValueKind.String && peftType.GetString() != "LORA")
                throw Invalid(path, $"peft_type is '{peftType.GetString()}'; only LORA adapters can be merged or exported");
            var rank = root.TryGetProperty("r", out var r) && r.ValueKind == JsonValueKind.Number && r.TryGetInt32(out var rv) && rv >= 1
                ? rv
                : throw Invalid(path, $"{ConfigFileName} needs \"r\", a positive integer (the LoRA rank)");
            var alpha = root.TryGetProperty("lora_alpha", out var a) && a.ValueKind == JsonValueKind.Number && a.GetDouble() is var av && av > 0 && double.IsFinite(av)
                ? av
                : throw Invalid(path, $"{ConfigFileName} needs \"lora_alpha\", a positive number");
            if (IsTrue(root, "use_dora"))
                throw Invalid(path, "use_dora is true: DoRA adapters cannot be merged or exported (llama.cpp has no DoRA)");
            if (IsTrue(root, "fan_in_fan_out"))
                throw Invalid(path, "fan_in_fan_out is true: only nn.Linear layouts (Mistral's) are supported");
            if (root.TryGetProperty("bias", out var bias) && bias.ValueKind == JsonValueKind.String && bias.GetString() != "none")
                throw Invalid(path, $"bias is '{bias.GetString()}': trained biases are not supported (Mistral has no biases)");
            foreach (var pattern in (ReadOnlySpan<string>)["rank_pattern", "alpha_pattern"])
                if (root.TryGetProperty(pattern, out var p) && p.ValueKind == JsonValueKind.Object && p.EnumerateObject().Any())
                    throw Invalid(path, $"{pattern} is set: per-module ranks or alphas are not supported (one r and lora_alpha for every module)");
            if (root.TryGetProperty("modules_to_save", out var saved) && saved.ValueKind == JsonValueKind.Array && saved.GetArrayLength() > 0)
                throw Invalid(path, "modules_to_save is set: fully trained modules are not supported, only LoRA factors");
            IReadOnlyList<string> targets = root.TryGetProperty("target_modules", out var t) switch
            {
                true when t.ValueKind == JsonValueKind.Array => [.. t.EnumerateArray().Select(e => e.GetString() ?? "")],
                true when t.ValueKind == JsonValueKind.String => [t.GetString()!],
                _ => [],
            };
            var baseModel = root.TryGetProperty("base_model_name_or_path", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString() : null;
            return (rank, alpha, IsTrue(root, "use_rslora"), targets, baseModel);
        }
    }

    private static AdapterSidecar ReadSidecar(string path)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw Invalid(path, $"{SidecarFileName} must hold a JSON object");
            var format = root.TryGetProperty("format", out var f) && f.ValueKind == JsonValueKind.Number && f.TryGetInt32(out var fv)
                ? fv
                : throw Invalid(path, $"{SidecarFileName} needs \"format\" (an integer)");
            if (format != 1)
                throw Invalid(path, $"{SidecarFileName} has format {format}; this version of ertas reads format 1");
            bool? quantizeBase = root.TryGetProperty("quantize_base", out var q) switch
            {
                true when q.ValueKind is JsonValueKind.True or JsonValueKind.False => q.GetBoolean(),
                true => throw Invalid(path, $"{SidecarFileName}: \"quantize_base\" must be true or false"),
                false => null,
            };
            string? compute = root.TryGetProperty("compute", out var c) switch
            {
                true when c.ValueKind == JsonValueKind.String && c.GetString() is "f32" or "bf16" => c.GetString(),
                true => throw Invalid(path, $"{SidecarFileName}: \"compute\" must be \"f32\" or \"bf16\""),
                false => null,
            };
            return new AdapterSidecar(format, quantizeBase, compute);
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.AdapterInvalid, $"{SidecarFileName} is not valid JSON: {e.Message}", path);
        }
    }

    private static List<LoraModule> ReadModules(SafeTensorsFile weights, int rank, string path)
    {
        var factors = new Dictionary<string, (SafeTensorInfo? A, SafeTensorInfo? B)>(StringComparer.Ordinal);
        foreach (var key in weights.TensorNames)
        {
            var isA = key.EndsWith(SuffixA, StringComparison.Ordinal);
            var isB = key.EndsWith(SuffixB, StringComparison.Ordinal);
            if (!key.StartsWith(KeyPrefix, StringComparison.Ordinal) || !(isA || isB))
                throw Invalid(path, $"tensor '{key}' is not a PEFT LoRA factor ('{KeyPrefix}<module>{SuffixA}' or '...{SuffixB}'); " +
                    "only plain LoRA on linear layers is supported");
            var module = key[KeyPrefix.Length..^SuffixA.Length];
            var info = weights.GetInfo(key);
            factors.TryGetValue(module, out var pair);
            factors[module] = isA ? pair with { A = info } : pair with { B = info };
        }
        if (factors.Count == 0)
            throw Invalid(path, $"{WeightsFileName} holds no LoRA factors");

        var modules = new List<LoraModule>(factors.Count);
        foreach (var (name, (a, b)) in factors)
        {
            if (a is null || b is null)
                throw Invalid(path, $"module '{name}' has lora_{(a is null ? "B" : "A")} but no lora_{(a is null ? "A" : "B")}");
            if (a.Shape.Length != 2 || b.Shape.Length != 2)
                throw Invalid(path, $"module '{name}': lora_A {a.ShapeText} and lora_B {b.ShapeText} must both be 2-D");
            if (a.Shape[0] != rank || b.Shape[1] != rank)
                throw Invalid(path, $"module '{name}': lora_A {a.ShapeText} (r, in) and lora_B {b.ShapeText} (out, r) disagree with r = {rank} in {ConfigFileName}");
            if (a.Shape[1] == 0 || b.Shape[0] == 0)
                throw Invalid(path, $"module '{name}' has an empty factor");
            modules.Add(new LoraModule(name, a.Name, b.Name, a.Shape, b.Shape));
        }
        modules.Sort(CompareModules);
        return modules;
    }

    /// <summary>Layer number first (so layer 10 follows layer 9), then name.</summary>
    private static int CompareModules(LoraModule x, LoraModule y)
    {
        var byLayer = LayerOf(x.Name).CompareTo(LayerOf(y.Name));
        return byLayer != 0 ? byLayer : string.CompareOrdinal(x.Name, y.Name);
    }

    private static int LayerOf(string name)
    {
        const string prefix = "model.layers.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return int.MaxValue;
        var rest = name.AsSpan(prefix.Length);
        var dot = rest.IndexOf('.');
        return dot > 0 && int.TryParse(rest[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out var layer) ? layer : int.MaxValue;
    }

    private static bool IsTrue(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.True;

    private static ErtasException Invalid(string path, string message) => new(ErrorCode.AdapterInvalid, message, path);

    private static string Format(IReadOnlyList<long> shape) => $"[{string.Join(", ", shape)}]";
}
