using Ertas.Build.Tasks;

namespace Ertas.Build.Tests;

public sealed class ErtasSpecTests
{
    private static readonly Dictionary<string, string> Defaults = new()
    {
        ["BaseModel"] = "tiny", ["ChatTemplate"] = "mistral-v1", ["SequenceLength"] = "2048", ["LoraRank"] = "16",
        ["LoraAlpha"] = "16", ["LoraDropout"] = "0.05", ["LoraTargetModules"] = "q_proj;k_proj;v_proj;o_proj;gate_proj;up_proj;down_proj",
        ["LearningRate"] = "2e-4", ["LrScheduler"] = "cosine", ["WarmupSteps"] = "0", ["WarmupRatio"] = "0.03", ["Epochs"] = "1",
        ["MaxSteps"] = "", ["BatchSize"] = "1", ["GradientAccumulation"] = "1", ["Seed"] = "42", ["ComputeType"] = "f32",
        ["ErtasDevice"] = "auto", ["EvalFraction"] = "0", ["ModelName"] = "My.Model", ["ModelVersion"] = "1.0.0",
        ["ErtasAdapterGguf"] = "true", ["ErtasMergeType"] = "F16", ["ErtasModelfileQuantization"] = "", ["ErtasTinyBaseSeed"] = "1",
        ["ErtasTorchRuntime"] = "cpu", ["ErtasCheckpointEvery"] = "0",
    };

    private static (ErtasSpec? Spec, List<SpecProblem> Problems) Parse(Dictionary<string, string>? overrides = null, params string[] quantizations)
    {
        var values = new Dictionary<string, string>(Defaults);
        foreach (var (k, v) in overrides ?? []) values[k] = v;
        var problems = new List<SpecProblem>();
        var spec = ErtasSpec.Parse(n => values[n],
            new ErtasItems(quantizations.Length == 0 ? ["Q4_K_M"] : quantizations, ["data/train.jsonl"], []), Path.GetTempPath(), problems);
        return (spec, problems);
    }

    [Fact]
    public void Defaults_AreValid_AndBecomeTheTrainFlags()
    {
        var (spec, problems) = Parse();
        Assert.Empty(problems);
        var args = string.Join(' ', spec!.TrainArguments());
        Assert.Equal("--rank 16 --alpha 16 --dropout 0.05 --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --lr 0.0002 " +
                     "--scheduler cosine --warmup-steps 0 --warmup-ratio 0.03 --epochs 1 --batch-size 1 --grad-accum 1 --seq-len 2048 " +
                     "--template mistral-v1 --seed 42 --compute f32 --device auto --eval-fraction 0", args);
    }

    [Fact]
    public void Spelling_DoesNotChangeTheNormalizedSettings()
    {
        var (a, _) = Parse(new() { ["LearningRate"] = "0.0002", ["LrScheduler"] = "COSINE", ["LoraTargetModules"] = "v_proj, q_proj" }, "q8_0");
        var (b, _) = Parse(new() { ["LearningRate"] = "2E-4", ["LrScheduler"] = "cosine", ["LoraTargetModules"] = "q_proj;v_proj" }, "Q8_0");
        Assert.Equal(a!.TrainingSettings(), b!.TrainingSettings());
        Assert.Equal(["Q8_0"], a.Quantizations);
    }

    [Fact]
    public void EveryInvalidValue_IsReported_NotJustTheFirst()
    {
        var (spec, problems) = Parse(new()
        {
            ["LoraRank"] = "sixteen", ["LoraDropout"] = "1", ["LrScheduler"] = "step", ["ModelVersion"] = "1.0",
            ["LoraTargetModules"] = "q_proj;qkv_proj", ["ModelName"] = "my model", ["BaseModel"] = "/no/such/folder",
        }, "Q4_K_M", "Q9_X", "q4_k_m");
        Assert.Null(spec);
        Assert.Equal(["BaseModel", "LoraRank", "LoraDropout", "LoraTargetModules", "LrScheduler", "ModelName", "ModelVersion", "Quantization", "Quantization"],
            problems.Select(p => p.Name));
        Assert.Contains("'1.0' is not a semantic version", problems.Single(p => p.Name == "ModelVersion").Message);
        Assert.Contains("unknown: qkv_proj", problems.Single(p => p.Name == "LoraTargetModules").Message);
        Assert.Equal(["Q9_X", "q4_k_m"], problems.Where(p => p.IsItem).Select(p => p.ItemValue));
    }

    [Fact]
    public void StageSettings_AreValidatedAndNormalized_AndTheModelfileMustNameAWrittenQuantization()
    {
        var (spec, problems) = Parse(new() { ["ErtasMergeType"] = "f32", ["ErtasModelfileQuantization"] = "q4_k_m", ["ChatTemplate"] = "Mistral-V1" },
            "Q8_0", "Q4_K_M");
        Assert.Empty(problems);
        Assert.Equal(("F32", "Q4_K_M", "mistral-v1"), (spec!.MergeType, spec.ModelfileQuantization, spec.ChatTemplate));
        Assert.Equal("Q8_0", Parse(quantizations: ["Q8_0", "Q4_K_M"]).Spec!.ModelfileQuantization);

        var (_, bad) = Parse(new() { ["ErtasMergeType"] = "Q4_K_M", ["ErtasModelfileQuantization"] = "Q6_K", ["ErtasTinyBaseSeed"] = "-1" }, "Q8_0");
        Assert.Equal(["ErtasMergeType", "ErtasTinyBaseSeed", "ErtasModelfileQuantization"], bad.Select(p => p.Name));
        Assert.Contains("'Q6_K' is not one of the Quantization items (Q8_0)", bad[2].Message);
    }

    [Fact]
    public void CudaDevice_WithTheCpuTorchRuntime_IsAnError_AndEvalDataWithEvalFraction_IsAnError()
    {
        var onGpu = Parse(new() { ["ErtasDevice"] = "cuda", ["ErtasTorchRuntime"] = "cuda", ["ComputeType"] = "auto" });
        Assert.Empty(onGpu.Problems);
        Assert.Equal("bf16", onGpu.Spec!.ComputeType); // auto compute: bf16 on a GPU, f32 on the CPU
        Assert.Equal("f32", Parse(new() { ["ComputeType"] = "AUTO" }).Spec!.ComputeType);
        var (_, cuda) = Parse(new() { ["ErtasDevice"] = "CUDA", ["ErtasTorchRuntime"] = "cpu" });
        Assert.Contains("needs the CUDA build of libtorch", Assert.Single(cuda, p => p.Name == "ErtasDevice").Message);
        var (_, auto) = Parse(new() { ["ErtasDevice"] = "auto", ["ErtasTorchRuntime"] = "cuda" });
        Assert.Contains("would key GPU and CPU builds alike", Assert.Single(auto, p => p.Name == "ErtasDevice").Message);
        // With CPU libtorch, auto can only mean cpu: switching between them retrains nothing.
        Assert.Equal(Parse(new() { ["ErtasDevice"] = "auto" }).Spec!.TrainingSettings(), Parse(new() { ["ErtasDevice"] = "cpu" }).Spec!.TrainingSettings());

        var problems = new List<SpecProblem>();
        var values = new Dictionary<string, string>(Defaults) { ["EvalFraction"] = "0.2" };
        Assert.Null(ErtasSpec.Parse(n => values[n], new ErtasItems(["Q8_0"], [], ["data/eval.jsonl"]), Path.GetTempPath(), problems));
        Assert.Equal(["TrainingData", "EvalFraction"], problems.Select(p => p.Name));
        Assert.True(problems[0].IsItem);
    }

    [Fact]
    public void TheTrainKey_HoldsNoBaseModelPath_ButTheLockRecordsItWithEveryStageSetting()
    {
        var folder = Directory.CreateTempSubdirectory("ertas-base-").FullName;
        File.WriteAllText(Path.Combine(folder, "config.json"), "{}");
        try
        {
            var (spec, problems) = Parse(new() { ["BaseModel"] = folder });
            Assert.Empty(problems);
            Assert.Equal(new KeyValuePair<string, string>("BaseModel", "folder"), spec!.TrainingSettings()[0]);
            var lockSettings = spec.LockSettings().ToDictionary();
            Assert.Equal(folder, lockSettings["BaseModel"]);
            Assert.Equal(("F16", "1", "cpu", "Q4_K_M"), (lockSettings["ErtasMergeType"], lockSettings["ErtasTinyBaseSeed"],
                lockSettings["ErtasTorchRuntime"], lockSettings["ErtasModelfileQuantization"]));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Datasets_AreSortedByTheirPathInTheProject_WhateverOrderTheGlobGave()
    {
        var project = Path.Combine(Path.GetTempPath(), "p");
        var items = new[] { "data/b.jsonl", "data/A.jsonl", "data/a/z.jsonl", "extra.jsonl" }
            .Select(i => (Microsoft.Build.Framework.ITaskItem)new Microsoft.Build.Utilities.TaskItem(Path.Combine(project, i))).ToArray();
        var sorted = CheckErtasProject.SortByProjectPath(items, project).Select(i => Path.GetRelativePath(project, i.ItemSpec).Replace('\\', '/'));
        Assert.Equal(["data/A.jsonl", "data/a/z.jsonl", "data/b.jsonl", "extra.jsonl"], sorted);
    }

    [Theory]
    [InlineData("1.2.0-rc.1+build.5", "1.2.0-rc.1+build.5")]
    [InlineData("01.2.3", null)]
    [InlineData("1.2.3.4", null)]
    [InlineData("2.0.0", "2.0.0")]
    public void ModelVersion_IsStrictSemVer(string text, string? normalized)
    {
        var (spec, problems) = Parse(new() { ["ModelVersion"] = text });
        Assert.Equal(normalized, spec?.ModelVersion);
        Assert.Equal(normalized is null, problems.Any(p => p.Name == "ModelVersion"));
    }

    [Fact]
    public void ProjectFileLines_FindTheWinningPropertyAndTheItemByValue()
    {
        var file = Path.Combine(Path.GetTempPath(), $"lines-{Guid.NewGuid():N}.ertasproj");
        File.WriteAllText(file, """
            <Project Sdk="Ertas.Build.Sdk/0.1.0">
              <PropertyGroup>
                <LoraRank>8</LoraRank>
              </PropertyGroup>
              <PropertyGroup>
                  <LoraRank>x</LoraRank>
              </PropertyGroup>
              <ItemGroup>
                <Quantization Include="Q8_0" />
                <Quantization Include="Q4_K_M;Q9" />
              </ItemGroup>
            </Project>
            """);
        try
        {
            var lines = ProjectFileLines.Load(file);
            Assert.Equal((6, 7), lines.Property("LoraRank"));
            Assert.Equal((10, 5), lines.Item("Quantization", "q9"));
            Assert.Equal((0, 0), lines.Property("Seed"));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("plain", "plain")]
    [InlineData("with space", "\"with space\"")]
    [InlineData("", "\"\"")]
    [InlineData("a\\b c\\", "\"a\\b c\\\\\"")]
    [InlineData("say \"hi\"", "\"say \\\"hi\\\"\"")]
    public void EngineArguments_AreQuotedTheWayDotnetSplitsThem(string argument, string quoted) =>
        Assert.Equal(quoted, RunErtas.Quote(argument));
}
