using Ertas.Mistral;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling.Tests.Modeling;

/// <summary>Tiny configs and seeded random checkpoints held in memory.</summary>
internal static class TinyModels
{
    public static MistralConfig Config(int? slidingWindow = null, int layers = 2, int kvHeads = 2, bool tied = false) => new()
    {
        HiddenSize = 64,
        IntermediateSize = 128,
        NumHiddenLayers = layers,
        NumAttentionHeads = 4,
        NumKeyValueHeads = kvHeads,
        VocabSize = 300,
        MaxPositionEmbeddings = 512,
        RopeTheta = 10000.0,
        RmsNormEps = 1e-5,
        SlidingWindow = slidingWindow,
        TieWordEmbeddings = tied,
    };

    /// <summary>Weights scaled so activations stay near unit size: attention then really depends on its inputs.</summary>
    public static InMemoryTensorSource RandomWeights(MistralConfig config, int seed = 1)
    {
        var random = new Random(seed);
        var source = new InMemoryTensorSource();
        foreach (var (name, shape) in config.ExpectedTensors())
        {
            var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
            if (name.EndsWith("norm.weight", StringComparison.Ordinal))
                for (var i = 0; i < data.Length; i++) data[i] = 1f + 0.2f * (random.NextSingle() - 0.5f);
            else
            {
                var scale = name.Contains("embed_tokens") ? 1f : MathF.Sqrt(3f / shape[1]);
                for (var i = 0; i < data.Length; i++) data[i] = scale * (2 * random.NextSingle() - 1);
            }
            source.Add(name, shape, data);
        }
        return source;
    }

    public static long[] RandomTokens(int count, int vocab, int seed = 7)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => (long)random.Next(vocab))];
    }

    public static Tensor Ids(params long[] ids) => tensor(ids, [1, ids.Length]);

    /// <summary>The logits as nested float arrays [T][vocab] for batch row 0.</summary>
    public static float[][] Rows(Tensor logits)
    {
        var t = (int)logits.shape[1];
        return [.. Enumerable.Range(0, t).Select(i => logits[0, i].contiguous().data<float>().ToArray())];
    }

    public static float MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        var max = 0f;
        for (var i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}

/// <summary>An <see cref="ITensorSource"/> over arrays: the smallest real checkpoint.</summary>
internal sealed class InMemoryTensorSource : ITensorSource
{
    private readonly List<string> _names = [];
    private readonly Dictionary<string, (long[] Shape, float[] Data)> _tensors = new(StringComparer.Ordinal);

    public IReadOnlyList<string> TensorNames => _names;

    public void Add(string name, long[] shape, float[] data)
    {
        if (!_tensors.ContainsKey(name)) _names.Add(name);
        _tensors[name] = (shape, data);
    }

    public void Remove(string name)
    {
        _names.Remove(name);
        _tensors.Remove(name);
    }

    public float[] Data(string name) => _tensors[name].Data;

    public long[] GetShape(string name) => _tensors[name].Shape;

    public void ReadFloat32(string name, Span<float> destination)
    {
        var data = _tensors[name].Data;
        Assert.Equal(data.Length, destination.Length);
        data.CopyTo(destination);
    }

    public InMemoryTensorSource Clone()
    {
        var copy = new InMemoryTensorSource();
        foreach (var name in _names) copy.Add(name, (long[])_tensors[name].Shape.Clone(), (float[])_tensors[name].Data.Clone());
        return copy;
    }
}
