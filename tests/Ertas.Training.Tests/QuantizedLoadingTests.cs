using Ertas.Mistral.Checkpoints;
using Ertas.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

/// <summary>The streaming QLoRA loader (what <see cref="Trainer.Load"/> uses) against the full load followed by
/// <see cref="LoraInjection.Inject"/>: same NF4 bytes, same LoRA init, same logits, same trained adapter bytes.</summary>
[Collection(TrainingCollection.Name)]
public sealed class QuantizedLoadingTests(TrainingFixture fixture)
{
    private static TrainingOptions Options(ComputePrecision compute) => new()
    {
        Rank = 4,
        Alpha = 8,
        Dropout = 0.1,
        LearningRate = 1e-2,
        MaxSteps = 2,
        BatchSize = 2,
        GradientCheckpointing = true,
        SequenceLength = TrainingFixture.SequenceLength,
        Compute = compute,
        Seed = 11,
        BaseModelName = "tiny-base",
    };

    /// <summary>The path Trainer.Load took before streaming: the whole model loaded, then quantized and wrapped.</summary>
    private Trainer LoadWhole(TrainingOptions options)
    {
        using var checkpoint = HfCheckpoint.Open(fixture.BaseFolder);
        var model = MistralModel.Load(checkpoint.Config, checkpoint, new ModelOptions { DType = options.DType });
        return Trainer.FromModel(model, options, options.BaseModelName!);
    }

    [Theory]
    [InlineData(ComputePrecision.F32)]
    [InlineData(ComputePrecision.BF16)]
    public void StreamingLoad_GivesTheWholeLoadsWeightsLogitsAndTrainedAdapterBytes(ComputePrecision compute)
    {
        var options = Options(compute);
        using var whole = LoadWhole(options);
        using var streamed = Trainer.Load(fixture.BaseFolder, options);

        Assert.Equal(whole.Targets.Select(t => t.Name), streamed.Targets.Select(t => t.Name));
        foreach (var (a, b) in whole.Targets.Zip(streamed.Targets))
        {
            var (qa, qb) = (a.Module.QuantizedBase!, b.Module.QuantizedBase!);
            Assert.True(Tensors.BitEqual(qa.PackedCodes.to(ScalarType.Float32), qb.PackedCodes.to(ScalarType.Float32)), a.Name);
            Assert.True(Tensors.BitEqual(qa.QuantizedAbsmax.to(ScalarType.Float32), qb.QuantizedAbsmax.to(ScalarType.Float32)), a.Name);
            Assert.True(Tensors.BitEqual(qa.AbsmaxScales, qb.AbsmaxScales), a.Name);
            Assert.Equal(qa.AbsmaxOffset, qb.AbsmaxOffset);
            Assert.True(Tensors.BitEqual(a.Module.lora_A.weight, b.Module.lora_A.weight), a.Name + " lora_A init");
        }
        Assert.Equal(whole.Model.named_parameters().Select(p => (p.name, p.parameter.requires_grad)),
            streamed.Model.named_parameters().Select(p => (p.name, p.parameter.requires_grad)));
        foreach (var ((name, pa), (_, pb)) in whole.Model.named_parameters().Zip(streamed.Model.named_parameters()))
            Assert.True(Tensors.BitEqual(pa, pb), name);

        using (no_grad())
        {
            var row = fixture.Data.Train.Row(0);
            using var ids = tensor(row.InputIds.ToArray().Select(i => (long)i).ToArray(), [1, row.InputIds.Length]);
            whole.Model.eval();
            streamed.Model.eval();
            using var logitsWhole = whole.Model.forward(ids);
            using var logitsStreamed = streamed.Model.forward(ids);
            Assert.True(Tensors.BitEqual(logitsWhole, logitsStreamed), "logits");
        }

        // Two steps with dropout and checkpointing (both replay torch's default generator), then the adapter files.
        whole.Train(fixture.Data.Train, fixture.Data.Eval, new ListProgressSink());
        streamed.Train(fixture.Data.Train, fixture.Data.Eval, new ListProgressSink());
        var (outWhole, outStreamed) = (fixture.NewFolder("whole"), fixture.NewFolder("streamed"));
        whole.SaveAdapter(outWhole);
        streamed.SaveAdapter(outStreamed);
        var bytes = File.ReadAllBytes(Path.Combine(outWhole, Trainer.AdapterWeightsFile));
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(outStreamed, Trainer.AdapterWeightsFile)));
        // Trained: B left zero would make the comparison vacuous.
        Assert.Contains(streamed.Targets, t => t.Module.lora_B.weight.abs().max().item<float>() > 0);
    }

    [Fact]
    public void StreamingLoad_TargetThatMatchesNothing_IsAnErtasError()
    {
        var options = Options(ComputePrecision.F32) with { TargetModules = ["q_proj", "qkv_proj"] };
        var error = Assert.Throws<Ertas.Core.ErtasException>(() => Trainer.Load(fixture.BaseFolder, options));
        Assert.Contains("qkv_proj", error.Message);
    }
}
