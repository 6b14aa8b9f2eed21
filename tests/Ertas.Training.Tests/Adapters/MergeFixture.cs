using System.Diagnostics;
using Ertas.Cli;
using Ertas.Core;
using Ertas.Mistral.Templates;
using Ertas.Modeling;
using static TorchSharp.torch;

namespace Ertas.Training.Tests.Adapters;

/// <summary>
/// Trains the tiny base on the 16 capitals once (QLoRA, the settings that make it answer), saves the PEFT adapter,
/// and produces through the CLI every file the merge and adapter tests judge: the base as F32 GGUF, the adapter as
/// GGUF, the merge as Q8_0 GGUF (NF4 base, as trained), as F32 GGUF over the exact base, and as an HF folder. The
/// trainer stays loaded as the in-memory reference.
/// </summary>
public sealed class MergeFixture : IDisposable
{
    public static TrainingOptions LearningOptions => new()
    {
        Rank = 8,
        Alpha = 16,
        Dropout = 0,
        LearningRate = 1e-2,
        Scheduler = LrSchedulerKind.Cosine,
        WarmupSteps = 5,
        MaxSteps = 120,
        BatchSize = 2,
        SequenceLength = TrainingFixture.SequenceLength,
        Seed = 7,
    };

    public MergeFixture()
    {
        Data = new TrainingFixture();
        var clock = Stopwatch.StartNew();
        Trainer = Trainer.Load(Data.BaseFolder, LearningOptions);
        var progress = new ListProgressSink();
        Result = Trainer.Train(Data.Data.Train, Data.Data.Eval, progress);
        ProgressLines = progress.Lines;
        Timings.Add($"train {LearningOptions.MaxSteps} steps ({Data.Data.Train.RowCount} rows of {TrainingFixture.SequenceLength}): {clock.Elapsed.TotalSeconds:F1} s");
        AdapterFolder = Data.NewFolder("adapter");
        Trainer.SaveAdapter(AdapterFolder);

        var files = Data.NewFolder("files");
        BaseF32Gguf = Path.Combine(files, "base-f32.gguf");
        AdapterGguf = Path.Combine(files, "adapter.gguf");
        MergedQ8Gguf = Path.Combine(files, "merged-q8_0.gguf");
        MergedExactF32Gguf = Path.Combine(files, "merged-exact-f32.gguf");
        MergedHfFolder = Path.Combine(files, "merged-hf");
        Cli("export base F32", "export", "--model", Data.BaseFolder, "--out", BaseF32Gguf, "--type", "f32");
        Cli("adapter export", "adapter", "export", "--model", Data.BaseFolder, "--adapter", AdapterFolder, "--out", AdapterGguf);
        Cli("merge Q8_0 (nf4 base)", "merge", "--model", Data.BaseFolder, "--adapter", AdapterFolder, "--out", MergedQ8Gguf,
            "--type", "q8_0", "--name", "capitals", "--version", "1.2.0-rc.1");
        Cli("merge F32 (exact base)", "merge", "--model", Data.BaseFolder, "--adapter", AdapterFolder, "--out", MergedExactF32Gguf,
            "--type", "f32", "--base-weights", "exact");
        Cli("merge HF (nf4 base)", "merge", "--model", Data.BaseFolder, "--adapter", AdapterFolder, "--format", "hf", "--out", MergedHfFolder);

        var template = ChatTemplates.Get(ChatTemplates.MistralV1Name);
        Prompts = [.. TrainingFixture.Pairs.Select(p => template.Encode(Data.Tokenizer,
            [new ChatMessage(ChatMessage.User, TrainingFixture.Question(p.Country))], addGenerationPrompt: true).Ids.ToArray())];
        Expected = [.. TrainingFixture.Pairs.Select(p => TrainingFixture.Answer(p.Country, p.Capital))];
        using (no_grad())
            TrainerAnswers = [.. Prompts.Select(prompt =>
            {
                var generated = new Ertas.Modeling.Generator(Trainer.Model).Generate(prompt, new GenerationOptions { MaxNewTokens = MaxNewTokens, EosTokenId = Data.Tokenizer.EosId });
                return Decode(generated.TokenIds);
            })];
    }

    public const int MaxNewTokens = 24;

    public TrainingFixture Data { get; }
    public Trainer Trainer { get; }

    /// <summary>The training run's losses and throughput, and the progress lines it printed.</summary>
    public TrainingResult Result { get; }
    public IReadOnlyList<string> ProgressLines { get; }
    public string AdapterFolder { get; }
    public string BaseF32Gguf { get; }
    public string AdapterGguf { get; }
    public string MergedQ8Gguf { get; }
    public string MergedExactF32Gguf { get; }
    public string MergedHfFolder { get; }

    /// <summary>Each training question as Mistral v1 chat ids (<c>&lt;s&gt;[INST] question [/INST]</c>), built by our template.</summary>
    public IReadOnlyList<int[]> Prompts { get; }
    public IReadOnlyList<string> Expected { get; }

    /// <summary>What the trained in-memory model answers greedily (the reference the files must reproduce).</summary>
    public IReadOnlyList<string> TrainerAnswers { get; }

    /// <summary>Wall times of the steps above, for the test output.</summary>
    public List<string> Timings { get; } = [];

    public string Decode(IEnumerable<int> ids) => Data.Tokenizer.Decode(ids.Where(id => id != Data.Tokenizer.EosId)).Trim();

    public (int ExitCode, string Stdout, string Stderr) RunCli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private void Cli(string what, params string[] args)
    {
        var clock = Stopwatch.StartNew();
        var (code, _, stderr) = RunCli(args);
        if (code != 0)
            throw new InvalidOperationException($"ertas {string.Join(' ', args)} failed ({code}):\n{stderr}");
        var output = args[Array.IndexOf(args, "--out") + 1];
        var bytes = File.Exists(output) ? new FileInfo(output).Length : Directory.EnumerateFiles(output).Sum(f => new FileInfo(f).Length);
        Timings.Add($"{what}: {clock.Elapsed.TotalSeconds:F2} s, {bytes / 1e6:F2} MB");
    }

    public void Dispose()
    {
        Trainer.Dispose();
        Data.Dispose();
    }
}
