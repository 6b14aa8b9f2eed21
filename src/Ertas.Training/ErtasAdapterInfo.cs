using System.Text.Json;
using System.Text.Json.Serialization;
using Ertas.Core;

namespace Ertas.Training;

/// <summary>
/// <c>ertas_adapter.json</c>, written beside adapter_config.json in every adapter folder (final and checkpoints): what
/// PEFT's config has no field for but a consumer needs. <see cref="QuantizeBase"/> true means the adapter was trained
/// against the NF4-dequantized base, so a merge should add it to that base, not to the original weights.
/// adapter_config.json stays exactly PEFT's.
/// </summary>
public sealed record ErtasAdapterInfo
{
    public const string FileName = "ertas_adapter.json";
    public const int CurrentFormat = 1;

    [JsonPropertyName("format")] public int Format { get; init; } = CurrentFormat;
    [JsonPropertyName("quantize_base")] public bool QuantizeBase { get; init; }
    /// <summary>"f32" or "bf16": the compute type of the frozen base during training (the factors are float32).</summary>
    [JsonPropertyName("compute")] public string Compute { get; init; } = "f32";
    [JsonPropertyName("rank")] public int Rank { get; init; }
    [JsonPropertyName("alpha")] public double Alpha { get; init; }
    [JsonPropertyName("target_modules")] public IReadOnlyList<string> TargetModules { get; init; } = [];
    [JsonPropertyName("seed")] public ulong Seed { get; init; }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static ErtasAdapterInfo From(TrainingOptions options) => new()
    {
        QuantizeBase = options.QuantizeBase,
        Compute = options.Compute == ComputePrecision.BF16 ? "bf16" : "f32",
        Rank = options.Rank,
        Alpha = options.Alpha,
        TargetModules = [.. options.TargetModules.Order(StringComparer.Ordinal)],
        Seed = options.Seed,
    };

    public byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    public void Write(string adapterFolder)
    {
        var bytes = ToJsonBytes();
        AtomicFile.Write(Path.Combine(adapterFolder, FileName), stream => stream.Write(bytes));
    }

    /// <summary>The sidecar of <paramref name="adapterFolder"/>, or null when the folder has none (a PEFT adapter made
    /// elsewhere). A file that is not valid JSON of this shape is <see cref="ErrorCode.AdapterInvalid"/>.</summary>
    public static ErtasAdapterInfo? TryRead(string adapterFolder)
    {
        var path = Path.Combine(adapterFolder, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            var info = JsonSerializer.Deserialize<ErtasAdapterInfo>(File.ReadAllBytes(path), Json)
                ?? throw new ErtasException(ErrorCode.AdapterInvalid, "the file holds null, not an object", path);
            if (info.Format != CurrentFormat)
                throw new ErtasException(ErrorCode.AdapterInvalid, $"format {info.Format} is not supported (this engine reads {CurrentFormat})", path);
            return info;
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.AdapterInvalid, $"not a valid {FileName}: {e.Message}", path,
                (int)(e.LineNumber ?? -1) + 1, (int)(e.BytePositionInLine ?? 0) + 1, e);
        }
    }
}
