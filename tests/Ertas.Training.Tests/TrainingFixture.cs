using System.Text;
using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral.Presets;
using Ertas.Mistral.Tokenization;

namespace Ertas.Training.Tests;

/// <summary>
/// A small base model folder (tiny preset, hidden 128, 2 layers) and a generated chat dataset of 16 distinct
/// "What is the capital of X?" -> "The capital of X is Y." pairs, prepared once for every trainer test.
/// </summary>
public sealed class TrainingFixture : IDisposable
{
    public static readonly (string Country, string Capital)[] Pairs =
    [
        ("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Japan", "Tokyo"),
        ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"),
        ("Norway", "Oslo"), ("Greece", "Athens"), ("Cuba", "Havana"), ("Iran", "Tehran"),
        ("Mali", "Bamako"), ("Nepal", "Kathmandu"), ("Fiji", "Suva"), ("Laos", "Vientiane"),
    ];

    public const int SequenceLength = 128;

    public TrainingFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "ertas-train-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);
        BaseFolder = Path.Combine(Root, "base");
        BaseModelFactory.Create(new BaseModelRequest
        {
            Preset = "tiny",
            Seed = 3,
            HiddenSize = 128,
            IntermediateSize = 256,
            Layers = 2,
            Heads = 4,
            KvHeads = 2,
        }, BaseFolder, NullProgressSink.Instance);
        Tokenizer = MistralTokenizer.Load(Path.Combine(BaseFolder, "tokenizer.model"));
        DataFile = Path.Combine(Root, "capitals.jsonl");
        File.WriteAllText(DataFile, string.Join("\n", Pairs.Select(p => ChatLine(Question(p.Country), Answer(p.Country, p.Capital)))) + "\n",
            new UTF8Encoding(false));
        Data = DatasetPreparer.Prepare([DataFile], Tokenizer, null, new PreparationOptions { SequenceLength = SequenceLength },
            Path.Combine(Root, "cache"), NullProgressSink.Instance);
    }

    public string Root { get; }
    public string BaseFolder { get; }
    public string DataFile { get; }
    public MistralTokenizer Tokenizer { get; }
    public PreparedDataset Data { get; }

    public static string Question(string country) => $"What is the capital of {country}?";
    public static string Answer(string country, string capital) => $"The capital of {country} is {capital}.";

    public static string ChatLine(string user, string assistant) =>
        "{\"messages\":[{\"role\":\"user\",\"content\":" + Quote(user) + "},{\"role\":\"assistant\",\"content\":" + Quote(assistant) + "}]}";

    private static string Quote(string text) => System.Text.Json.JsonSerializer.Serialize(text);

    public string NewFolder(string name)
    {
        var path = Path.Combine(Root, name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(path);
        return path;
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Collects progress lines.</summary>
internal sealed class ListProgressSink : IProgressSink
{
    public List<string> Lines { get; } = [];
    public void Report(string line) { lock (Lines) Lines.Add(line); }
}
