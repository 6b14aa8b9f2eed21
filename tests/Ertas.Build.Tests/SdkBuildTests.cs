using System.Text.Json;
using System.Text.RegularExpressions;
using Ertas.TestSupport;
using LLama;
using LLama.Common;

namespace Ertas.Build.Tests;

/// <summary>
/// The SDK end to end, as a user meets it: packed packages in a local feed, `dotnet new ertas-model`, `dotnet build`.
/// The template's project trains the built-in tiny base for three short epochs; one full build is shared (copied)
/// by the tests that need a built project.
/// </summary>
public sealed partial class SdkBuildTests(PackedSdk sdk) : IClassFixture<PackedSdk>
{
    private static readonly string[] FullPipeline = ["base", "plan", "train", "merge", "quantize Q8_0", "quantize Q4_K_M", "adapter-gguf", "base-gguf", "eval"];

    private static string Output(string project, string file) => Path.Combine(project, "bin", "Debug", file);

    [Fact]
    public void Build_WritesEveryOutputThatLlamaCppLoads_AndASecondBuildRunsNoHeavyStage()
    {
        var (project, first) = sdk.BuiltProject;
        Assert.Equal(FullPipeline, first.Stages);

        foreach (var quant in new[] { "Q8_0", "Q4_K_M" })
        {
            using var model = LlamaCppModel.Load(Output(project, $"Capitals-1.0.0.{quant}.gguf"), contextSize: 64);
            Assert.Equal("1.0.0", model.Metadata("general.version"));
            Assert.Equal("Capitals", model.Metadata("general.name"));
            var (ids, _) = model.Greedy(model.Tokenize("[INST] What is LoRA? [/INST]", addBos: true), 4, stopId: 2);
            Assert.NotEmpty(ids);
        }
        var parameters = new ModelParams(Output(project, "Capitals-1.0.0.Q8_0.gguf")) { ContextSize = 64, GpuLayerCount = 0 };
        using (var weights = LLamaWeights.LoadFromFile(parameters))
            weights.NativeHandle.LoadLoraFromFile(Output(project, "Capitals-1.0.0.lora.gguf")); // llama.cpp checks arch and shapes
        using (var adapter = new Ertas.Gguf.GgufReader(Output(project, "Capitals-1.0.0.lora.gguf")))
            Assert.Equal(("Capitals", "1.0.0", "adapter"), (adapter.GetString("general.name"), adapter.GetString("general.version"), adapter.GetString("general.type")));

        // The adapter's Modelfile: the LoRA GGUF over the base exported beside it, which llama.cpp loads and applies.
        var adapterModelfile = File.ReadAllText(Output(project, "Modelfile.adapter"));
        Assert.Contains("FROM ./Capitals-1.0.0.base.Q8_0.gguf\nADAPTER ./Capitals-1.0.0.lora.gguf\n", adapterModelfile);
        using (var withAdapter = LlamaCppModel.Load(Output(project, "Capitals-1.0.0.base.Q8_0.gguf"), contextSize: 64, loraAdapter: Output(project, "Capitals-1.0.0.lora.gguf")))
            Assert.NotEmpty(withAdapter.Greedy(withAdapter.Tokenize(" [INST] What is LoRA? [/INST]", addBos: true), 4, stopId: 2).Ids);

        var modelfile = File.ReadAllText(Output(project, "Modelfile"));
        Assert.Contains("FROM ./Capitals-1.0.0.Q8_0.gguf\n", modelfile);
        Assert.Contains("TEMPLATE \"\"\"" + Ertas.Mistral.Templates.ChatTemplates.MistralV1Ollama + "\"\"\"\n", modelfile);
        Assert.Contains("PARAMETER stop \"</s>\"", modelfile);

        using var lockJson = JsonDocument.Parse(File.ReadAllBytes(Output(project, "ertas.lock.json")));
        var root = lockJson.RootElement;
        Assert.Equal(sdk.Version, root.GetProperty("engineVersion").GetString());
        Assert.Equal(42, root.GetProperty("seed").GetInt32());
        Assert.Equal("16", root.GetProperty("settings").GetProperty("LoraRank").GetString());
        var outputs = root.GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("path").GetString()!, o => o.GetProperty("sha256").GetString());
        Assert.Equal(["Capitals-1.0.0.Q4_K_M.gguf", "Capitals-1.0.0.Q8_0.gguf", "Capitals-1.0.0.base.Q8_0.gguf", "Capitals-1.0.0.lora.gguf", "Modelfile", "Modelfile.adapter"], outputs.Keys);
        Assert.Equal(Sha256(Output(project, "Capitals-1.0.0.Q8_0.gguf")), outputs["Capitals-1.0.0.Q8_0.gguf"]);
        Assert.Contains(root.GetProperty("inputs").EnumerateArray(), i => i.GetProperty("path").GetString() == "data/train.jsonl"
            && i.GetProperty("sha256").GetString() == Sha256(Path.Combine(project, "data", "train.jsonl")));

        // The template's eval suite was scored on both GGUFs: with no baseline yet, the build wrote them (not on CI).
        foreach (var quant in new[] { "Q8_0", "Q4_K_M" })
        {
            var snapshot = Ertas.Eval.EvalSnapshot.Read(Path.Combine(project, "evals", $"Capitals.{quant}.verified.json"));
            Assert.Equal((quant, 4, Sha256(Output(project, $"Capitals-1.0.0.{quant}.gguf"))), (snapshot.Quantization, snapshot.Cases.Count, snapshot.Sha256));
        }
        Assert.Contains("no baseline yet; wrote", first.Output);
        Assert.StartsWith("🆕 **No eval baseline yet** for Capitals", File.ReadAllText(Path.Combine(project, "obj", "ertas", "evals", "report.md")));
        Assert.Contains("<svg", File.ReadAllText(Path.Combine(project, "obj", "ertas", "evals", "report.html")));

        var stamps = Directory.GetFiles(Output(project, "")).ToDictionary(f => f, File.GetLastWriteTimeUtc);
        var second = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Empty(second.Stages);
        Assert.DoesNotContain("are valid", second.Output); // validation is keyed too: unchanged data is not re-read
        Assert.All(stamps, s => Assert.Equal(s.Value, File.GetLastWriteTimeUtc(s.Key)));
    }

    [Fact]
    public void EditingADatasetsContents_Retrains_ButTouchingItDoesNot()
    {
        var project = sdk.CopyOfBuiltProject();
        var data = Path.Combine(project, "data", "train.jsonl");
        var firstKey = TrainKey(project);

        File.SetLastWriteTimeUtc(data, DateTime.UtcNow.AddMinutes(1));
        Assert.Empty(sdk.Dotnet(project, "build").EnsureSuccess().Stages);

        File.AppendAllText(data, """{"messages":[{"role":"user","content":"Is this new?"},{"role":"assistant","content":"Yes, it is new."}]}""" + "\n");
        var retrained = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["plan", "train", "merge", "quantize Q8_0", "quantize Q4_K_M", "adapter-gguf", "eval"], retrained.Stages);
        Assert.NotEqual(firstKey, TrainKey(project));
    }

    [Fact]
    public void AddingEvalData_Retrains_WithAnEvalLoss_AndEvalDataWithEvalFraction_IsAnError()
    {
        var project = sdk.CopyOfBuiltProject();
        File.WriteAllText(Path.Combine(project, "data", "eval.jsonl"),
            """{"messages":[{"role":"user","content":"What is held out?"},{"role":"assistant","content":"This answer."}]}""" + "\n");
        EditProject(project, "Capitals", p => p.Replace("<Quantization Include=\"Q8_0;Q4_K_M\" />",
            "<Quantization Include=\"Q8_0;Q4_K_M\" />\n    <EvalData Include=\"data/eval.jsonl\" />"));
        var withEval = sdk.Dotnet(project, "build").EnsureSuccess();
        // Held-out data only measures a loss: the same weights come out, so the GGUFs' bytes and the eval key are unchanged.
        Assert.Equal(["plan", "train", "merge", "quantize Q8_0", "quantize Q4_K_M", "adapter-gguf"], withEval.Stages);
        Assert.Matches(@"eval_loss \d+\.\d{3}", withEval.Output);

        EditProject(project, "Capitals", p => p.Replace("<EvalData ", "<EvalData Condition=\"true\" ").Replace("</PropertyGroup>", "  <EvalFraction>0.2</EvalFraction>\n  </PropertyGroup>"));
        var both = sdk.Dotnet(project, "build");
        Assert.NotEqual(0, both.ExitCode);
        var lines = File.ReadAllLines(Path.Combine(project, "Capitals.ertasproj"));
        var line = Array.FindIndex(lines, l => l.Contains("<EvalFraction>", StringComparison.Ordinal)) + 1;
        Assert.Contains($"Capitals.ertasproj({line},5): error ERTAS8001: EvalData and EvalFraction both choose the eval examples", both.Output);
    }

    [Fact]
    public void ANewEngineVersion_RebuildsEveryHeavyStage()
    {
        var project = sdk.CopyOfBuiltProject();
        // The version the engine package's props report; a global property stands in for restoring a newer package.
        var rebuilt = sdk.Dotnet(project, "build", "-p:ErtasEngineResolvedVersion=99.0.0").EnsureSuccess();
        Assert.Equal(FullPipeline, rebuilt.Stages);
        using var lockJson = JsonDocument.Parse(File.ReadAllBytes(Output(project, "ertas.lock.json")));
        Assert.Equal("99.0.0", lockJson.RootElement.GetProperty("engineVersion").GetString());
    }

    [Fact]
    public void ChangingOnlyTheQuantizationList_OnlyQuantizes()
    {
        var project = sdk.CopyOfBuiltProject();
        var q8 = Output(project, "Capitals-1.0.0.Q8_0.gguf");
        var q4 = Output(project, "Capitals-1.0.0.Q4_K_M.gguf");
        var q8Time = File.GetLastWriteTimeUtc(q8);

        // What a killed quantize leaves (AtomicFile's temporary name), and another project's model in the same folder.
        var leftover = Output(project, ".Capitals-1.0.0.Q8_0.gguf.4242.0123456789abcdef.tmp");
        var foreign = Output(project, "Capitals-Instruct-1.0.0.Q4_K_M.gguf");
        File.WriteAllText(leftover, "partial");
        File.WriteAllText(foreign, "not ours");

        EditProject(project, "Capitals", p => p.Replace("<Quantization Include=\"Q8_0;Q4_K_M\" />", "<Quantization Include=\"Q8_0\" />"));
        var dropped = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["plan", "eval"], dropped.Stages); // one GGUF fewer to score; its results come from the case cache
        Assert.False(File.Exists(q4)); // a dropped quantization does not linger unlisted beside the lock
        Assert.False(File.Exists(leftover));
        Assert.True(File.Exists(foreign));
        Assert.DoesNotContain("Q4_K_M", File.ReadAllText(Output(project, "ertas.lock.json")));

        EditProject(project, "Capitals", p => p.Replace("<Quantization Include=\"Q8_0\" />", "<Quantization Include=\"Q8_0;Q6_K;F32\" />"));
        var added = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["plan", "quantize Q6_K", "quantize F32", "eval"], added.Stages);
        Assert.Equal(q8Time, File.GetLastWriteTimeUtc(q8));
        Assert.True(File.Exists(Output(project, "Capitals-1.0.0.Q6_K.gguf")));
        // F32 is merged straight from base + adapter: an upcast of the F16 intermediate would hold only F16 values.
        using var f32 = new Ertas.Gguf.GgufReader(Output(project, "Capitals-1.0.0.F32.gguf"));
        var weights = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f32.GetTensorBytes(f32.GetTensor("blk.0.attn_q.weight"))).ToArray();
        Assert.Contains(weights, w => (float)(Half)w != w);
    }

    [Fact]
    public void InvalidProperties_AndItems_FailWithTheirErtasCodesAtTheirProjectLines()
    {
        var project = sdk.NewProject("Invalid", "--quantizations Q8_0");
        EditProject(project, "Invalid", p => p
            .Replace("<LoraRank>16</LoraRank>", "<LoraRank>sixteen</LoraRank>")
            .Replace("<ModelVersion>1.0.0</ModelVersion>", "<ModelVersion>1.0</ModelVersion>")
            .Replace("<Quantization Include=\"Q8_0\" />", "<Quantization Include=\"Q8_0;Q9_Z\" />"));
        var lines = File.ReadAllLines(Path.Combine(project, "Invalid.ertasproj"));
        int LineOf(string text) => Array.FindIndex(lines, l => l.Contains(text, StringComparison.Ordinal)) + 1;

        var result = sdk.Dotnet(project, "build");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Empty(result.Stages);
        var file = Regex.Escape(Path.Combine(project, "Invalid.ertasproj"));
        Assert.Matches($@"{file}\({LineOf("<LoraRank>")},5\): error ERTAS8001: LoraRank 'sixteen' must be an integer", result.Output);
        Assert.Matches($@"{file}\({LineOf("<ModelVersion>")},5\): error ERTAS8001: ModelVersion '1.0' is not a semantic version", result.Output);
        Assert.Matches($@"{file}\({LineOf("Q9_Z")},5\): error ERTAS8002: unknown Quantization 'Q9_Z'", result.Output);
    }

    [Fact]
    public void DatasetProblems_AreErrorsAtTheirFileAndLine_AndNothingTrains()
    {
        var project = sdk.NewProject("BadData", "--quantizations Q8_0");
        var data = Path.Combine(project, "data", "train.jsonl");
        var lineCount = File.ReadAllLines(data).Length;
        File.AppendAllText(data, "{\"messages\": [\n" + """{"messages":[{"role":"assistant","content":"I answer first."}]}""" + "\n");

        var result = sdk.Dotnet(project, "build");
        Assert.NotEqual(0, result.ExitCode);
        Assert.DoesNotContain("train", result.Stages);
        Assert.Matches($@"{Regex.Escape(data)}\({lineCount + 1},\d+\): error ERTAS6001: ", result.Output);
        Assert.Matches($@"{Regex.Escape(data)}\({lineCount + 2},\d+\): error ERTAS60\d\d: ", result.Output);
    }

    [Fact]
    public void TwoCleanBuilds_GiveIdenticalGgufAndLockBytes_AndCleanRemovesTheOutputs()
    {
        // The first clean build is the shared one; the second runs in another folder, after dotnet clean.
        var (original, _) = sdk.BuiltProject;
        var project = sdk.CopyOfBuiltProject();
        var files = new[] { "Capitals-1.0.0.Q8_0.gguf", "Capitals-1.0.0.Q4_K_M.gguf", "Capitals-1.0.0.lora.gguf", "Capitals-1.0.0.base.Q8_0.gguf", "ertas.lock.json", "Modelfile", "Modelfile.adapter" };

        var foreign = Output(project, "Other-1.0.0.Q8_0.gguf"); // another project's model in the same folder
        File.WriteAllText(foreign, "not ours");
        sdk.Dotnet(project, "clean").EnsureSuccess();
        Assert.All(files, f => Assert.False(File.Exists(Output(project, f)), f + " survived dotnet clean"));
        Assert.True(File.Exists(foreign));
        Assert.False(Directory.Exists(Path.Combine(project, "obj", "ertas")));

        // The eval baselines are committed sources, not outputs: remove them so the rebuild writes them afresh.
        var baselines = new[] { "Capitals.Q8_0.verified.json", "Capitals.Q4_K_M.verified.json" };
        foreach (var baseline in baselines)
            File.Delete(Path.Combine(project, "evals", baseline));
        var rebuilt = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(FullPipeline, rebuilt.Stages);
        Assert.All(files, f => Assert.True(File.ReadAllBytes(Output(original, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Output(project, f))),
            f + " differs between clean builds"));
        Assert.All(baselines, f => Assert.True(File.ReadAllBytes(Path.Combine(original, "evals", f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(project, "evals", f))),
            f + " differs between clean builds"));
    }

    [Fact]
    public void AHuggingFaceFolderBase_IsKeyedByItsContentsNotItsPath_AndItsModelFilesAreLockInputs()
    {
        // The built project's tiny base is a Hugging Face folder like any other; use a copy of it as a local checkpoint.
        var (built, _) = sdk.BuiltProject;
        var models = Path.Combine(sdk.Work, "models-" + Guid.NewGuid().ToString("N")[..6]);
        var first = Path.Combine(models, "mistral-a");
        Directory.CreateDirectory(first);
        foreach (var file in Directory.GetFiles(Path.Combine(built, "obj", "ertas", "base-tiny")))
            File.Copy(file, Path.Combine(first, Path.GetFileName(file)));
        // Official Mistral repositories ship their own format beside the HF shards; nothing reads it.
        File.WriteAllText(Path.Combine(first, "consolidated.safetensors"), "not a model this build reads");

        var project = sdk.NewProject("FromFolder", $"--base-model {first} --quantizations Q8_0");
        EditProject(project, "FromFolder", p => p.Replace("<Epochs>3</Epochs>", "<MaxSteps>2</MaxSteps>"));
        var result = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["plan", "train", "merge", "quantize Q8_0", "adapter-gguf", "base-gguf", "eval"], result.Stages);

        using (var lockJson = JsonDocument.Parse(File.ReadAllBytes(Output(project, "ertas.lock.json"))))
        {
            var baseInputs = lockJson.RootElement.GetProperty("inputs").EnumerateArray()
                .Where(i => i.GetProperty("role").GetString() == "BaseModel").Select(i => Path.GetFileName(i.GetProperty("path").GetString()!)).ToList();
            Assert.Contains("model.safetensors", baseInputs);
            Assert.Contains("config.json", baseInputs);
            Assert.Contains("tokenizer.model", baseInputs);
            Assert.DoesNotContain("consolidated.safetensors", baseInputs);
            Assert.Equal(first, lockJson.RootElement.GetProperty("settings").GetProperty("BaseModel").GetString());
        }

        var moved = Path.Combine(models, "mistral-b");
        Directory.Move(first, moved);
        EditProject(project, "FromFolder", p => p.Replace(first, moved));
        Assert.Empty(sdk.Dotnet(project, "build").EnsureSuccess().Stages);
    }

    [Fact]
    public void TemplateOptions_SetTheBaseModelAndQuantizations()
    {
        var project = sdk.NewProject("Options", "--base-model /models/mistral-7b --quantizations \"Q5_K_M;F16\"");
        var text = File.ReadAllText(Path.Combine(project, "Options.ertasproj"));
        Assert.Contains($"<Project Sdk=\"Ertas.Build.Sdk/{sdk.Version}\">", text);
        Assert.Contains("<BaseModel>/models/mistral-7b</BaseModel>", text);
        Assert.Contains("<Quantization Include=\"Q5_K_M;F16\" />", text);
        Assert.True(File.Exists(Path.Combine(project, "data", "train.jsonl")));
        Assert.True(File.Exists(Path.Combine(project, "README.md")));
    }

    [Fact]
    public void GraphBuild_OfASolutionWithTwoErtasProjects_BuildsBothInParallel_AndASecondBuildRunsNoHeavyStage()
    {
        var alpha = sdk.NewProject("Alpha", "--quantizations Q8_0");
        var beta = sdk.NewProject("Beta", "--quantizations Q4_K_M");
        foreach (var (project, name) in new[] { (alpha, "Alpha"), (beta, "Beta") })
            EditProject(project, name, p => p.Replace("<Epochs>3</Epochs>", "<MaxSteps>4</MaxSteps>"));
        var solution = Path.Combine(sdk.Work, "solution-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(solution);
        sdk.Run(solution, "dotnet", "new sln -n Models --format slnx", 120).EnsureSuccess();
        // As a user adds them: `dotnet sln add` needs the project type the SDK declares.
        sdk.Run(solution, "dotnet", $"sln Models.slnx add {Path.Combine(alpha, "Alpha.ertasproj")} {Path.Combine(beta, "Beta.ertasproj")}", 120)
            .EnsureSuccess();

        var built = sdk.Dotnet(solution, "build Models.slnx", "-graph -m").EnsureSuccess();
        Assert.Equal(2, built.Stages.Count(s => s == "train"));
        Assert.Equal(2, built.Stages.Count(s => s == "merge"));
        Assert.Equal(["quantize Q4_K_M", "quantize Q8_0"], built.Stages.Where(s => s.StartsWith("quantize", StringComparison.Ordinal)).Order());
        foreach (var gguf in new[] { Output(alpha, "Alpha-1.0.0.Q8_0.gguf"), Output(beta, "Beta-1.0.0.Q4_K_M.gguf") })
        {
            using var model = LlamaCppModel.Load(gguf, contextSize: 64);
            Assert.Equal(Path.GetFileName(gguf).Split('-')[0], model.Metadata("general.name"));
        }

        Assert.Empty(sdk.Dotnet(solution, "build Models.slnx", "-graph -m").EnsureSuccess().Stages);
    }

    [Fact]
    public void CtrlC_DuringTraining_StopsTheEngineProcessTree_AndLeavesNoAdapterOrModel()
    {
        // A retrain of a built project: its earlier adapter and done stamp must not survive the interrupted run.
        var project = sdk.CopyOfBuiltProject();
        var done = Path.Combine(project, "obj", "ertas", "keys", "train.done");
        Assert.True(File.Exists(done));
        EditProject(project, "Capitals", p => p.Replace("<Epochs>3</Epochs>", "<MaxSteps>1000000</MaxSteps>"));
        var engine = Path.Combine(project, "obj", "ertas", "engine", "cpu", "ertas.dll");

        using var build = sdk.StartDotnet(project, "build");
        Assert.True(build.WaitForOutput(o => Regex.IsMatch(o, @"step \d+/1000000 loss"), TimeSpan.FromMinutes(5)),
            "training never reported a step:\n" + build.OutputSoFar);
        var trainers = EngineProcesses(engine, "train");
        Assert.NotEmpty(trainers);

        var result = build.Interrupt(TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, result.ExitCode);
        // The task kills the engine's whole tree; give init a moment to reap it.
        for (var i = 0; i < 50 && EngineProcesses(engine, "").Count > 0; i++)
            Thread.Sleep(100);
        Assert.Empty(EngineProcesses(engine, ""));
        Assert.All(trainers, pid => Assert.False(Directory.Exists($"/proc/{pid}") && File.ReadAllText($"/proc/{pid}/cmdline").Length > 0,
            $"engine process {pid} outlived the build"));

        var adapter = Path.Combine(project, "obj", "ertas", "adapter");
        Assert.False(Directory.Exists(adapter) && Directory.EnumerateFiles(adapter, "*.safetensors", SearchOption.AllDirectories).Any(),
            "an interrupted training left an adapter a later build could trust");
        Assert.False(File.Exists(done), "the interrupted stage was still marked done");
    }

    [Fact]
    public void AnInterruptedTraining_WithCheckpoints_ResumesOnTheNextBuild_AndGivesTheUninterruptedModel()
    {
        string NewResumableProject()
        {
            var created = sdk.NewProject("Resumable", "--quantizations Q8_0");
            EditProject(created, "Resumable", p => p.Replace("<Epochs>3</Epochs>", "<MaxSteps>60</MaxSteps>\n    <ErtasCheckpointEvery>5</ErtasCheckpointEvery>"));
            return created;
        }
        var uninterrupted = NewResumableProject();
        sdk.Dotnet(uninterrupted, "build").EnsureSuccess();

        var project = NewResumableProject();
        var checkpoints = Path.Combine(project, "obj", "ertas", "adapter", "checkpoints");
        using (var build = sdk.StartDotnet(project, "build"))
        {
            Assert.True(build.WaitForOutput(_ => Directory.Exists(checkpoints)
                && Directory.EnumerateFiles(checkpoints, "checkpoint.json", SearchOption.AllDirectories).Any(), TimeSpan.FromMinutes(5)),
                "no checkpoint was written:\n" + build.OutputSoFar);
            var interrupted = build.Interrupt(TimeSpan.FromSeconds(60));
            Assert.NotEqual(0, interrupted.ExitCode);
            Assert.DoesNotMatch(@"step 60/60 loss", interrupted.Output);
        }

        var resumed = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Matches(@"train: resumed from step \d+ of 60", resumed.Output);
        Assert.Equal(["train", "merge", "quantize Q8_0", "adapter-gguf", "base-gguf", "eval"], resumed.Stages);
        Assert.False(Directory.Exists(checkpoints), "a finished training keeps no checkpoints");
        foreach (var file in new[] { "Resumable-1.0.0.Q8_0.gguf", "Resumable-1.0.0.lora.gguf" })
            Assert.True(File.ReadAllBytes(Output(uninterrupted, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Output(project, file))),
                file + " differs from the uninterrupted build's");
    }

    [Fact]
    public void TheTorchRuntimePackage_IsTheCpuBuild_UnlessTheProjectTrainsOnCuda()
    {
        var project = sdk.NewProject("Runtimes", "--quantizations Q8_0");
        string Runtime(string properties)
        {
            var result = sdk.Run(project, "dotnet", $"msbuild Runtimes.ertasproj -nologo -getItem:PackageReference {properties}", 120).EnsureSuccess();
            using var json = JsonDocument.Parse(result.Output);
            var references = json.RootElement.GetProperty("Items").GetProperty("PackageReference").EnumerateArray()
                .Select(r => r.GetProperty("Identity").GetString() + "/" + r.GetProperty("Version").GetString()).ToList();
            Assert.Contains(references, r => r.StartsWith("Ertas.Build.Engine/", StringComparison.Ordinal));
            return Assert.Single(references, r => r.StartsWith("libtorch-", StringComparison.Ordinal));
        }
        var os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
        var rid = $"{os}-{System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant()}";
        Assert.Equal($"libtorch-cpu-{rid}/2.10.0", Runtime(""));
        Assert.Equal($"libtorch-cuda-12.8-{rid}/2.10.0", Runtime("-p:ErtasDevice=cuda"));
        Assert.Equal($"libtorch-cuda-12.8-{rid}/2.10.0", Runtime("-p:ErtasTorchRuntime=cuda"));
    }

    /// <summary>Live processes running this project's engine (<c>dotnet .../ertas.dll VERB ...</c>), from /proc.</summary>
    private static List<int> EngineProcesses(string engineDll, string verb)
    {
        var found = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string[] arguments;
            try { arguments = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0'); }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            var at = Array.IndexOf(arguments, engineDll);
            if (at >= 0 && (verb.Length == 0 || (at + 1 < arguments.Length && arguments[at + 1] == verb)))
                found.Add(pid);
        }
        return found;
    }

    private static void EditProject(string project, string name, Func<string, string> edit)
    {
        var path = Path.Combine(project, name + ".ertasproj");
        var before = File.ReadAllText(path);
        var after = edit(before);
        Assert.NotEqual(before, after);
        File.WriteAllText(path, after);
    }

    private static string TrainKey(string project)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Output(project, "ertas.lock.json")));
        return doc.RootElement.GetProperty("trainKey").GetString()!;
    }

    private static string Sha256(string path) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)));
}
