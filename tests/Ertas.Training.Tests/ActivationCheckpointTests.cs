using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training.Tests;

public sealed class ActivationCheckpointTests
{
    /// <summary>A stack of (x + W2 gelu(dropout(W1 x))) blocks with trainable weights.</summary>
    private sealed class Stack : IDisposable
    {
        public readonly List<(Tensor W1, Tensor W2)> Blocks = [];
        private readonly double _dropout;

        public Stack(int depth, long width, double dropout)
        {
            _dropout = dropout;
            for (var i = 0; i < depth; i++)
                Blocks.Add((Tensors.Gaussian([2 * width, width], 10 + i, 0.2).requires_grad_(), Tensors.Gaussian([width, 2 * width], 20 + i, 0.2).requires_grad_()));
        }

        public Tensor Block(int i, Tensor x) =>
            x + F.linear(F.gelu(F.dropout(F.linear(x, Blocks[i].W1), _dropout, training: _dropout > 0)), Blocks[i].W2);

        public Tensor Forward(Tensor x, bool checkpoint)
        {
            for (var i = 0; i < Blocks.Count; i++)
            {
                var index = i;
                x = checkpoint
                    ? ActivationCheckpoint.Run(h => Block(index, h), x, [Blocks[i].W1, Blocks[i].W2])
                    : Block(i, x);
            }
            return x;
        }

        public List<float[]> Grads() => [.. Blocks.SelectMany(b => new[] { Tensors.Values(b.W1.grad!), Tensors.Values(b.W2.grad!) })];

        public void Dispose()
        {
            foreach (var (w1, w2) in Blocks) { w1.Dispose(); w2.Dispose(); }
        }
    }

    private static (List<float[]> Grads, float[]? InputGrad, float Loss) Run(bool checkpoint, double dropout, bool inputRequiresGrad)
    {
        using var stack = new Stack(depth: 4, width: 16, dropout);
        using var x = Tensors.Gaussian([3, 5, 16], seed: 1).requires_grad_(inputRequiresGrad);
        manual_seed(1234);
        using var y = stack.Forward(x, checkpoint);
        using var loss = y.pow(2).mean();
        loss.backward();
        return (stack.Grads(), inputRequiresGrad ? Tensors.Values(x.grad!) : null, loss.item<float>());
    }

    [Theory]
    [InlineData(0.0, true)]
    [InlineData(0.3, true)]
    [InlineData(0.3, false)] // the LoRA first-layer case: the input needs no gradient, the parameters do
    public void Checkpointed_GradientsEqualPlainBackwardBitForBit(double dropout, bool inputRequiresGrad)
    {
        var plain = Run(checkpoint: false, dropout, inputRequiresGrad);
        var checkpointed = Run(checkpoint: true, dropout, inputRequiresGrad);
        Assert.Equal(plain.Loss, checkpointed.Loss);
        Assert.Equal(plain.Grads.Count, checkpointed.Grads.Count);
        for (var i = 0; i < plain.Grads.Count; i++)
            Assert.Equal(plain.Grads[i], checkpointed.Grads[i]);
        if (inputRequiresGrad) Assert.Equal(plain.InputGrad, checkpointed.InputGrad);
    }

    [Fact]
    public void Checkpointed_BackwardLeavesTheRandomStreamWhereThePlainRunLeavesIt()
    {
        float NextDraw(bool checkpoint)
        {
            Run(checkpoint, dropout: 0.3, inputRequiresGrad: true);
            using var r = rand(1);
            return r.item<float>();
        }
        Assert.Equal(NextDraw(false), NextDraw(true));
    }

    [Fact]
    public void Checkpointed_StoresNoGraphInForward()
    {
        using var stack = new Stack(depth: 1, width: 8, dropout: 0);
        using var x = Tensors.Gaussian([2, 8], seed: 3);
        var gradModes = new List<bool>();
        using var y = ActivationCheckpoint.Run(h => { gradModes.Add(is_grad_enabled()); return stack.Block(0, h); }, x, [stack.Blocks[0].W1, stack.Blocks[0].W2]);
        Assert.True(y.requires_grad);          // the checkpoint node connects the output to the weights
        Assert.Equal([false], gradModes);      // but the forward ran without recording anything
        using (var loss = y.sum()) loss.backward();
        Assert.Equal([false, true], gradModes); // backward ran it again, recording
    }

    [Fact]
    public void Checkpointed_LoraLayersWithNf4Bases_GiveTheSameAdapterGradients()
    {
        List<float[]> Grads(bool checkpoint)
        {
            using var w1 = Tensors.Gaussian([32, 16], seed: 5, std: 0.2);
            using var w2 = Tensors.Gaussian([16, 32], seed: 6, std: 0.2);
            var options = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1, Seed = 1 };
            using var generator = new Generator(1);
            using var up = LoraLinear.FromQuantized(Nf4.Quantize(w1), options, generator, ScalarType.Float32);
            using var down = LoraLinear.FromQuantized(Nf4.Quantize(w2), options, generator, ScalarType.Float32);
            using (no_grad())
            {
                using var b1 = Tensors.Gaussian(up.lora_B.weight.shape, 7, 0.1);
                using var b2 = Tensors.Gaussian(down.lora_B.weight.shape, 8, 0.1);
                up.lora_B.weight.copy_(b1);
                down.lora_B.weight.copy_(b2);
            }
            var parameters = up.parameters().Concat(down.parameters()).Cast<Tensor>().ToList();
            Tensor Layer(Tensor h) => h + down.call(F.silu(up.call(h)));
            using var x = Tensors.Gaussian([2, 3, 16], seed: 9); // no grad: like hidden states after frozen embeddings
            manual_seed(99);
            using var y = checkpoint ? ActivationCheckpoint.Run(Layer, x, parameters) : Layer(x);
            using var loss = y.pow(2).sum();
            loss.backward();
            return [.. parameters.Select(p => Tensors.Values(p.grad!))];
        }
        var plain = Grads(false);
        var checkpointed = Grads(true);
        for (var i = 0; i < plain.Count; i++)
            Assert.Equal(plain[i], checkpointed[i]);
        Assert.Contains(plain[0], v => v != 0);
    }

    [SkippableFact]
    public void TheCheckpointsUnwrittenOutputCopyLeavesCachedBlocksForTheNextTensor()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64, "the tensor block cache is Linux x64 only");
        Ertas.Modeling.Native.TorchSharpNativeFix.EnsureTorchLoaded();
        Skip.If(TensorBlockCache.Current is null, "the tensor block cache is not installed");
        const long rows = 512, width = 1024; // 2 MB of float32: above the cache's 1 MB threshold
        using var x = Tensors.Gaussian([rows, width], 3, 1.0).requires_grad_();
        var cached = new HashSet<nint>();
        using (var a = empty([rows, width])) using (var b = empty([rows, width]))
            cached.UnionWith([DataPointer(a), DataPointer(b)]);
        // The layer's output takes one cached block; TorchSharp's apply() then allocates an empty_like of the output
        // that is never written, which must get a fresh mapping and leave the other resident block cached.
        using var y = ActivationCheckpoint.Run(h => h.mul(h), x, []);
        Assert.Contains(DataPointer(y), cached);
        using var next = empty([rows, width]);
        Assert.Contains(DataPointer(next), cached);
        Assert.NotEqual(DataPointer(y), DataPointer(next));
    }

    private static unsafe nint DataPointer(Tensor t) => (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));
}
