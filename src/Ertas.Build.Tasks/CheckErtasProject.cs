using Ertas.Core;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Ertas.Build.Tasks;

/// <summary>
/// Validates the .ertasproj's spec (every property and Quantization item), reporting each problem as ERTAS8001
/// (property) or ERTAS8002 (item) at its line in the project file, and hands the normalized spec to the targets.
/// </summary>
public sealed class CheckErtasProject : Microsoft.Build.Utilities.Task
{
    private static readonly string[] PropertyNames =
    [
        "BaseModel", "ChatTemplate", "SequenceLength", "LoraRank", "LoraAlpha", "LoraDropout", "LoraTargetModules", "LearningRate",
        "LrScheduler", "WarmupSteps", "WarmupRatio", "Epochs", "MaxSteps", "BatchSize", "GradientAccumulation", "Seed", "ComputeType",
        "ErtasDevice", "EvalFraction", "ModelName", "ModelVersion", "ErtasAdapterGguf",
    ];

    [Required] public string ProjectFile { get; set; } = "";

    /// <summary>The spec's properties as items: ItemSpec = property name, metadata Value = its value.</summary>
    [Required] public ITaskItem[] Properties { get; set; } = [];

    public ITaskItem[] Quantizations { get; set; } = [];

    [Output] public string ModelVersion { get; private set; } = "";
    [Output] public string BaseModel { get; private set; } = "";
    [Output] public bool UsesTinyBase { get; private set; }

    /// <summary>Normalized quantization names, in the project's order.</summary>
    [Output] public ITaskItem[] NormalizedQuantizations { get; private set; } = [];

    /// <summary>The first Quantization (the Modelfile's default).</summary>
    [Output] public string FirstQuantization { get; private set; } = "";

    /// <summary>Every training setting, normalized: ItemSpec = name, metadata Value.</summary>
    [Output] public ITaskItem[] TrainingSettings { get; private set; } = [];

    /// <summary>The <c>ertas train</c> flags for these settings (one argument per item).</summary>
    [Output] public ITaskItem[] TrainArguments { get; private set; } = [];

    public override bool Execute()
    {
        var values = Properties.ToDictionary(p => p.ItemSpec, p => p.GetMetadata("Value"), StringComparer.OrdinalIgnoreCase);
        var unknown = PropertyNames.Where(n => !values.ContainsKey(n)).ToList();
        if (unknown.Count > 0)
        {
            Log.LogError(null, "ERTAS8003", null, ProjectFile, 0, 0, 0, 0, $"internal: the SDK did not pass {string.Join(", ", unknown)}");
            return false;
        }
        var problems = new List<SpecProblem>();
        var spec = ErtasSpec.Parse(name => values.TryGetValue(name, out var v) ? v : "", Quantizations.Select(q => q.ItemSpec).ToList(),
            Path.GetDirectoryName(Path.GetFullPath(ProjectFile)) ?? ".", problems);
        if (spec is null)
        {
            var lines = ProjectFileLines.Load(ProjectFile);
            foreach (var problem in problems)
            {
                var (line, column) = problem.IsItem ? lines.Item(problem.Name, problem.ItemValue) : lines.Property(problem.Name);
                var code = problem.IsItem ? ErrorCode.ProjectItemInvalid : ErrorCode.ProjectPropertyInvalid;
                Log.LogError(null, $"ERTAS{(int)code:D4}", null, ProjectFile, line, column, 0, 0, problem.Message);
            }
            return false;
        }
        ModelVersion = spec.ModelVersion;
        BaseModel = spec.BaseModel;
        UsesTinyBase = spec.BaseModel == "tiny";
        NormalizedQuantizations = spec.Quantizations.Select(q => (ITaskItem)new TaskItem(q)).ToArray();
        FirstQuantization = spec.Quantizations[0];
        TrainingSettings = spec.TrainingSettings().Select(Setting).ToArray();
        TrainArguments = spec.TrainArguments().Select(a => (ITaskItem)new TaskItem(a)).ToArray();
        return true;
    }

    private static ITaskItem Setting(KeyValuePair<string, string> setting)
    {
        var item = new TaskItem(setting.Key);
        item.SetMetadata("Value", setting.Value);
        return item;
    }
}
