using System.Globalization;
using Ertas.Gguf.Mixes;
using Ertas.Mistral.Templates;
using NuGet.Versioning;

namespace Ertas.Build.Tasks;

/// <summary>One problem with one property or item of the project: the name lets the task find its line.</summary>
public sealed record SpecProblem(string Name, string Message, bool IsItem = false, string? ItemValue = null);

/// <summary>The project's items as the spec sees them (their Include values, in the project's order).</summary>
public sealed record ErtasItems(IReadOnlyList<string> Quantizations, IReadOnlyList<string> TrainingData, IReadOnlyList<string> EvalData);

/// <summary>
/// The training spec of an .ertasproj after validation: every value normalized (lower-case enums, invariant numbers,
/// SemVer normalized), so that the train key and the lock file do not change when only spelling does.
/// </summary>
public sealed record ErtasSpec(
    string BaseModel,
    string ChatTemplate,
    int SequenceLength,
    int LoraRank,
    double LoraAlpha,
    double LoraDropout,
    IReadOnlyList<string> LoraTargetModules,
    double LearningRate,
    string LrScheduler,
    int WarmupSteps,
    double WarmupRatio,
    int Epochs,
    int? MaxSteps,
    int BatchSize,
    int GradientAccumulation,
    ulong Seed,
    string ComputeType,
    string Device,
    double EvalFraction,
    string ModelName,
    string ModelVersion,
    IReadOnlyList<string> Quantizations,
    bool AdapterGguf,
    string MergeType,
    string ModelfileQuantization,
    ulong TinyBaseSeed,
    string TorchRuntime,
    int CheckpointEvery)
{
    /// <summary>Types the merged model (the source of every quantization) may have.</summary>
    public static readonly IReadOnlyList<string> MergeTypes = ["F16", "BF16", "F32"];

    public static readonly IReadOnlyList<string> AllTargetModules =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>
    /// Every setting that shapes the trained adapter, in a fixed order: the train key. A folder BaseModel keys as
    /// "folder" because its files' contents are keyed themselves; moving or renaming the folder retrains nothing.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, string>> TrainingSettings() =>
    [
        new("BaseModel", BaseModel == "tiny" ? "tiny" : "folder"),
        new("ChatTemplate", ChatTemplate),
        new("SequenceLength", Invariant(SequenceLength)),
        new("LoraRank", Invariant(LoraRank)),
        new("LoraAlpha", Invariant(LoraAlpha)),
        new("LoraDropout", Invariant(LoraDropout)),
        new("LoraTargetModules", string.Join(',', LoraTargetModules)),
        new("LearningRate", Invariant(LearningRate)),
        new("LrScheduler", LrScheduler),
        new("WarmupSteps", Invariant(WarmupSteps)),
        new("WarmupRatio", Invariant(WarmupRatio)),
        new("Epochs", Invariant(Epochs)),
        new("MaxSteps", MaxSteps is { } m ? Invariant(m) : ""),
        new("BatchSize", Invariant(BatchSize)),
        new("GradientAccumulation", Invariant(GradientAccumulation)),
        new("Seed", Invariant(Seed)),
        new("ComputeType", ComputeType),
        new("ErtasDevice", KeyedDevice),
        new("EvalFraction", Invariant(EvalFraction)),
    ];

    /// <summary>The device training runs on, as far as the build can know it: with CPU libtorch "auto" is "cpu".</summary>
    private string KeyedDevice => TorchRuntime == "cpu" ? "cpu" : Device;

    /// <summary>Every setting of the build, as written in the lock: the training settings (BaseModel as written in the
    /// project) and those of the later stages.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> LockSettings() =>
    [
        new("BaseModel", BaseModel),
        .. TrainingSettings().Skip(1),
        new("ErtasTorchRuntime", TorchRuntime),
        new("ErtasTinyBaseSeed", Invariant(TinyBaseSeed)),
        new("ErtasMergeType", MergeType),
        new("Quantizations", string.Join(';', Quantizations)),
        new("ErtasAdapterGguf", AdapterGguf ? "true" : "false"),
        new("ErtasModelfileQuantization", ModelfileQuantization),
        new("ErtasCheckpointEvery", Invariant(CheckpointEvery)),
    ];

    /// <summary><c>ertas train</c> flags for everything but --model, --data and --out.</summary>
    public IReadOnlyList<string> TrainArguments()
    {
        var args = new List<string>
        {
            "--rank", Invariant(LoraRank), "--alpha", Invariant(LoraAlpha), "--dropout", Invariant(LoraDropout),
            "--targets", string.Join(',', LoraTargetModules), "--lr", Invariant(LearningRate), "--scheduler", LrScheduler,
            "--warmup-steps", Invariant(WarmupSteps), "--warmup-ratio", Invariant(WarmupRatio), "--epochs", Invariant(Epochs),
            "--batch-size", Invariant(BatchSize), "--grad-accum", Invariant(GradientAccumulation),
            "--seq-len", Invariant(SequenceLength), "--template", ChatTemplate, "--seed", Invariant(Seed), "--compute", ComputeType, "--device", Device,
            "--eval-fraction", Invariant(EvalFraction),
        };
        if (MaxSteps is { } maxSteps)
            args.AddRange(["--max-steps", Invariant(maxSteps)]);
        // Checkpoints do not change the adapter (a resumed run gives the same bytes), so they are not in the train key.
        if (CheckpointEvery > 0)
            args.AddRange(["--checkpoint-every", Invariant(CheckpointEvery), "--resume", "auto"]);
        return args;
    }

    internal static string Invariant(IFormattable value) => value.ToString(null, CultureInfo.InvariantCulture);
    private static string Invariant(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>
    /// Parses raw property values (an empty value means "not set": the SDK sets defaults before calling this) and the
    /// Quantization items. Reports every problem, not just the first; the spec is null when there is any.
    /// </summary>
    public static ErtasSpec? Parse(Func<string, string> property, ErtasItems items, string projectDirectory, List<SpecProblem> problems)
    {
        var reader = new SettingReader(property, problems);
        var baseModel = reader.Text("BaseModel");
        if (baseModel.Length == 0)
            problems.Add(new("BaseModel", "BaseModel is required: 'tiny' (the built-in base) or a Hugging Face Mistral folder"));
        else if (!string.Equals(baseModel, "tiny", StringComparison.OrdinalIgnoreCase))
        {
            var folder = Path.GetFullPath(baseModel, projectDirectory);
            if (!File.Exists(Path.Combine(folder, "config.json")))
                problems.Add(new("BaseModel",
                    $"BaseModel '{baseModel}' is neither 'tiny' nor a Hugging Face model folder (no config.json in '{folder}')"));
        }
        else baseModel = "tiny";

        var template = reader.OneOf("ChatTemplate", ChatTemplates.Names);
        var sequenceLength = reader.Int("SequenceLength", 16, 1 << 20);
        var rank = reader.Int("LoraRank", 1, 4096);
        var alpha = reader.Double("LoraAlpha", 0, double.MaxValue, minExclusive: true);
        var dropout = reader.Double("LoraDropout", 0, 1, maxExclusive: true);
        var targets = reader.Targets("LoraTargetModules");
        var lr = reader.Double("LearningRate", 0, 1, minExclusive: true);
        var scheduler = reader.OneOf("LrScheduler", ["constant", "linear", "cosine"]);
        var warmupSteps = reader.Int("WarmupSteps", 0, int.MaxValue);
        var warmupRatio = reader.Double("WarmupRatio", 0, 1, maxExclusive: true);
        var epochs = reader.Int("Epochs", 1, 100_000);
        int? maxSteps = reader.IsSet("MaxSteps") ? reader.Int("MaxSteps", 1, int.MaxValue) : null;
        var batch = reader.Int("BatchSize", 1, 65_536);
        var accumulation = reader.Int("GradientAccumulation", 1, 65_536);
        var seed = reader.Seed("Seed");
        var compute = reader.OneOf("ComputeType", ["auto", "f32", "bf16"]);
        var device = reader.OneOf("ErtasDevice", ["auto", "cpu", "cuda"]);
        var torchRuntime = reader.OneOf("ErtasTorchRuntime", ["cpu", "cuda"]);
        // auto: bf16 on a GPU (QLoRA practice), f32 on the CPU (few CPUs multiply bf16 fast). Resolved here, so the
        // train key and the lock hold what training will use.
        if (compute == "auto")
            compute = device == "cuda" ? "bf16" : "f32";
        if (device == "cuda" && torchRuntime == "cpu" && problems.All(p => p.Name != "ErtasDevice"))
            problems.Add(new("ErtasDevice", "ErtasDevice 'cuda' needs the CUDA build of libtorch, but ErtasTorchRuntime is 'cpu': remove ErtasTorchRuntime (cuda is then chosen) or set it to cuda"));
        // With CUDA libtorch, "auto" would train on a GPU on one machine and on the CPU on another under one key.
        if (device == "auto" && torchRuntime == "cuda" && problems.All(p => p.Name != "ErtasDevice"))
            problems.Add(new("ErtasDevice", "ErtasDevice 'auto' with ErtasTorchRuntime 'cuda' would key GPU and CPU builds alike: set ErtasDevice to cuda (or cpu)"));
        var evalFraction = reader.Double("EvalFraction", 0, 1, maxExclusive: true);
        var name = reader.Text("ModelName");
        if (name.Length == 0 || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) || name.StartsWith('.'))
            problems.Add(new("ModelName", $"ModelName '{name}' must be non-empty and use only letters, digits, '-', '_' and '.' (it names the output files)"));
        var versionText = reader.Text("ModelVersion");
        var version = "";
        if (SemanticVersion.TryParse(versionText, out var parsed))
            version = parsed.ToFullString(); // normalized, build metadata kept
        else
            problems.Add(new("ModelVersion", $"ModelVersion '{versionText}' is not a semantic version (MAJOR.MINOR.PATCH[-prerelease][+build], e.g. 1.2.0-rc.1)"));
        var adapterGguf = reader.Bool("ErtasAdapterGguf");
        var mergeType = reader.OneOf("ErtasMergeType", MergeTypes);
        var tinyBaseSeed = reader.Seed("ErtasTinyBaseSeed");
        var checkpointEvery = reader.Int("ErtasCheckpointEvery", 0, int.MaxValue);

        if (items.TrainingData.Count == 0)
            problems.Add(new("TrainingData", "no TrainingData item: add the JSONL datasets to train on, e.g. <TrainingData Include=\"data/*.jsonl\" />", IsItem: true));
        if (items.EvalData.Count > 0 && evalFraction > 0)
            problems.Add(new("EvalFraction", "EvalData and EvalFraction both choose the eval examples: keep EvalData and remove EvalFraction, or the other way round"));

        var quantizations = new List<string>();
        foreach (var item in items.Quantizations)
        {
            if (!QuantizationMixes.TryParse(item, out var mix))
                problems.Add(new("Quantization", $"unknown Quantization '{item}'; valid types: {QuantizationMixes.ValidNames}", IsItem: true, item));
            else if (quantizations.Contains(mix.Name))
                problems.Add(new("Quantization", $"Quantization '{mix.Name}' is listed twice", IsItem: true, item));
            else
                quantizations.Add(mix.Name);
        }
        if (items.Quantizations.Count == 0)
            problems.Add(new("Quantization", "no Quantization item: add at least one, e.g. <Quantization Include=\"Q4_K_M\" />", IsItem: true));

        var modelfileQuantization = quantizations.Count > 0 ? quantizations[0] : "";
        if (reader.IsSet("ErtasModelfileQuantization"))
        {
            var wanted = reader.Text("ErtasModelfileQuantization");
            modelfileQuantization = quantizations.FirstOrDefault(q => string.Equals(q, wanted, StringComparison.OrdinalIgnoreCase)) ?? "";
            if (modelfileQuantization.Length == 0 && quantizations.Count > 0)
                problems.Add(new("ErtasModelfileQuantization",
                    $"ErtasModelfileQuantization '{wanted}' is not one of the Quantization items ({string.Join(", ", quantizations)}): the Modelfile's FROM must name a GGUF this build writes"));
        }

        if (problems.Count > 0)
            return null;
        return new ErtasSpec(baseModel, template, sequenceLength, rank, alpha, dropout, targets, lr, scheduler, warmupSteps, warmupRatio,
            epochs, maxSteps, batch, accumulation, seed, compute, device, evalFraction, name, version, quantizations, adapterGguf,
            mergeType, modelfileQuantization, tinyBaseSeed, torchRuntime, checkpointEvery);
    }

    private sealed class SettingReader(Func<string, string> property, List<SpecProblem> problems)
    {
        public bool IsSet(string name) => property(name).Trim().Length > 0;

        public string Text(string name) => property(name).Trim();

        public int Int(string name, int min, int max)
        {
            var text = Text(name);
            if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
                return value;
            problems.Add(new(name, $"{name} '{text}' must be an integer from {min} to {(max == int.MaxValue ? "2147483647" : Invariant(max))}"));
            return min;
        }

        public ulong Seed(string name)
        {
            var text = Text(name);
            if (ulong.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
                return value;
            problems.Add(new(name, $"{name} '{text}' must be a non-negative integer"));
            return 0;
        }

        public double Double(string name, double min, double max, bool minExclusive = false, bool maxExclusive = false)
        {
            var text = Text(name);
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
                && (minExclusive ? value > min : value >= min) && (maxExclusive ? value < max : value <= max))
                return value;
            var low = minExclusive ? $"greater than {Invariant(min)}" : $"at least {Invariant(min)}";
            var high = max == double.MaxValue ? "" : maxExclusive ? $" and less than {Invariant(max)}" : $" and at most {Invariant(max)}";
            problems.Add(new(name, $"{name} '{text}' must be a number {low}{high}"));
            return min;
        }

        public string OneOf(string name, IReadOnlyList<string> allowed)
        {
            var text = Text(name);
            var match = allowed.FirstOrDefault(a => string.Equals(a, text, StringComparison.OrdinalIgnoreCase));
            if (match is not null)
                return match;
            problems.Add(new(name, $"{name} '{text}' must be one of: {string.Join(", ", allowed)}"));
            return allowed[0];
        }

        public bool Bool(string name)
        {
            var text = Text(name);
            if (bool.TryParse(text, out var value))
                return value;
            problems.Add(new(name, $"{name} '{text}' must be true or false"));
            return false;
        }

        public IReadOnlyList<string> Targets(string name)
        {
            var parts = Text(name).Split([';', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(p => p.ToLowerInvariant()).ToList();
            var unknown = parts.Where(p => !AllTargetModules.Contains(p)).ToList();
            if (parts.Count == 0 || unknown.Count > 0 || parts.Distinct().Count() != parts.Count)
            {
                problems.Add(new(name, $"{name} '{Text(name)}' must list distinct projections from: {string.Join(", ", AllTargetModules)}"
                    + (unknown.Count > 0 ? $" (unknown: {string.Join(", ", unknown)})" : "")));
                return AllTargetModules;
            }
            // Canonical order, so that "v_proj;q_proj" and "q_proj;v_proj" train (and key) the same.
            return AllTargetModules.Where(parts.Contains).ToList();
        }
    }
}
