using System.Text.Json;
using Ertas.Mistral.Templates;
using Ertas.Modeling;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

[CollectionDefinition(Name)]
public sealed class TrainingCollection : ICollectionFixture<TrainingFixture>
{
    public const string Name = "training";
}

[Collection(TrainingCollection.Name)]
public sealed class TrainerTests(TrainingFixture fixture)
{
    private static TrainingOptions LearningOptions => Adapters.MergeFixture.LearningOptions;

    [Fact]
    public void Run_SameSeedTwice_GivesByteIdenticalAdapters_AndAPeftFolder()
    {
        // Dropout and checkpointing on: both must replay the same random numbers.
        var options = LearningOptions with { MaxSteps = 3, Dropout = 0.1, GradientCheckpointing = true, GradientAccumulation = 2, BaseModelName = "tiny-base" };
        var firstOut = fixture.NewFolder("run1");
        var secondOut = fixture.NewFolder("run2");
        Trainer.Run(fixture.BaseFolder, fixture.Data, firstOut, options, new ListProgressSink());
        Trainer.Run(fixture.BaseFolder, fixture.Data, secondOut, options, new ListProgressSink());

        var firstBytes = File.ReadAllBytes(Path.Combine(firstOut, Trainer.AdapterWeightsFile));
        Assert.Equal(firstBytes, File.ReadAllBytes(Path.Combine(secondOut, Trainer.AdapterWeightsFile)));

        using var adapter = Ertas.Mistral.Checkpoints.SafeTensorsFile.Open(Path.Combine(firstOut, Trainer.AdapterWeightsFile));
        Assert.Equal(2 * 7 * 2, adapter.TensorNames.Count); // 2 layers x 7 projections x (A, B)
        var a = adapter.GetInfo("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
        var b = adapter.GetInfo("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
        Assert.Equal([8L, 128], a.Shape);
        Assert.Equal([128L, 8], b.Shape);
        Assert.Equal(Ertas.Mistral.DType.F32, a.DType);

        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(firstOut, Trainer.AdapterConfigFile)));
        var root = config.RootElement;
        Assert.Equal("LORA", root.GetProperty("peft_type").GetString());
        Assert.Equal("CAUSAL_LM", root.GetProperty("task_type").GetString());
        Assert.Equal(8, root.GetProperty("r").GetInt32());
        Assert.Equal(16, root.GetProperty("lora_alpha").GetDouble());
        Assert.Equal(0.1, root.GetProperty("lora_dropout").GetDouble());
        Assert.Equal("none", root.GetProperty("bias").GetString());
        Assert.False(root.GetProperty("fan_in_fan_out").GetBoolean());
        Assert.True(root.GetProperty("inference_mode").GetBoolean());
        Assert.Equal("tiny-base", root.GetProperty("base_model_name_or_path").GetString());
        Assert.Equal(LoraOptions.AllProjections.Order(StringComparer.Ordinal),
            root.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()));

        var metrics = File.ReadAllLines(Path.Combine(firstOut, Trainer.MetricsFile));
        Assert.Equal(3, metrics.Length);
        using var line = JsonDocument.Parse(metrics[2]);
        Assert.Equal(3, line.RootElement.GetProperty("step").GetInt32());
        Assert.True(line.RootElement.GetProperty("loss").GetDouble() > 0);
    }

    [Fact]
    public void Train_ChangesOnlyLoraParameters()
    {
        using var trainer = Trainer.Load(fixture.BaseFolder, LearningOptions with { MaxSteps = 2, QuantizeBase = false });
        var before = trainer.Model.named_parameters().ToDictionary(p => p.name, p => Tensors.Values(p.parameter));
        var frozenNames = before.Keys.Where(n => !LoraInjection.IsLoraParameter(n)).ToList();
        Assert.All(trainer.Model.named_parameters(), p => Assert.Equal(LoraInjection.IsLoraParameter(p.name), p.parameter.requires_grad));

        trainer.Train(fixture.Data.Train, fixture.Data.Eval, new ListProgressSink());

        var after = trainer.Model.named_parameters().ToDictionary(p => p.name, p => Tensors.Values(p.parameter));
        Assert.NotEmpty(frozenNames);
        Assert.All(frozenNames, n => Assert.Equal(before[n], after[n]));
        Assert.Contains(before.Keys.Where(LoraInjection.IsLoraParameter), n => !before[n].SequenceEqual(after[n]));
        foreach (var target in trainer.Targets)
            Assert.Equal(Tensors.Values(target.Module.BaseWeight(ScalarType.Float32)),
                Tensors.Values(LoadPlain(target.Name)));
    }

    private Tensor LoadPlain(string moduleName)
    {
        using var checkpoint = Ertas.Mistral.Checkpoints.HfCheckpoint.Open(fixture.BaseFolder);
        using var model = MistralModel.Load(checkpoint.Config, checkpoint);
        return model.named_parameters().Single(p => p.name == moduleName + ".weight").parameter.detach().clone();
    }
}
