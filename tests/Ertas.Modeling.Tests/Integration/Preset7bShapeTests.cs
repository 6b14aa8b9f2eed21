using Ertas.Mistral.Presets;
using Snapshooter.Xunit;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// The 7b preset must have Mistral 7B v0.1's exact shapes (FACTS §2), checked without writing its 14 GB: the config the
/// factory resolves and the tensor list that config implies, which both the writer and the strict loader use.
/// </summary>
public sealed class Preset7bShapeTests
{
    private static readonly Ertas.Mistral.MistralConfig Config =
        BaseModelFactory.ResolveConfig(new BaseModelRequest { Preset = "7b" }, tokenizerVocabSize: 32000, vocabFromTokenizerFile: false);

    [Fact]
    public void Preset7b_ResolvesToMistral7BV01Hyperparameters()
    {
        Assert.Equal(4096, Config.HiddenSize);
        Assert.Equal(14336, Config.IntermediateSize);
        Assert.Equal(32, Config.NumHiddenLayers);
        Assert.Equal(32, Config.NumAttentionHeads);
        Assert.Equal(8, Config.NumKeyValueHeads);
        Assert.Equal(128, Config.HeadDim);
        Assert.Equal(32768, Config.MaxPositionEmbeddings);
        Assert.Equal(1e-5, Config.RmsNormEps);
        Assert.Equal(10000.0, Config.RopeTheta);
        Assert.Equal(4096, Config.SlidingWindow);
        Assert.Equal(32000, Config.VocabSize);
        Assert.Equal((1, 2), (Config.BosTokenId, Config.EosTokenId));
        Assert.False(Config.TieWordEmbeddings);
        Assert.Equal("silu", Config.HiddenAct);
        Assert.Equal("bfloat16", Config.TorchDtype);
    }

    [Fact]
    public void Preset7b_Implies291TensorsAnd7_24BillionParameters()
    {
        var tensors = Config.ExpectedTensors().ToList();
        Assert.Equal(291, tensors.Count); // embed + 32 x 9 + norm + lm_head
        Assert.Equal(7_241_732_096L, tensors.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)));
        Assert.Equal([32000L, 4096L], tensors.Single(t => t.Name == "model.embed_tokens.weight").Shape);
        Assert.Equal([1024L, 4096L], tensors.Single(t => t.Name == "model.layers.31.self_attn.k_proj.weight").Shape);
        Assert.Equal([4096L, 14336L], tensors.Single(t => t.Name == "model.layers.0.mlp.down_proj.weight").Shape);
        Snapshot.Match(tensors.Select(t => $"{t.Name} [{string.Join(", ", t.Shape)}]").ToArray());
    }
}
