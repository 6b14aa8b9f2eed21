using TorchSharp;
using static TorchSharp.torch;
using ReturnedGradients = Ertas.Modeling.ReturnedGradients;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training.Tests;

/// <summary>LoraLinear's single autograd node against autograd over the plain ops with the same dropout mask.</summary>
public sealed class LoraFunctionTests
{
    private sealed record Result(Tensor Y, Tensor? GradX, Tensor GradA, Tensor GradB);

    private static LoraLinear Module(double dropout, ScalarType dtype)
    {
        using var w = Tensors.Gaussian([24, 40], seed: 1, std: 0.2);
        using var generator = new Generator(3);
        var lora = LoraLinear.FromPlain(w.to(dtype), new LoraOptions { Rank = 4, Alpha = 12, Dropout = dropout }, generator);
        using (no_grad()) lora.lora_B.weight.copy_(Tensors.Gaussian([24, 4], seed: 2, std: 0.3));
        lora.train();
        return lora;
    }

    private static Result Fused(LoraLinear lora, Tensor x, Tensor g, bool inputGrad)
    {
        var input = x.detach().requires_grad_(inputGrad);
        lora.zero_grad();
        manual_seed(21);
        var y = lora.call(input);
        y.backward([g]);
        return new Result(y.detach(), inputGrad ? input.grad!.detach() : null, lora.lora_A.weight.grad!.detach().clone(), lora.lora_B.weight.grad!.detach().clone());
    }

    /// <summary>y = x Wᵀ + s ((x ⊙ keep) / (1 - p)) Aᵀ Bᵀ by separate float32 ops, the mask being the one the node draws.</summary>
    private static Result Reference(LoraLinear lora, Tensor x, Tensor g, double p, bool inputGrad)
    {
        manual_seed(21);
        var seed = p > 0 ? CounterDropout.DrawSeed() : 0;
        var input = x.detach().to(ScalarType.Float32).requires_grad_(inputGrad);
        var a = lora.lora_A.weight.detach().clone().requires_grad_();
        var b = lora.lora_B.weight.detach().clone().requires_grad_();
        using var w = lora.BaseWeight(ScalarType.Float32);
        var dropped = input;
        if (p > 0)
        {
            using var ones = torch.ones(x.shape, ScalarType.Float32);
            var keep = CounterDropout.Mask(ones, seed, p);
            dropped = input * keep / (1 - p);
        }
        var y = F.linear(input, w) + F.linear(F.linear(dropped, a), b) * lora.Scaling;
        y.backward([g.to(ScalarType.Float32)]);
        return new Result(y.detach(), inputGrad ? input.grad!.detach() : null, a.grad!.detach(), b.grad!.detach());
    }

    private static double RelativeError(Tensor actual, Tensor expected) =>
        Tensors.MaxAbsDiff(actual, expected) / Math.Max(1e-12, expected.abs().max().item<float>());

    [Theory]
    [InlineData(0.0, true)]
    [InlineData(0.3, true)]
    [InlineData(0.3, false)] // a first layer's input needs no gradient: A and B still get theirs
    public void Float32_OutputAndGradientsEqualAutogradOverThePlainOps(double p, bool inputGrad)
    {
        using var scope = NewDisposeScope();
        using var lora = Module(p, ScalarType.Float32);
        var x = Tensors.Gaussian([2, 5, 40], seed: 4);
        var g = Tensors.Gaussian([2, 5, 24], seed: 5);
        var fused = Fused(lora, x, g, inputGrad);
        var reference = Reference(lora, x, g, p, inputGrad);
        Assert.True(RelativeError(fused.Y, reference.Y) < 1e-5);
        Assert.True(RelativeError(fused.GradA, reference.GradA) < 1e-5);
        Assert.True(RelativeError(fused.GradB, reference.GradB) < 1e-5);
        if (inputGrad) Assert.True(RelativeError(fused.GradX!, reference.GradX!) < 1e-5);
        else Assert.Null(fused.GradX);
        Assert.Equal(ScalarType.Float32, fused.GradA.dtype);
        if (p > 0) Assert.True(Tensors.MaxAbsDiff(Reference(lora, x, g, 0, inputGrad).GradA, reference.GradA) > 1e-3); // the mask matters
    }

    [Fact]
    public void Bf16_OutputAndGradientsAreWithinBf16RoundingOfTheFloat32Reference_AndTheFactorsGetFloat32Gradients()
    {
        using var scope = NewDisposeScope();
        using var lora = Module(0.2, ScalarType.BFloat16);
        var x = Tensors.Gaussian([3, 7, 40], seed: 6).to(ScalarType.BFloat16);
        var g = Tensors.Gaussian([3, 7, 24], seed: 7).to(ScalarType.BFloat16);
        var fused = Fused(lora, x, g, inputGrad: true);
        var reference = Reference(lora, x, g, 0.2, inputGrad: true);
        Assert.Equal(ScalarType.BFloat16, fused.Y.dtype);
        Assert.Equal(ScalarType.BFloat16, fused.GradX!.dtype);
        Assert.Equal(ScalarType.Float32, fused.GradA.dtype);
        Assert.Equal(ScalarType.Float32, fused.GradB.dtype);
        Assert.True(RelativeError(fused.Y, reference.Y) < 0.02);
        Assert.True(RelativeError(fused.GradX!, reference.GradX!) < 0.02);
        Assert.True(RelativeError(fused.GradA, reference.GradA) < 0.02);
        Assert.True(RelativeError(fused.GradB, reference.GradB) < 0.02);
    }

    [Fact]
    public void WithoutAGraph_TheForwardGivesTheNodesBits_SoACheckpointedFirstPassMatchesItsRecompute()
    {
        using var scope = NewDisposeScope();
        using var lora = Module(0.3, ScalarType.BFloat16);
        var x = Tensors.Gaussian([2, 9, 40], seed: 8).to(ScalarType.BFloat16);
        manual_seed(3);
        Tensor plain;
        using (no_grad()) plain = lora.call(x);
        manual_seed(3);
        var recorded = lora.call(x.requires_grad_());
        Assert.True(recorded.requires_grad); // recorded through the node
        Assert.True(Tensors.BitEqual(plain, recorded));
    }
}

public sealed class LoraReturnedGradientsTests
{
    [Fact]
    public void HandlesReleasedByTheNextNode_LeaveEveryGradientTheEngineDelivered()
    {
        Tensor[] Run(ReturnedGradients? returned)
        {
            using var scope = NewDisposeScope();
            using var generator = new Generator(3);
            using var w1 = Tensors.Gaussian([32, 24], seed: 1, std: 0.2);
            using var w2 = Tensors.Gaussian([16, 32], seed: 2, std: 0.2);
            var options = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.2 };
            using var first = LoraLinear.FromPlain(w1, options, generator);
            using var second = LoraLinear.FromPlain(w2, options, generator);
            foreach (var lora in new[] { first, second })
            {
                using (no_grad()) lora.lora_B.weight.copy_(Tensors.Gaussian(lora.lora_B.weight.shape, seed: 4, std: 0.3));
                lora.ReturnedGradients = returned;
            }
            var x = Tensors.Gaussian([3, 5, 24], seed: 5).requires_grad_();
            manual_seed(8);
            second.call(first.call(x)).pow(2).sum().backward();
            returned?.Dispose(); // every handle a node returned, as the trainer's holder at the end of the pass
            return [.. new[] { x.grad!, first.lora_A.weight.grad!, first.lora_B.weight.grad!, second.lora_A.weight.grad!, second.lora_B.weight.grad! }
                .Select(g => g.detach().clone().MoveToOuterDisposeScope())];
        }

        var kept = Run(null);
        using var holder = new ReturnedGradients();
        var released = Run(holder);
        Assert.Equal(kept.Length, released.Length);
        for (var i = 0; i < kept.Length; i++) Assert.True(Tensors.BitEqual(kept[i], released[i]), $"gradient {i}");
    }
}
