using Ertas.Core;
using Ertas.Mistral;
using Ertas.Modeling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training.Tests;

#pragma warning disable IDE1006 // snake_case fields become parameter names

/// <summary>SwiGLU block shaped like Mistral's Mlp, but with replaceable projection fields.</summary>
internal sealed class ToyMlp : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj;

    public ToyMlp(long hidden, long intermediate, long seed) : base(nameof(ToyMlp))
    {
        gate_proj = Seeded(hidden, intermediate, seed);
        up_proj = Seeded(hidden, intermediate, seed + 1);
        down_proj = Seeded(intermediate, hidden, seed + 2);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => down_proj.call(F.silu(gate_proj.call(x)) * up_proj.call(x));

    private static Linear Seeded(long inFeatures, long outFeatures, long seed)
    {
        var linear = new Linear(inFeatures, outFeatures, ScalarType.Float32, CPU);
        using var noGrad = no_grad();
        using var values = Tensors.Gaussian([outFeatures, inFeatures], seed, std: 1 / Math.Sqrt(inFeatures));
        linear.weight.copy_(values);
        return linear;
    }
}

/// <summary>Two residual MLP layers and a frozen-looking norm weight, names like HF's "model.layers.N.mlp.*".</summary>
internal sealed class ToyNetwork : nn.Module<Tensor, Tensor>
{
    public readonly ToyInner model;

    public ToyNetwork() : base(nameof(ToyNetwork))
    {
        model = new ToyInner();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => model.call(x);
}

internal sealed class ToyInner : nn.Module<Tensor, Tensor>
{
    public readonly TorchSharp.Modules.ModuleList<ToyLayer> layers;
    public readonly RmsNorm norm;

    public ToyInner() : base(nameof(ToyInner))
    {
        layers = new TorchSharp.Modules.ModuleList<ToyLayer>(new ToyLayer(10), new ToyLayer(20));
        norm = new RmsNorm(32, 1e-5, ScalarType.Float32, CPU);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        foreach (var layer in layers) x = layer.call(x);
        return norm.call(x);
    }
}

internal sealed class ToyLayer : nn.Module<Tensor, Tensor>
{
    public readonly ToyMlp mlp;

    public ToyLayer(long seed) : base(nameof(ToyLayer))
    {
        mlp = new ToyMlp(32, 64, seed);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => x + mlp.call(x);
}

public sealed class LoraInjectionTests
{
    private static readonly LoraOptions Options = new() { Rank = 4, Alpha = 8, Dropout = 0.0, Seed = 3, TargetModules = ["gate_proj", "up_proj", "down_proj"] };

    [Fact]
    public void Inject_ReplacesEveryTargetAndNamesParametersLikePeft()
    {
        using var network = new ToyNetwork();
        var targets = LoraInjection.Inject(network, Options);
        Assert.Equal(6, targets.Count);
        Assert.Equal("model.layers.0.mlp.gate_proj", targets[0].Name);
        Assert.Equal("base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight", targets[0].PeftKeyA);
        Assert.Equal("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", targets[5].PeftKeyB);

        var trainable = network.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        var expected = new[] { 0, 1 }
            .SelectMany(l => new[] { "down_proj", "gate_proj", "up_proj" }.SelectMany(m => new[] { "lora_A", "lora_B" }.Select(f => $"model.layers.{l}.mlp.{m}.{f}.weight")))
            .OrderBy(n => n, StringComparer.Ordinal).ToArray();
        Assert.Equal(expected, trainable);
        Assert.Contains(network.named_parameters(), p => p.name == "model.norm.weight" && !p.parameter.requires_grad);
        Assert.All(network.named_parameters(), p => Assert.Equal(LoraInjection.IsLoraParameter(p.name), p.parameter.requires_grad));
        Assert.All(trainable, n => Assert.Equal(n, PeftNames.ToParameterName(PeftNames.FromParameterName(n))));
        Assert.IsType<LoraLinear>(network.model.layers[1].mlp.up_proj);
    }

    [Fact]
    public void Inject_PlainBase_LeavesTheOutputExactlyAsBefore_AndNf4BaseStaysClose()
    {
        using var x = Tensors.Gaussian([2, 7, 32], seed: 1);
        using var plainNet = new ToyNetwork();
        using var before = plainNet.call(x);
        LoraInjection.Inject(plainNet, Options with { QuantizeBase = false });
        using var afterPlain = plainNet.call(x);
        Assert.True(Tensors.BitEqual(before, afterPlain));

        using var quantNet = new ToyNetwork();
        LoraInjection.Inject(quantNet, Options);
        using var afterNf4 = quantNet.call(x);
        using var diff = afterNf4 - before;
        var relative = diff.pow(2).mean().sqrt().item<float>() / before.pow(2).mean().sqrt().item<float>();
        Assert.InRange(relative, 0.01, 0.2); // NF4 noise (~0.1 per weight), neither nothing nor garbage
    }

    [Fact]
    public void Inject_TrainingStep_ChangesOnlyLoraParameters()
    {
        using var network = new ToyNetwork();
        LoraInjection.Inject(network, Options);
        var snapshot = network.named_parameters().ToDictionary(p => p.name, p => Tensors.Values(p.parameter));
        using var x = Tensors.Gaussian([4, 32], seed: 2);
        var trainable = network.parameters().Where(p => p.requires_grad).ToList();
        using var optimizer = new AdamW(trainable, weightDecay: 0.0);
        for (var step = 0; step < 2; step++)
        {
            using var loss = network.call(x).pow(2).mean();
            loss.backward();
            optimizer.Step(1e-2);
            optimizer.ZeroGrad();
        }
        foreach (var (name, parameter) in network.named_parameters())
        {
            var changed = !snapshot[name].SequenceEqual(Tensors.Values(parameter));
            // B moves on step 1; A moves from step 2, once B is no longer zero.
            Assert.True(changed == LoraInjection.IsLoraParameter(name), $"{name} changed: {changed}");
        }
    }

    [Fact]
    public void Inject_SameSeed_SameAdapterBytes()
    {
        using var a = new ToyNetwork();
        using var b = new ToyNetwork();
        var ta = LoraInjection.Inject(a, Options);
        var tb = LoraInjection.Inject(b, Options);
        for (var i = 0; i < ta.Count; i++)
            Assert.True(Tensors.BitEqual(ta[i].Module.lora_A.weight, tb[i].Module.lora_A.weight));
        Assert.False(Tensors.BitEqual(ta[0].Module.lora_A.weight, ta[1].Module.lora_A.weight)); // each draws its own values
    }

    [Fact]
    public void Inject_UnknownTarget_IsAnErtasErrorNamingIt()
    {
        using var network = new ToyNetwork();
        var e = Assert.Throws<ErtasException>(() => LoraInjection.Inject(network, Options with { TargetModules = ["up_proj", "qkv"] }));
        Assert.Contains("qkv", e.Message);
    }

    [SkippableFact]
    public void Inject_IntoTinyMistral_KeepsLogitsAndTrainsOnlyAdapters()
    {
        var config = new MistralConfig
        {
            HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
            VocabSize = 300, MaxPositionEmbeddings = 256, SlidingWindow = null,
        };
        using var network = new MistralModel(config);
        Skip.IfNot(LoraInjection.CanReplace(network.model.layers[0].self_attn, "q_proj") && LoraInjection.CanReplace(network.model.layers[0].mlp, "up_proj"),
            "Ertas.Modeling types its projections as Linear: LoRA injection needs them typed nn.Module<Tensor, Tensor> (see the Training report)");
        using (no_grad())
        {
            var seed = 1L;
            foreach (var (name, p) in network.named_parameters())
            {
                using var values = name.EndsWith("norm.weight") ? ones_like(p) : Tensors.Gaussian(p.shape, seed++, std: 0.05);
                p.copy_(values);
            }
        }
        using var ids = tensor(new long[] { 1, 5, 9, 200, 17, 3, 44, 2 }).view(1, -1);
        using var before = network.call(ids);
        var targets = LoraInjection.Inject(network, Options with { QuantizeBase = false, TargetModules = LoraOptions.AllProjections });
        Assert.Equal(14, targets.Count);
        using var after = network.call(ids);
        Assert.True(Tensors.BitEqual(before, after));
        Assert.Equal(28, network.parameters().Count(p => p.requires_grad));
        Assert.Contains(targets, t => t.PeftKeyA == "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
    }
}
