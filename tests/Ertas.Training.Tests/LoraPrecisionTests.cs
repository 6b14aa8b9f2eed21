using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

[Collection(TrainingCollection.Name)]
public sealed class LoraPrecisionTests(TrainingFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public void LoraFactors_StayFloat32UnderBf16Compute_GetFloat32Gradients_AndTheirProductsRunInBf16()
    {
        using var scope = NewDisposeScope();
        var weight = Tensors.Gaussian([64, 128], seed: 1, std: 0.05).to(ScalarType.BFloat16);
        using var generator = new Generator(5);
        using var lora = LoraLinear.FromQuantized(Nf4.Quantize(weight), new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 }, generator,
            ScalarType.BFloat16);
        Assert.Equal(ScalarType.Float32, lora.lora_A.weight.dtype);
        Assert.Equal(ScalarType.Float32, lora.lora_B.weight.dtype);
        Assert.Equal(ScalarType.BFloat16, lora.ComputeType);
        using (no_grad()) lora.lora_B.weight.copy_(Tensors.Gaussian([64, 4], seed: 2, std: 0.02)); // so A gets a gradient too

        lora.train();
        var x = Tensors.Gaussian([3, 128], seed: 3).to(ScalarType.BFloat16);
        var y = lora.call(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        y.to(ScalarType.Float32).pow(2).sum().backward();
        foreach (var factor in new[] { lora.lora_A.weight, lora.lora_B.weight })
        {
            var grad = factor.grad;
            Assert.NotNull(grad);
            Assert.Equal(ScalarType.Float32, grad.dtype);
            Assert.True(grad.abs().sum().item<float>() > 0);
        }

        // Without dropout the LoRA path is x A^T in bf16, then (s B)^T in bf16 accumulated into the base output (as
        // PEFT's layers compute under bf16 autocast), within bf16 rounding of the float32 product.
        lora.eval();
        using var noGrad = no_grad();
        using var baseOnly = LoraLinear.FromQuantized(Nf4.Quantize(weight), new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0 }, generator,
            ScalarType.BFloat16); // B = 0: the frozen base alone
        baseOnly.eval();
        var expected = baseOnly.call(x);
        var down = x.matmul(lora.lora_A.weight.to(ScalarType.BFloat16).t());
        expected.addmm_(down, (lora.lora_B.weight * lora.Scaling).to(ScalarType.BFloat16).t());
        var actual = lora.call(x);
        Assert.True(Tensors.BitEqual(expected, actual));
        var update32 = x.to(ScalarType.Float32).matmul(lora.lora_A.weight.t()).matmul(lora.lora_B.weight.t()) * lora.Scaling;
        var reference = baseOnly.call(x).to(ScalarType.Float32) + update32;
        Assert.True((actual.to(ScalarType.Float32) - reference).abs().max().item<float>() <= 0.02f * reference.abs().max().item<float>());
    }

    [Fact]
    public void Train_Bf16Compute_KeepsFloat32Factors_AndTheLossFalls()
    {
        var options = new TrainingOptions
        {
            Rank = 8, Alpha = 16, Dropout = 0, LearningRate = 1e-2, WarmupSteps = 2, MaxSteps = 24, BatchSize = 2,
            SequenceLength = TrainingFixture.SequenceLength, Seed = 7, Compute = ComputePrecision.BF16, Device = "cpu",
        };
        using var trainer = Trainer.Load(fixture.BaseFolder, options);
        Assert.All(trainer.Trainable, p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.All(trainer.Targets, t => Assert.Equal(ScalarType.BFloat16, t.Module.ComputeType));

        var result = trainer.Train(fixture.Data.Train, fixture.Data.Eval, new ListProgressSink());

        output.WriteLine($"bf16 losses: {string.Join(" ", result.StepLosses.Select(l => l.ToString("F3")))} ({result.Elapsed.TotalSeconds:F1} s)");
        var first = result.StepLosses.Take(3).Average();
        var last = result.StepLosses.TakeLast(3).Average();
        Assert.True(last < 0.6 * first, $"bf16 loss fell only from {first:F3} to {last:F3}");
        Assert.All(trainer.Trainable, p => Assert.Equal(ScalarType.Float32, p.dtype));
    }
}
