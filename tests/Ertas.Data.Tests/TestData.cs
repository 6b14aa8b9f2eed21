using Ertas.TestSupport;
using System.Text;
using Ertas.Core;
using Ertas.Mistral.Tokenization;

namespace Ertas.Data.Tests;

/// <summary>Tokenizers, scratch folders and JSONL fixtures shared by the dataset tests.</summary>
internal static class TestData
{
    // Training the small BPE vocabulary takes a moment; every test can share the (immutable) result.
    private static readonly Lazy<MistralTokenizer> TinyTokenizerValue =
        new(() => MistralTokenizer.FromModel(SentencePieceBpeTrainer.TrainDefault(1024)));

    
    /// <summary>The built-in 1024-piece tokenizer that <c>base create --preset tiny</c> trains.</summary>
    public static MistralTokenizer TinyTokenizer => TinyTokenizerValue.Value;

    public static PreparationOptions Options(int sequenceLength = 256) => new() { SequenceLength = sequenceLength };

    public static string ChatLine(params (string Role, string Content)[] messages) =>
        "{\"messages\":[" + string.Join(",", messages.Select(m => $"{{\"role\":{Quote(m.Role)},\"content\":{Quote(m.Content)}}}")) + "]}";

    public static string Quote(string text) => System.Text.Json.JsonSerializer.Serialize(text);

    /// <summary>Runs validation over one in-memory file written to a scratch folder.</summary>
    public static ValidationReport Validate(ScratchFolder scratch, string name, IEnumerable<string> lines, PreparationOptions? options = null,
        bool withTokenizer = true)
    {
        var path = scratch.WriteLines(name, lines);
        return DatasetValidator.Validate([path], withTokenizer ? TinyTokenizer : null, options ?? Options());
    }

    /// <summary>Real Mistral files in ../shared beside the repository; skips the test when absent.</summary>
    public static string RequireShared(params string[] relative) => SharedFiles.Require(relative);
}

/// <summary>A fresh temp folder, deleted on dispose.</summary>
internal sealed class ScratchFolder : IDisposable
{
    public ScratchFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ertas-data-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string WriteLines(string name, IEnumerable<string> lines)
    {
        var path = File(name);
        System.IO.File.WriteAllText(path, string.Join("\n", lines) + "\n", new UTF8Encoding(false));
        return path;
    }

    public string WriteBytes(string name, byte[] bytes)
    {
        var path = File(name);
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Collects progress lines so tests can check what a user would have seen.</summary>
internal sealed class RecordingSink : IProgressSink
{
    public List<string> Lines { get; } = [];
    public void Report(string line) => Lines.Add(line);
}
