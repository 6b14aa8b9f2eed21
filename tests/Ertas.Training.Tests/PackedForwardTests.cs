using Ertas.Mistral;
using Ertas.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

public sealed class PackedForwardTests
{
    private static MistralModel RandomModel(int? slidingWindow = null)
    {
        var config = new MistralConfig
        {
            HiddenSize = 64,
            IntermediateSize = 128,
            NumHiddenLayers = 2,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            VocabSize = 300,
            MaxPositionEmbeddings = 512,
            SlidingWindow = slidingWindow,
        };
        var model = new MistralModel(config);
        using var generator = new torch.Generator(5);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.fill_(1.0);
                else p.copy_(randn(p.shape, generator: generator) * Math.Sqrt(1.0 / p.shape[^1]) * (name.Contains("embed") ? 20 : 1));
            }
        model.eval();
        return model;
    }

    private static Tensor Row(params long[] values) => tensor(values, [1, values.Length]);

    [Theory]
    [InlineData(null)]
    [InlineData(3)]
    public void ForwardPacked_TwoExamplesInOneRow_MatchEachRunAlone(int? slidingWindow)
    {
        using var model = RandomModel(slidingWindow);
        long[] first = [5, 17, 42, 99, 7], second = [250, 3, 64, 11];
        using var scope = NewDisposeScope();
        // Row: first, second, then two padding tokens (their own segment 0).
        var ids = Row([.. first, .. second, 2, 2]);
        var positions = Row([0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0]);
        var segments = Row([1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0]);
        var packed = model.ForwardPacked(ids, positions, segments);
        Assert.Equal([1L, 11, 300], packed.shape);

        var alone1 = model.forward(Row(first));
        var alone2 = model.forward(Row(second));
        Assert.True(Tensors.MaxAbsDiff(packed.narrow(1, 0, 5), alone1) < 1e-5);
        Assert.True(Tensors.MaxAbsDiff(packed.narrow(1, 5, 4), alone2) < 1e-5);
        Assert.False(packed.isnan().any().item<bool>());
    }

    [Fact]
    public void ForwardPacked_TwoRowsCutDifferently_GiveEachExamplesOutputAndGradientAsIfAlone()
    {
        using var model = RandomModel();
        model.model.embed_tokens.weight.requires_grad_(true);
        long[] a = [5, 17, 42], b = [250, 3, 64, 11, 9], c = [8, 120, 33, 4], d = [77, 2];
        using var scope = NewDisposeScope();
        var ids = tensor((long[])[.. a, .. b, 2, .. c, .. d, 2, 2, 2], [2, 9]);
        var positions = tensor(new long[] { 0, 1, 2, 0, 1, 2, 3, 4, 0, 0, 1, 2, 3, 0, 1, 0, 0, 0 }, [2, 9]);
        var segments = tensor(new long[] { 1, 1, 1, 2, 2, 2, 2, 2, 0, 1, 1, 1, 1, 2, 2, 0, 0, 0 }, [2, 9]);
        // A loss that weighs every logit differently, padding (segment 0) not at all.
        var weights = Tensors.Gaussian([2, 9, 300], seed: 9) * segments.NotEqual(0).unsqueeze(2).to(ScalarType.Float32);
        var packed = model.ForwardPacked(ids, positions, segments);
        (packed * weights).sum().backward();
        var packedGrad = model.model.embed_tokens.weight.grad!.clone();

        model.zero_grad();
        var alone = new (long[] Ids, int Row, int Start)[] { (a, 0, 0), (b, 0, 3), (c, 1, 0), (d, 1, 4) };
        foreach (var (example, row, start) in alone)
        {
            var logits = model.forward(Row(example));
            Assert.True(Tensors.MaxAbsDiff(packed.narrow(0, row, 1).narrow(1, start, example.Length), logits) < 1e-5);
            (logits * weights.narrow(0, row, 1).narrow(1, start, example.Length)).sum().backward();
        }
        Assert.True(Tensors.MaxAbsDiff(packedGrad, model.model.embed_tokens.weight.grad!) < 1e-4 * packedGrad.abs().max().item<float>());
    }

    [Fact]
    public void ForwardPacked_ASegmentIdInTwoRuns_AttendsAcrossBoth_AsTheMaskSays()
    {
        using var model = RandomModel();
        using var scope = NewDisposeScope();
        var ids = Row(5, 17, 250, 3, 42);
        var positions = Row(0, 1, 0, 1, 2);
        var segments = Row(1, 1, 2, 2, 1); // position 4 belongs with 0 and 1
        var packed = model.ForwardPacked(ids, positions, segments);
        var joined = model.forward(Row(5, 17, 42));
        Assert.True(Tensors.MaxAbsDiff(packed.narrow(1, 4, 1), joined.narrow(1, 2, 1)) < 1e-5);
    }

    [Fact]
    public void ForwardPacked_RunLayerHook_SeesEveryLayerAndCanChangeTheResult()
    {
        using var model = RandomModel();
        using var scope = NewDisposeScope();
        var ids = Row(1, 2, 3);
        var positions = Row(0, 1, 2);
        var segments = Row(1, 1, 1);
        var seen = new List<int>();
        var viaHook = model.ForwardPacked(ids, positions, segments, (layer, x, i) => { seen.Add(i); return layer(x); });
        Assert.Equal([0, 1], seen);
        Assert.True(Tensors.MaxAbsDiff(viaHook, model.forward(ids)) < 1e-6);
        var skipped = model.ForwardPacked(ids, positions, segments, (layer, x, i) => x);
        Assert.True(Tensors.MaxAbsDiff(skipped, viaHook) > 1e-3);
    }

    [Fact]
    public void ForwardPacked_MismatchedShapes_IsAnErtasError()
    {
        using var model = RandomModel();
        using var scope = NewDisposeScope();
        var error = Assert.Throws<Ertas.Core.ErtasException>(() => model.ForwardPacked(Row(1, 2, 3), Row(0, 1), Row(1, 1, 1)));
        Assert.Equal(Ertas.Core.ErrorCode.ModelInputInvalid, error.Code);
    }
}
