using Ertas.Mistral;

namespace Ertas.Gguf.Tests;

/// <summary>An <see cref="ITensorSource"/> over float arrays held in memory.</summary>
internal sealed class InMemoryTensorSource : ITensorSource
{
    private readonly Dictionary<string, (long[] Shape, float[] Data)> _tensors = new(StringComparer.Ordinal);
    private readonly List<string> _names = [];

    public void Add(string name, long[] shape, float[] data)
    {
        _tensors.Add(name, (shape, data));
        _names.Add(name);
    }

    public void Remove(string name)
    {
        _tensors.Remove(name);
        _names.Remove(name);
    }

    public float[] Data(string name) => _tensors[name].Data;

    public IReadOnlyList<string> TensorNames => _names;

    public long[] GetShape(string name) => _tensors[name].Shape;

    public void ReadFloat32(string name, Span<float> destination) => _tensors[name].Data.CopyTo(destination);
}

/// <summary>A randomly initialised Mistral with tiny sizes and a synthetic SentencePiece vocabulary.</summary>
internal static class TinyModel
{
    public static readonly string[] NormalPieces =
    [
        "▁", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
        "w", "x", "y", "z", "▁t", "▁a", "he", "in", "er", "▁the", "on", "an", "re", "nd", "▁hello", "▁world", "lo",
    ];

    public static GgufVocabulary Vocabulary(string? chatTemplate = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { (int)GgufTokenType.Unknown, (int)GgufTokenType.Control, (int)GgufTokenType.Control };
        var scores = new List<float> { 0, 0, 0 };
        for (var b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add((int)GgufTokenType.Byte);
            scores.Add(0);
        }
        for (var i = 0; i < NormalPieces.Length; i++)
        {
            tokens.Add(NormalPieces[i]);
            types.Add((int)GgufTokenType.Normal);
            scores.Add(-1f - i);
        }
        return new GgufVocabulary([.. tokens], [.. scores], [.. types], BosId: 1, EosId: 2, UnkId: 0,
            AddBos: true, AddEos: false, ChatTemplate: chatTemplate);
    }

    public static int VocabSize => 3 + 256 + NormalPieces.Length;

    public static MistralConfig Config => new()
    {
        HiddenSize = 64,
        IntermediateSize = 128,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 256,
        RmsNormEps = 1e-5,
        RopeTheta = 1e6,
        SlidingWindow = 4096,
        VocabSize = VocabSize,
    };

    /// <summary>Weights with a spread of magnitudes; norms near 1 as in a trained model.</summary>
    public static InMemoryTensorSource Weights(MistralConfig config, int seed = 1234)
    {
        var random = new Random(seed);
        var source = new InMemoryTensorSource();
        foreach (var (name, shape) in config.ExpectedTensors())
        {
            var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (var i = 0; i < data.Length; i++)
                data[i] = shape.Length == 1 ? 1f + (float)(random.NextDouble() - 0.5) * 0.1f : (float)(random.NextDouble() * 2 - 1) * 0.05f;
            source.Add(name, shape, data);
        }
        return source;
    }
}

internal sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ertas-gguf-tests-" + Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

internal sealed class ListProgressSink : Ertas.Core.IProgressSink
{
    public List<string> Lines { get; } = [];
    public void Report(string line) => Lines.Add(line);
}
