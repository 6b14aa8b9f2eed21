using Ertas.Core;
using Ertas.Mistral;
using TorchSharp;
using static TorchSharp.torch;
using static Ertas.Modeling.Tests.Modeling.TinyModels;

namespace Ertas.Modeling.Tests.Modeling;

public sealed class MistralModelTests
{
    [Fact]
    public void NamedParametersAreExactlyTheHuggingFaceTensorNamesAndShapes()
    {
        foreach (var tied in new[] { false, true })
        {
            var config = Config(slidingWindow: 8, tied: tied);
            using var model = new MistralModel(config);
            var actual = model.named_parameters().Select(p => (p.name, string.Join("x", p.parameter.shape))).OrderBy(p => p.name, StringComparer.Ordinal);
            var expected = config.ExpectedTensors().Select(e => (e.Name, string.Join("x", e.Shape))).OrderBy(p => p.Name, StringComparer.Ordinal);
            Assert.Equal(expected, actual);
        }
    }

    [Theory]
    [InlineData(null, 40, 5)]   // full causal attention, linear cache
    [InlineData(8, 40, 5)]      // ring of 8 wraps four times; prefill shorter than the window
    [InlineData(8, 40, 13)]     // prefill longer than the window: the ring keeps only its last 8 keys
    public void CachedIncrementalDecodingGivesTheFullPrefillLogitsAtEveryStep(int? window, int length, int prefill)
    {
        var config = Config(window);
        using var model = MistralModel.Load(config, RandomWeights(config));
        var tokens = RandomTokens(length, config.VocabSize);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var full = Rows(model.forward(Ids(tokens)));

        using var cache = new KvCache(config, model.Options, length);
        var position = 0;
        void Step(int count)
        {
            var chunk = Rows(model.forward(Ids(tokens[position..(position + count)]), position, cache));
            for (var i = 0; i < count; i++)
                Assert.True(MaxAbsDiff(full[position + i], chunk[i]) < 1e-4f,
                    $"position {position + i}: cached logits differ from the prefill by {MaxAbsDiff(full[position + i], chunk[i])}");
            position += count;
        }
        Step(prefill);
        while (position < 30) Step(1);
        Step(6);                                  // a multi-token chunk on top of a (wrapped) cache
        while (position < length) Step(1);
        Assert.Equal(length, cache.Length);
    }

    [Fact]
    public void SlidingWindowHidesExactlyTheTokensOlderThanTheWindow()
    {
        // One layer, so the receptive field is the window itself (with n layers it would reach n * (window - 1) back).
        var windowed = Config(slidingWindow: 8, layers: 1);
        var weights = RandomWeights(windowed);
        using var model = MistralModel.Load(windowed, weights);
        using var unwindowed = MistralModel.Load(windowed with { SlidingWindow = null }, weights);
        var tokens = RandomTokens(20, windowed.VocabSize);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();

        float[] Last(MistralModel m, long[] ids) => Rows(m.forward(Ids(ids)))[^1];
        long[] With(int position) { var c = (long[])tokens.Clone(); c[position] = (c[position] + 1) % windowed.VocabSize; return c; }

        var baseline = Last(model, tokens);
        // The last query is position 19: it sees 12..19 (19 - 8 < j <= 19).
        Assert.Equal(0f, MaxAbsDiff(baseline, Last(model, With(11))));
        Assert.True(MaxAbsDiff(baseline, Last(model, With(12))) > 1e-3f, "a token inside the window must change the logits");
        Assert.True(MaxAbsDiff(Last(unwindowed, tokens), Last(unwindowed, With(11))) > 1e-3f, "without the window, position 11 matters");
    }

    [Fact]
    public void GroupedQueryAttentionEqualsMultiHeadAttentionWithRepeatedKeyValueWeights()
    {
        var gqa = Config(slidingWindow: 8);
        var weights = RandomWeights(gqa);
        var mha = gqa with { NumKeyValueHeads = gqa.NumAttentionHeads };
        var repeated = weights.Clone();
        var (headDim, groups, hidden) = (gqa.HeadDim, gqa.QueryGroups, gqa.HiddenSize);
        for (var layer = 0; layer < gqa.NumHiddenLayers; layer++)
            foreach (var proj in new[] { "k_proj", "v_proj" })
            {
                var name = $"model.layers.{layer}.self_attn.{proj}.weight";
                var source = weights.Data(name);
                var expanded = new float[gqa.NumAttentionHeads * headDim * hidden];
                for (var head = 0; head < gqa.NumAttentionHeads; head++)   // query head h reads KV head h / groups
                    Array.Copy(source, head / groups * headDim * hidden, expanded, head * headDim * hidden, headDim * hidden);
                repeated.Add(name, [gqa.NumAttentionHeads * headDim, hidden], expanded);
            }

        using var grouped = MistralModel.Load(gqa, weights);
        using var multiHead = MistralModel.Load(mha, repeated);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = Ids(RandomTokens(20, gqa.VocabSize));
        var a = Rows(grouped.forward(ids));
        var b = Rows(multiHead.forward(ids));
        for (var t = 0; t < a.Length; t++) Assert.True(MaxAbsDiff(a[t], b[t]) < 1e-5f, $"position {t}");
    }

    [Fact]
    public void BFloat16RunsAndStaysCloseToFloat32()
    {
        var config = Config(slidingWindow: 8);
        var weights = RandomWeights(config);
        using var f32 = MistralModel.Load(config, weights);
        using var bf16 = MistralModel.Load(config, weights, new ModelOptions { DType = ScalarType.BFloat16 });
        Assert.All(bf16.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = Ids(RandomTokens(16, config.VocabSize));
        var reference = f32.forward(ids);
        var half = bf16.forward(ids);
        Assert.Equal(ScalarType.Float32, half.dtype);
        var relative = ((half - reference).norm() / reference.norm()).item<float>();
        Assert.True(relative < 0.03f, $"bf16 logits differ from f32 by {relative:P2} (relative L2)");
        Assert.True(relative > 0f, "bf16 must actually compute in lower precision");
    }

    [Fact]
    public void RmsNormMatchesAHandComputedReference()
    {
        var random = new Random(3);
        var x = Enumerable.Range(0, 2 * 8).Select(_ => 4 * random.NextSingle() - 2).ToArray();
        var w = Enumerable.Range(0, 8).Select(_ => random.NextSingle() + 0.5f).ToArray();
        using var norm = new RmsNorm(8, 1e-5, ScalarType.Float32, CPU);
        using (no_grad()) norm.weight.copy_(tensor(w));
        using var scope = NewDisposeScope();
        var actual = norm.call(tensor(x, [2, 8])).data<float>().ToArray();
        for (var row = 0; row < 2; row++)
        {
            var meanSquare = Enumerable.Range(0, 8).Sum(i => (double)x[row * 8 + i] * x[row * 8 + i]) / 8;
            for (var i = 0; i < 8; i++)
                Assert.Equal(x[row * 8 + i] / Math.Sqrt(meanSquare + 1e-5) * w[i], actual[row * 8 + i], 5);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OneLayerForwardMatchesANaiveLoopImplementation(bool tied)
    {
        // Tiny enough to check by loops: GQA (2 query heads on 1 KV head), RoPE, a window of 3 over 6 tokens.
        var config = new MistralConfig
        {
            HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 1,
            VocabSize = 11, SlidingWindow = 3, RopeTheta = 100.0, RmsNormEps = 1e-5, TieWordEmbeddings = tied,
        };
        var weights = RandomWeights(config, seed: 5);
        long[] tokens = [1, 7, 3, 3, 10, 0];
        using var model = MistralModel.Load(config, weights);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var actual = Rows(model.forward(Ids(tokens)));
        var expected = NaiveMistral.Forward(config, weights, tokens);
        for (var t = 0; t < tokens.Length; t++)
            for (var v = 0; v < config.VocabSize; v++)
                Assert.True(Math.Abs(expected[t][v] - actual[t][v]) < 1e-4, $"position {t}, token {v}: {expected[t][v]} vs {actual[t][v]}");
    }

    [Fact]
    public void StrictLoadingRejectsAMissingTensorAnExtraTensorAndAWrongShape()
    {
        var config = Config(layers: 1);
        var missing = RandomWeights(config);
        missing.Remove("model.layers.0.mlp.up_proj.weight");
        var error = Assert.Throws<ErtasException>(() => MistralModel.Load(config, missing));
        Assert.Equal(ErrorCode.CheckpointMissingTensor, error.Code);
        Assert.Contains("missing: model.layers.0.mlp.up_proj.weight", error.Message);

        var extra = RandomWeights(config);
        extra.Add("model.layers.1.mlp.up_proj.weight", [128, 64], new float[128 * 64]);
        error = Assert.Throws<ErtasException>(() => MistralModel.Load(config, extra));
        Assert.Equal(ErrorCode.CheckpointUnexpectedTensor, error.Code);
        Assert.Contains("unexpected: model.layers.1.mlp.up_proj.weight", error.Message);

        var misshaped = RandomWeights(config);
        misshaped.Add("model.layers.0.self_attn.k_proj.weight", [64, 64], new float[64 * 64]);
        error = Assert.Throws<ErtasException>(() => MistralModel.Load(config, misshaped));
        Assert.Equal(ErrorCode.CheckpointShapeMismatch, error.Code);
        Assert.Contains("model.layers.0.self_attn.k_proj.weight has shape [64, 64], expected [32, 64]", error.Message);

        // Tied embeddings: a checkpoint that still carries lm_head.weight does not fit.
        var tied = RandomWeights(config);
        error = Assert.Throws<ErtasException>(() => MistralModel.Load(config with { TieWordEmbeddings = true }, tied));
        Assert.Contains("unexpected: lm_head.weight", error.Message);
    }

    [Fact]
    public void RejectsBadInputsWithErtasErrors()
    {
        var config = Config(layers: 1);
        Assert.Equal(ErrorCode.UnsupportedDtype,
            Assert.Throws<ErtasException>(() => new MistralModel(config, new ModelOptions { DType = ScalarType.Float16 })).Code);
        Assert.Equal(ErrorCode.DeviceUnavailable,
            Assert.Throws<ErtasException>(() => new MistralModel(config, new ModelOptions { Device = "cuda" })).Code);
        using var model = MistralModel.Load(config, RandomWeights(config));
        using var scope = NewDisposeScope();
        Assert.Equal(ErrorCode.ModelInputInvalid, Assert.Throws<ErtasException>(() => model.forward(Ids(1, 300))).Code);
        using var cache = new KvCache(config, model.Options, 4);
        Assert.Equal(ErrorCode.ModelInputInvalid, Assert.Throws<ErtasException>(() => model.forward(Ids(1, 2), 3, cache)).Code);
        Assert.Equal(ErrorCode.ModelInputInvalid, Assert.Throws<ErtasException>(() => model.forward(Ids(1, 2, 3, 4, 5), 0, cache)).Code);
    }
}
