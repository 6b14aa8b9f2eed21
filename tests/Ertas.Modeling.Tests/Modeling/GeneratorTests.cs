using TorchSharp;
using static TorchSharp.torch;
using static Ertas.Modeling.Tests.Modeling.TinyModels;

namespace Ertas.Modeling.Tests.Modeling;

public sealed class GeneratorTests
{
    [Fact]
    public void GreedyGenerationTakesTheArgmaxOfLogitsThatMatchAFreshPrefill()
    {
        var config = Config(slidingWindow: 8);
        using var model = MistralModel.Load(config, RandomWeights(config));
        long[] prompt = [1, 17, 42, 99, 5];
        var result = new Generator(model).Generate([.. prompt.Select(t => (int)t)],
            new GenerationOptions { MaxNewTokens = 12, StopAtEos = false, ReturnLogits = true });

        Assert.Equal(StopReason.MaxNewTokens, result.StopReason);
        Assert.Equal(12, result.TokenIds.Count);
        Assert.NotNull(result.StepLogits);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var sequence = prompt.Concat(result.TokenIds.Select(t => (long)t)).ToArray();
        var full = Rows(model.forward(Ids(sequence)));
        for (var i = 0; i < result.TokenIds.Count; i++)
        {
            Assert.Equal(Generator.ArgMaxLowestId(result.StepLogits[i]), result.TokenIds[i]);
            Assert.True(MaxAbsDiff(full[prompt.Length - 1 + i], result.StepLogits[i]) < 1e-4f, $"step {i}");
        }
    }

    [Fact]
    public void GenerationStopsAtEosAndIncludesIt()
    {
        var config = Config(slidingWindow: 8);
        using var model = MistralModel.Load(config, RandomWeights(config));
        var generator = new Generator(model);
        int[] prompt = [1, 17, 42];
        var free = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 10, StopAtEos = false });
        var eos = free.TokenIds[4];
        var stopAt = free.TokenIds.ToList().IndexOf(eos);

        var stopped = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 10, EosTokenId = eos });
        Assert.Equal(StopReason.Eos, stopped.StopReason);
        Assert.Equal(free.TokenIds.Take(stopAt + 1), stopped.TokenIds);
        Assert.Null(stopped.StepLogits);
    }

    [Fact]
    public void GenerationLeavesNoLiveTensorsBehind()
    {
        var config = Config(slidingWindow: 8, layers: 1);
        using var model = MistralModel.Load(config, RandomWeights(config));
        var generator = new Generator(model);
        generator.Generate([1, 2, 3], new GenerationOptions { MaxNewTokens = 3 }); // warm-up: lazily created state
        var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        generator.Generate([1, 2, 3], new GenerationOptions { MaxNewTokens = 20, StopAtEos = false });
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void ArgMaxBreaksTiesTowardTheLowestIdLikeLlamaCppsGreedySampler()
    {
        Assert.Equal(1, Generator.ArgMaxLowestId([0f, 3f, 1f, 3f]));
        Assert.Equal(0, Generator.ArgMaxLowestId([2f, 2f]));
        Assert.Equal(2, Generator.ArgMaxLowestId([float.NaN, -1f, 5f]));
    }
}
