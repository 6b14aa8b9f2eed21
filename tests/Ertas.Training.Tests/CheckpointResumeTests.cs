using System.Diagnostics;
using System.Text.Json;
using Ertas.Core;
using Xunit.Abstractions;

namespace Ertas.Training.Tests;

[Collection(TrainingCollection.Name)]
public sealed class CheckpointResumeTests(TrainingFixture fixture, ITestOutputHelper output)
{
    // Dropout on (the RNG state matters), accumulation over two micro-batches, warmup then cosine decay.
    private static TrainingOptions ResumableOptions => new()
    {
        Rank = 8,
        Alpha = 16,
        Dropout = 0.1,
        LearningRate = 1e-2,
        WarmupSteps = 1,
        MaxSteps = 6,
        BatchSize = 2,
        GradientAccumulation = 2,
        SequenceLength = TrainingFixture.SequenceLength,
        Seed = 7,
        Device = "cpu",
        BaseModelName = "tiny-base",
    };

    private static string Checkpoints(string outFolder) => Path.Combine(outFolder, Trainer.CheckpointsFolder);

    private static string[] StepFolders(string outFolder) =>
        [.. Directory.GetDirectories(Checkpoints(outFolder)).Select(Path.GetFileName).Cast<string>().Order(StringComparer.Ordinal)];

    [Fact]
    public void Resume_AfterCancellingAtStep3_GivesTheUninterruptedRunsAdapterBytes_Metrics_AndLosses()
    {
        var policy = new CheckpointPolicy { Every = 2 };
        var uninterrupted = fixture.NewFolder("whole");
        var clock = Stopwatch.StartNew();
        var reference = Trainer.Run(fixture.BaseFolder, fixture.Data, uninterrupted, ResumableOptions, policy, new ListProgressSink());
        output.WriteLine($"uninterrupted 6 steps: {clock.Elapsed.TotalSeconds:F1} s");

        var interrupted = fixture.NewFolder("interrupted");
        using var cancel = new CancellationTokenSource();
        var cancelAfterStep3 = new CancellingSink(line => line.StartsWith("step 3/6 ", StringComparison.Ordinal), cancel);
        Assert.ThrowsAny<OperationCanceledException>(() =>
            Trainer.Run(fixture.BaseFolder, fixture.Data, interrupted, ResumableOptions, policy, cancelAfterStep3, cancel.Token));
        Assert.Equal(["step-2"], StepFolders(interrupted));
        Assert.False(File.Exists(Path.Combine(interrupted, Trainer.AdapterWeightsFile)));
        Assert.False(File.Exists(Path.Combine(interrupted, Trainer.MetricsFile)));
        var checkpointLine = Assert.Single(cancelAfterStep3.Lines, l => l.StartsWith("checkpoint: step 2 ", StringComparison.Ordinal));
        output.WriteLine(checkpointLine);

        var progress = new ListProgressSink();
        clock.Restart();
        var resumed = Trainer.Run(fixture.BaseFolder, fixture.Data, interrupted, ResumableOptions, policy with { Resume = "latest" }, progress);
        output.WriteLine($"resumed 4 steps: {clock.Elapsed.TotalSeconds:F1} s");

        Assert.Contains(progress.Lines, l => l.StartsWith("train: resumed from step 2 of 6", StringComparison.Ordinal));
        Assert.StartsWith("step 3/6 ", progress.Lines.First(l => l.StartsWith("step ", StringComparison.Ordinal)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(uninterrupted, Trainer.AdapterWeightsFile)),
            File.ReadAllBytes(Path.Combine(interrupted, Trainer.AdapterWeightsFile)));
        Assert.Equal(reference.StepLosses, resumed.StepLosses);
        Assert.Equal(6, resumed.StepLosses.Count);
        Assert.Equal(reference.TrainedTokens, resumed.TrainedTokens);

        // metrics.jsonl restarts from the checkpoint's lines: six lines, the same steps and losses as the whole run.
        var whole = File.ReadAllLines(Path.Combine(uninterrupted, Trainer.MetricsFile));
        var joined = File.ReadAllLines(Path.Combine(interrupted, Trainer.MetricsFile));
        Assert.Equal(6, joined.Length);
        Assert.Equal(whole.Select(StepAndLoss), joined.Select(StepAndLoss));

        // The last two checkpoints stay (step 6 is the final adapter, not a checkpoint); each is a full adapter folder.
        Assert.Equal(["step-2", "step-4"], StepFolders(uninterrupted));
        Assert.Equal(["step-2", "step-4"], StepFolders(interrupted));
        foreach (var file in TrainingCheckpoint.RequiredFiles.Append(TrainingCheckpoint.ManifestFile))
            Assert.True(File.Exists(Path.Combine(Checkpoints(interrupted), "step-4", file)), file);
        Assert.Equal(File.ReadAllBytes(Path.Combine(Checkpoints(uninterrupted), "step-4", Trainer.AdapterWeightsFile)),
            File.ReadAllBytes(Path.Combine(Checkpoints(interrupted), "step-4", Trainer.AdapterWeightsFile)));
        var manifest = TrainingCheckpoint.Read(Path.Combine(Checkpoints(interrupted), "step-4")).Manifest;
        Assert.Equal(4, manifest.Step);
        Assert.Equal(6, manifest.TotalSteps);
        Assert.Equal(4, manifest.OptimizerStep);
        Assert.Equal(4, manifest.DataPosition);
        Assert.Equal(TrainingCheckpoint.HashData(fixture.Data.Train, fixture.Data.Eval), manifest.DataHash);
        Assert.Equal("0.01", manifest.Options["lr"]);

        // loss.svg: one polyline point per step.
        var svg = System.Xml.Linq.XDocument.Parse(File.ReadAllText(Path.Combine(interrupted, Trainer.LossCurveFile)));
        var polyline = svg.Descendants().Single(e => e.Name.LocalName == "polyline");
        Assert.Equal(6, polyline.Attribute("points")!.Value.Split(' ').Length);
    }

    [Fact]
    public async Task Resume_AfterKillingTheErtasProcess_GivesTheUninterruptedRunsAdapterBytes()
    {
        var ertas = Path.Combine(AppContext.BaseDirectory, "ertas.dll");
        Assert.True(File.Exists(ertas), $"the CLI is not next to the tests: {ertas}");
        string[] Args(string outFolder) =>
        [
            "train", "--model", fixture.BaseFolder, "--data", fixture.DataFile, "--out", outFolder, "--seq-len", "128",
            "--max-steps", "30", "--checkpoint-every", "2", "--dropout", "0.1", "--grad-accum", "2", "--batch-size", "2",
            "--rank", "8", "--lr", "1e-2", "--warmup-steps", "1", "--seed", "7", "--device", "cpu",
        ];

        var killed = fixture.NewFolder("killed");
        var clock = Stopwatch.StartNew();
        using (var child = StartErtas(ertas, Args(killed)))
        {
            child.ErrorDataReceived += (_, _) => { }; // drained so a full pipe never blocks the child
            child.BeginErrorReadLine();
            // Any complete checkpoint will do: older ones are deleted as newer ones come (keep 2), and on a loaded
            // machine this loop may not look in while a particular one exists.
            bool AnyCheckpoint() => Directory.Exists(Checkpoints(killed))
                && Directory.EnumerateFiles(Checkpoints(killed), TrainingCheckpoint.ManifestFile, SearchOption.AllDirectories).Any();
            while (!AnyCheckpoint() && !child.HasExited && clock.Elapsed < TimeSpan.FromSeconds(90))
                await Task.Delay(10);
            Assert.False(child.HasExited, "ertas train finished or failed before the first checkpoint appeared");
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }
        output.WriteLine($"killed after {clock.Elapsed.TotalSeconds:F1} s; checkpoints: {string.Join(", ", StepFolders(killed))}");
        Assert.False(File.Exists(Path.Combine(killed, Trainer.AdapterWeightsFile)), "the kill came after the run finished");

        clock.Restart();
        using (var resumed = StartErtas(ertas, [.. Args(killed), "--resume", "latest"]))
        {
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            var log = await resumed.StandardError.ReadToEndAsync(limit.Token);
            await resumed.WaitForExitAsync(limit.Token);
            output.WriteLine(log);
            Assert.True(resumed.ExitCode == 0, log);
            Assert.Contains("train: resumed from step ", log);
        }
        output.WriteLine($"resumed run: {clock.Elapsed.TotalSeconds:F1} s");

        var whole = fixture.NewFolder("whole-cli");
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        Assert.True(Ertas.Cli.CliApp.Run(Args(whole), stdout, stderr) == 0, stderr.ToString());
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, Trainer.AdapterWeightsFile)),
            File.ReadAllBytes(Path.Combine(killed, Trainer.AdapterWeightsFile)));
        Assert.Equal(30, File.ReadAllLines(Path.Combine(killed, Trainer.MetricsFile)).Length);
    }

    [Fact]
    public void Resume_WithOtherSettingsOrData_IsResumeMismatch_AndABrokenCheckpointIsCheckpointInvalid()
    {
        var outFolder = fixture.NewFolder("mismatch");
        var options = ResumableOptions with { MaxSteps = 3 };
        Trainer.Run(fixture.BaseFolder, fixture.Data, outFolder, options, new CheckpointPolicy { Every = 2 }, new ListProgressSink());
        var step2 = Path.Combine(Checkpoints(outFolder), "step-2");
        var resume = new TrainingRunSettings { Checkpoints = new CheckpointPolicy { Resume = step2 } };

        using (var trainer = Trainer.Load(fixture.BaseFolder, options with { LearningRate = 1e-3, Rank = 4 }))
        {
            var e = Assert.Throws<ErtasException>(() => trainer.Train(fixture.Data.Train, fixture.Data.Eval, new ListProgressSink(), resume));
            Assert.Equal(ErrorCode.ResumeMismatch, e.Code);
            Assert.Contains("lr was 0.01, now 0.001", e.Message);
            Assert.Contains("rank was 8, now 4", e.Message);
            Assert.DoesNotContain("seed", e.Message);
        }

        using (var trainer = Trainer.Load(fixture.BaseFolder, options))
        {
            var otherData = Ertas.Data.DatasetPreparer.Prepare([fixture.DataFile], fixture.Tokenizer, null,
                new Ertas.Data.PreparationOptions { SequenceLength = TrainingFixture.SequenceLength, EvalCount = 2 },
                fixture.NewFolder("other-cache"), NullProgressSink.Instance);
            var e = Assert.Throws<ErtasException>(() => trainer.Train(otherData.Train, otherData.Eval, new ListProgressSink(), resume));
            Assert.Equal(ErrorCode.ResumeMismatch, e.Code);
            Assert.Contains("the prepared data differs", e.Message);

            // A flipped byte in the optimizer state, then a missing manifest (a checkpoint cut off mid-write).
            var optimizerFile = Path.Combine(step2, TrainingCheckpoint.OptimizerFile);
            var bytes = File.ReadAllBytes(optimizerFile);
            bytes[^1] ^= 0x40;
            File.WriteAllBytes(optimizerFile, bytes);
            var corrupt = Assert.Throws<ErtasException>(() => trainer.Train(fixture.Data.Train, fixture.Data.Eval, new ListProgressSink(), resume));
            Assert.Equal(ErrorCode.CheckpointInvalid, corrupt.Code);
            Assert.Contains("optimizer.safetensors is corrupt", corrupt.Message);

            File.Delete(Path.Combine(step2, TrainingCheckpoint.ManifestFile));
            var incomplete = Assert.Throws<ErtasException>(() => trainer.Train(fixture.Data.Train, fixture.Data.Eval, new ListProgressSink(), resume));
            Assert.Equal(ErrorCode.CheckpointInvalid, incomplete.Code);
            Assert.Contains("incomplete", incomplete.Message);
            Assert.Null(TrainingCheckpoint.FindLatest(Checkpoints(outFolder))); // 'latest' skips a folder without a manifest
        }
    }

    [Fact]
    public void Checkpoints_KeepOnlyTheNewestK_AndEveryAdapterFolderHasTheSidecar()
    {
        var outFolder = fixture.NewFolder("keep");
        var options = ResumableOptions with { MaxSteps = 4, Dropout = 0, QuantizeBase = false, GradientAccumulation = 1 };
        var progress = new ListProgressSink();
        Trainer.Run(fixture.BaseFolder, fixture.Data, outFolder, options, new CheckpointPolicy { Every = 1, Keep = 1 }, progress);

        Assert.Equal(["step-3"], StepFolders(outFolder));
        Assert.Equal(3, progress.Lines.Count(l => l.StartsWith("checkpoint: ", StringComparison.Ordinal)));
        foreach (var folder in new[] { outFolder, Path.Combine(Checkpoints(outFolder), "step-3") })
        {
            var info = ErtasAdapterInfo.TryRead(folder)!;
            Assert.Equal(1, info.Format);
            Assert.False(info.QuantizeBase);
            Assert.Equal("f32", info.Compute);
            Assert.Equal(8, info.Rank);
            Assert.Equal(16, info.Alpha);
            Assert.Equal(7UL, info.Seed);
            Assert.Equal(LoraOptions.AllProjections.Order(StringComparer.Ordinal), info.TargetModules);
            using var peft = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, Trainer.AdapterConfigFile)));
            Assert.False(peft.RootElement.TryGetProperty("quantize_base", out _)); // adapter_config.json stays PEFT's own
        }
    }

    private static Process StartErtas(string ertasDll, IEnumerable<string> args)
    {
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
        var start = new ProcessStartInfo(dotnet) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(ertasDll);
        foreach (var arg in args) start.ArgumentList.Add(arg);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        return process;
    }

    private static (int Step, double? Loss) StepAndLoss(string metricsLine)
    {
        using var json = JsonDocument.Parse(metricsLine);
        var loss = json.RootElement.GetProperty("loss");
        return (json.RootElement.GetProperty("step").GetInt32(), loss.ValueKind == JsonValueKind.Null ? null : loss.GetDouble());
    }

    /// <summary>Collects lines and cancels the run once a line matches: a stop at a known point of the loop.</summary>
    private sealed class CancellingSink(Func<string, bool> stopAt, CancellationTokenSource cancel) : IProgressSink
    {
        public List<string> Lines { get; } = [];

        public void Report(string line)
        {
            Lines.Add(line);
            if (stopAt(line)) cancel.Cancel();
        }
    }
}
