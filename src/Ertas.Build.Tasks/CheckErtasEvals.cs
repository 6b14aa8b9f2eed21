using System.Globalization;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Ertas.Build.Tasks;

/// <summary>
/// Validates the eval settings (EvalQuantizations, EvalMaxTokens, EvalContextSize, EvalThreads, EvalMaxNewFailures,
/// EvalMinPassRate and the EvalRule items) at their project lines, and hands the targets the GGUFs to score and the
/// <c>ertas eval</c> gate arguments. The suites themselves are checked by the engine, case by case.
/// </summary>
public sealed class CheckErtasEvals : Microsoft.Build.Utilities.Task
{
    // The engine's EvalSummary.MetricNames: the tasks do not load Ertas.Eval (it brings llama.cpp), and a wrong name
    // must be an error at its project line before anything runs.
    private static IReadOnlyList<string> Metrics { get; } = ["pass_rate", "mean_score", "acc", "acc_norm", "target_nll"];
    private static IReadOnlyList<string> RuleLimits { get; } = ["MaxDrop", "MaxIncrease", "Min", "Max"];

    [Required] public string ProjectFile { get; set; } = "";

    /// <summary>The quantized outputs (metadata Quantization, normalized names), as ErtasCheckProject made them.</summary>
    public ITaskItem[] QuantizedFiles { get; set; } = [];
    public string EvalQuantizations { get; set; } = "";
    public string EvalMaxTokens { get; set; } = "";
    public string EvalContextSize { get; set; } = "";
    public string EvalThreads { get; set; } = "";
    public string EvalMaxNewFailures { get; set; } = "";
    public string EvalMinPassRate { get; set; } = "";
    public ITaskItem[] EvalRules { get; set; } = [];
    public ITaskItem[] Suites { get; set; } = [];

    /// <summary>The GGUFs to score: every quantized output, or those EvalQuantizations names.</summary>
    [Output] public ITaskItem[] ModelsToEvaluate { get; private set; } = [];

    /// <summary>Normalized settings for the eval key (ItemSpec name, metadata Value).</summary>
    [Output] public ITaskItem[] Settings { get; private set; } = [];

    /// <summary>The <c>ertas eval</c> decode and gate flags, one argument per item.</summary>
    [Output] public ITaskItem[] Arguments { get; private set; } = [];

    public override bool Execute()
    {
        var lines = new Lazy<ProjectFileLines>(() => ProjectFileLines.Load(ProjectFile));
        void Property(string name, string message)
        {
            var (line, column) = lines.Value.Property(name);
            Log.LogError(null, "ERTAS8001", null, ProjectFile, line, column, 0, 0, message);
        }
        void Item(string type, string value, string message)
        {
            var (line, column) = lines.Value.Item(type, value);
            Log.LogError(null, "ERTAS8002", null, ProjectFile, line, column, 0, 0, message);
        }
        int Int(string name, string text, int min, int max)
        {
            if (int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max)
                return v;
            Property(name, $"{name} '{text}' must be a whole number from {min} to {max}");
            return min;
        }

        var available = QuantizedFiles.ToDictionary(f => f.GetMetadata("Quantization"), f => f, StringComparer.OrdinalIgnoreCase);
        var models = new List<ITaskItem>();
        var wanted = EvalQuantizations.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (wanted.Length == 0)
            models.AddRange(QuantizedFiles);
        foreach (var q in wanted)
        {
            if (!available.TryGetValue(q, out var file))
                Property("EvalQuantizations", $"EvalQuantizations names '{q}', which is not one of the Quantization items ({string.Join(", ", available.Keys)}); evals score the GGUFs the build writes");
            else if (!models.Contains(file))
                models.Add(file);
        }

        var maxTokens = Int("EvalMaxTokens", EvalMaxTokens, 1, 1 << 20);
        var context = Int("EvalContextSize", EvalContextSize, 16, 1 << 20);
        var threads = Int("EvalThreads", EvalThreads, 1, 1024);
        var maxNewFailures = Int("EvalMaxNewFailures", EvalMaxNewFailures, 0, int.MaxValue);
        if (!double.TryParse(EvalMinPassRate.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var minPassRate) || !(minPassRate is >= 0 and <= 1))
            Property("EvalMinPassRate", $"EvalMinPassRate '{EvalMinPassRate}' must be a number from 0 to 1 (the least share of cases that pass)");

        var rules = new List<string>();
        foreach (var rule in EvalRules)
        {
            var metric = rule.ItemSpec.Trim();
            if (!Metrics.Contains(metric))
            {
                Item("EvalRule", rule.ItemSpec, $"EvalRule '{metric}' is not a metric; use one of {string.Join(", ", Metrics)}");
                continue;
            }
            var limits = new List<string>();
            foreach (var limit in RuleLimits)
            {
                var text = rule.GetMetadata(limit);
                if (text.Length == 0)
                    continue;
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value) || value < 0)
                    Item("EvalRule", rule.ItemSpec, $"EvalRule '{metric}': {limit}=\"{text}\" must be a number of 0 or more");
                else
                    limits.Add($"{limit.ToLowerInvariant() switch { "maxdrop" => "max_drop", "maxincrease" => "max_increase", var l => l }}={value.ToString("R", CultureInfo.InvariantCulture)}");
            }
            if (limits.Count == 0)
                Item("EvalRule", rule.ItemSpec, $"EvalRule '{metric}' sets no limit: add MaxDrop, MaxIncrease, Min or Max, e.g. <EvalRule Include=\"acc_norm\" MaxDrop=\"0.02\" />");
            else
                rules.Add($"{metric}:{string.Join(',', limits)}");
        }
        if (Log.HasLoggedErrors)
            return false;

        ModelsToEvaluate = models.ToArray();
        var invariant = CultureInfo.InvariantCulture;
        var settings = new List<KeyValuePair<string, string>>
        {
            new("EvalMaxTokens", maxTokens.ToString(invariant)),
            new("EvalContextSize", context.ToString(invariant)),
            new("EvalThreads", threads.ToString(invariant)),
            new("EvalMaxNewFailures", maxNewFailures.ToString(invariant)),
            new("EvalMinPassRate", minPassRate.ToString("R", invariant)),
            new("EvalRules", string.Join(' ', rules)),
        };
        Settings = settings.Select(s =>
        {
            var item = new TaskItem(s.Key);
            item.SetMetadata("Value", s.Value);
            return (ITaskItem)item;
        }).ToArray();
        var arguments = new List<string>();
        // One argument per item: MSBuild transforms cannot make the two-argument pairs, and batching merges paths.
        foreach (var model in models)
            arguments.AddRange(["--model", model.GetMetadata("FullPath")]);
        foreach (var suite in Suites)
            arguments.AddRange(["--suite", suite.GetMetadata("FullPath")]);
        arguments.AddRange(
        [
            "--max-tokens", maxTokens.ToString(invariant), "--context", context.ToString(invariant), "--threads", threads.ToString(invariant),
            "--max-new-failures", maxNewFailures.ToString(invariant), "--min-pass-rate", minPassRate.ToString("R", invariant),
        ]);
        foreach (var rule in rules)
            arguments.AddRange(["--rule", rule]);
        Arguments = arguments.Select(a => (ITaskItem)new TaskItem(a)).ToArray();
        return true;
    }
}
