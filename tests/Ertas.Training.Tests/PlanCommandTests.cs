using System.Text.Json.Nodes;
using Ertas.Cli;
using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral;

namespace Ertas.Training.Tests;

/// <summary><c>ertas plan</c> and <see cref="TrainingMemoryPlanner"/>: sizes equal what the writers write, the
/// memory parts respond to the settings that drive them, and the device and disk checks say what to do.</summary>
[Collection(TrainingCollection.Name)]
public sealed class PlanCommandTests(TrainingFixture fixture)
{
    private static (int Exit, string Out, string Error) Cli(params string[] args)
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var exit = CliApp.Run(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    private JsonObject PlanJson(params string[] extra)
    {
        var (exit, output, error) = Cli(["plan", "--model", fixture.BaseFolder, "--json", .. extra]);
        Assert.True(exit == 0, error);
        return JsonNode.Parse(output)!.AsObject();
    }

    [Fact]
    public void Planned_base_gguf_size_equals_the_file_ertas_export_writes()
    {
        var folder = fixture.NewFolder("plan-export");
        var exported = Path.Combine(folder, "base.gguf");
        Assert.Equal(0, Cli("export", "--model", fixture.BaseFolder, "--out", exported, "--type", "q4_k_m", "--name", "Base").Exit);

        var plan = PlanJson("--name", "M", "--version", "2.0.0", "--quantization", "Q4_K_M", "--base-gguf", "Q4_K_M", "--base-model-name", "Base");

        var outputs = plan["outputs"]!.AsArray().Select(o => (Path: (string)o!["path"]!, Bytes: (long)o["bytes"]!)).ToList();
        Assert.Contains(("M-2.0.0.base.Q4_K_M.gguf", new FileInfo(exported).Length), outputs);
        Assert.Contains(outputs, o => o.Path == "M-2.0.0.Q4_K_M.gguf");
        Assert.Contains(outputs, o => o.Path == "M-2.0.0.lora.gguf");
        Assert.True((long)plan["memory"]!["cpu"]!["peakBytes"]! > 0);
        Assert.True((long)plan["memory"]!["gpu"]!["peakBytes"]! > 0);
    }

    [Fact]
    public void A_cached_dataset_gives_tokens_per_epoch_and_the_trainers_step_count()
    {
        var cache = fixture.NewFolder("plan-cache");
        var tokenizerBytes = File.ReadAllBytes(Path.Combine(fixture.BaseFolder, "tokenizer.model"));
        var prepared = DatasetPreparer.Prepare([fixture.DataFile], fixture.Tokenizer, tokenizerBytes,
            new PreparationOptions { SequenceLength = TrainingFixture.SequenceLength }, cache, NullProgressSink.Instance);

        var plan = PlanJson("--data", fixture.DataFile, "--cache-dir", cache, "--seq-len", "128", "--batch-size", "2", "--grad-accum", "3", "--epochs", "2");

        var dataset = plan["dataset"]!;
        Assert.True((bool)dataset["cached"]!);
        Assert.Equal(prepared.Train.TokenCount, (long)dataset["tokensPerEpoch"]!);
        Assert.Equal(prepared.Train.RowCount, (int)dataset["rows"]!);
        Assert.Equal(Trainer.OptimizerSteps(prepared.Train.RowCount, new TrainingOptions { BatchSize = 2, GradientAccumulation = 3, Epochs = 2 }),
            (long)dataset["steps"]!);
        Assert.False((bool)PlanJson("--data", fixture.DataFile, "--cache-dir", cache, "--seq-len", "64")["dataset"]!["cached"]!);
    }

    [Fact]
    public void A_device_too_small_names_the_settings_to_change_with_their_estimates()
    {
        var settings = new[] { "--seq-len", "2048", "--batch-size", "8" };
        var peak = (long)PlanJson(settings)["memory"]!["gpu"]!["peakBytes"]!;
        var budget = peak - (peak - TrainingMemoryPlanner.CudaRuntimeBytes) / 2;

        var fit = PlanJson([.. settings, "--device-memory", budget.ToString(System.Globalization.CultureInfo.InvariantCulture)])["deviceMemory"]!;

        Assert.False((bool)fit["fits"]!);
        var changes = fit["changes"]!.AsArray();
        Assert.Contains(changes, c => (string)c!["setting"]! == "gradient-checkpointing");
        Assert.Contains(changes, c => (string)c!["setting"]! == "batch-size" && (bool)c["fits"]!);
        Assert.All(changes, c => Assert.True((long)c!["peakBytes"]! < peak));
    }

    [Fact]
    public void Too_little_free_disk_is_ertas8005_at_the_project_before_anything_runs()
    {
        var project = Path.Combine(fixture.NewFolder("plan-disk"), "My.ertasproj");
        var (exit, _, error) = Cli("plan", "--model", fixture.BaseFolder, "--output-dir", Path.GetDirectoryName(project)!, "--check-disk",
            "--free-space", "1MB", "--project", project);

        Assert.NotEqual(0, exit);
        Assert.Contains($"{project}: error ERTAS8005:", error);
        Assert.Equal(0, Cli("plan", "--model", fixture.BaseFolder, "--output-dir", Path.GetDirectoryName(project)!, "--check-disk", "--free-space", "1GiB").Exit);
    }

    [Fact]
    public void Lora_parameters_of_mistral_7b_at_rank_16_on_all_projections_are_41_9_million()
    {
        Assert.Equal(41_943_040, TrainingMemoryPlanner.LoraParameters(MistralConfig.Mistral7B, 16, LoraOptions.AllProjections.ToArray()));
        Assert.Equal(7_241_732_096, TrainingMemoryPlanner.TotalParameters(MistralConfig.Mistral7B));
    }

    [Fact]
    public void Checkpointing_bf16_and_smaller_batches_lower_the_estimate_where_they_should()
    {
        var config = MistralConfig.Mistral7B;
        var baseline = new TrainingOptions { SequenceLength = 2048, BatchSize = 1 };
        var plain = TrainingMemoryPlanner.Estimate(config, baseline, PlanDevice.Cuda);
        var checkpointed = TrainingMemoryPlanner.Estimate(config, baseline with { GradientCheckpointing = true }, PlanDevice.Cuda);
        var bf16 = TrainingMemoryPlanner.Estimate(config, baseline with { Compute = ComputePrecision.BF16 }, PlanDevice.Cuda);

        Assert.True(checkpointed.PeakBytes < plain.PeakBytes);
        Assert.Equal(plain.ActivationBytesWithCheckpointing, checkpointed.ActivationBytesWithCheckpointing);
        long Part(TrainingMemoryEstimate e, string name) => e.Parts.Single(p => p.Name.StartsWith(name, StringComparison.Ordinal)).Bytes;
        Assert.Equal(Part(plain, "embeddings") / 2, Part(bf16, "embeddings"));
        Assert.Equal(Part(plain, "nf4 base"), Part(bf16, "nf4 base"));
        Assert.Equal(Part(plain, "lora weights"), Part(bf16, "lora weights")); // LoRA stays float32
        // NF4 with double quantization: 4 bits + 8 bits per 64 + 32 bits per 64 * 256, about 4.127 bits per weight.
        Assert.InRange(Part(plain, "nf4 base") * 8.0 / TrainingMemoryPlanner.Targets(config, LoraOptions.AllProjections.ToArray()).Sum(t => t.Shape[0] * t.Shape[1]), 4.12, 4.13);
    }

    [Theory]
    [InlineData(10, 1, 1, 1, 0, 10)]
    [InlineData(10, 3, 1, 1, 0, 4)]
    [InlineData(10, 3, 2, 2, 0, 4)]
    [InlineData(10, 2, 3, 1, 0, 2)]
    [InlineData(10, 1, 1, 1, 25, 25)]
    public void Optimizer_steps_count_micro_batches_across_epochs_in_groups_of_the_accumulation(int rows, int batch, int accumulation, int epochs, int maxSteps, long steps) =>
        Assert.Equal(steps, Trainer.OptimizerSteps(rows, new TrainingOptions { BatchSize = batch, GradientAccumulation = accumulation, Epochs = epochs, MaxSteps = maxSteps }));
}
