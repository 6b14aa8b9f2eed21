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
        "ErtasDevice", "EvalFraction", "ModelName", "ModelVersion", "ErtasAdapterGguf", "ErtasMergeType", "ErtasModelfileQuantization",
        "ErtasTinyBaseSeed", "ErtasTorchRuntime", "ErtasCheckpointEvery",
    ];

    [Required] public string ProjectFile { get; set; } = "";

    /// <summary>The spec's properties as items: ItemSpec = property name, metadata Value = its value.</summary>
    [Required] public ITaskItem[] Properties { get; set; } = [];

    public ITaskItem[] Quantizations { get; set; } = [];
    public ITaskItem[] TrainingData { get; set; } = [];
    public ITaskItem[] EvalData { get; set; } = [];

    /// <summary>TrainingData and EvalData sorted by their path relative to the project (ordinal, '/' separators): a
    /// glob's order is the file system's, and dataset order shapes training, so every machine must see one order.</summary>
    [Output] public ITaskItem[] SortedTrainingData { get; private set; } = [];
    [Output] public ITaskItem[] SortedEvalData { get; private set; } = [];

    /// <summary><c>--data FILE</c> per training file and <c>--eval-data FILE</c> per eval file, in that order, one
    /// argument per item (MSBuild batching would merge files whose paths differ only in case).</summary>
    [Output] public ITaskItem[] DataArguments { get; private set; } = [];

    [Output] public string ChatTemplate { get; private set; } = "";
    [Output] public string MergeType { get; private set; } = "";
    [Output] public string ModelfileQuantization { get; private set; } = "";
    [Output] public string TinyBaseSeed { get; private set; } = "";

    /// <summary>Every setting of the build for the lock file: ItemSpec = name, metadata Value.</summary>
    [Output] public ITaskItem[] LockSettings { get; private set; } = [];

    [Output] public string ModelVersion { get; private set; } = "";
    [Output] public string BaseModel { get; private set; } = "";
    [Output] public bool UsesTinyBase { get; private set; }

    /// <summary>Normalized quantization names, in the project's order.</summary>
    [Output] public ITaskItem[] NormalizedQuantizations { get; private set; } = [];


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
        var projectDirectory = Path.GetDirectoryName(Path.GetFullPath(ProjectFile)) ?? ".";
        var items = new ErtasItems(Names(Quantizations), Names(TrainingData), Names(EvalData));
        var spec = ErtasSpec.Parse(name => values.TryGetValue(name, out var v) ? v : "", items, projectDirectory, problems);
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
        ChatTemplate = spec.ChatTemplate;
        MergeType = spec.MergeType;
        ModelfileQuantization = spec.ModelfileQuantization;
        TinyBaseSeed = ErtasSpec.Invariant(spec.TinyBaseSeed);
        TrainingSettings = spec.TrainingSettings().Select(Setting).ToArray();
        LockSettings = spec.LockSettings().Select(Setting).ToArray();
        SortedTrainingData = SortByProjectPath(TrainingData, projectDirectory);
        SortedEvalData = SortByProjectPath(EvalData, projectDirectory);
        DataArguments = SortedTrainingData.SelectMany(f => new[] { "--data", f.GetMetadata("FullPath") })
            .Concat(SortedEvalData.SelectMany(f => new[] { "--eval-data", f.GetMetadata("FullPath") }))
            .Select(a => (ITaskItem)new TaskItem(a)).ToArray();
        TrainArguments = spec.TrainArguments().Select(a => (ITaskItem)new TaskItem(a)).ToArray();
        return true;
    }

    private static List<string> Names(ITaskItem[] items) => items.Select(i => i.ItemSpec).ToList();

    internal static ITaskItem[] SortByProjectPath(ITaskItem[] items, string projectDirectory) =>
        items.OrderBy(i => Path.GetRelativePath(projectDirectory, i.GetMetadata("FullPath")).Replace('\\', '/'), StringComparer.Ordinal)
            .ToArray();

    private static ITaskItem Setting(KeyValuePair<string, string> setting)
    {
        var item = new TaskItem(setting.Key);
        item.SetMetadata("Value", setting.Value);
        return item;
    }
}
