using Ertas.TestSupport;

namespace Ertas.Mistral.Tests.Tokenization;

/// <summary>
/// Real Mistral files in ../shared beside the repository (never copied into it). Tests that need them skip with
/// the path they looked for when they are absent.
/// </summary>
internal static class SharedMistralFiles
{
    public static string TokenizerV1 => SharedFiles.Require("mistral", "tokenizer.model.v1");
    public static string ConformanceSample => SharedFiles.Require("mistral", "conformance", "no_tools", "sample.json");
    public static string ConformanceTokensV1 => SharedFiles.Require("mistral", "conformance", "no_tools", "tokens_v1.json");
    public static string ConformanceTextV1 => SharedFiles.Require("mistral", "conformance", "no_tools", "text_v1.txt");
    public static string Facts => SharedFiles.Require("reference", "FACTS.md");
    public static string TokenizerV3 => SharedFiles.Require("mistral", "tokenizer.model.v3");

    /// <summary>The v3 conformance samples: no_tools, get_weather_full, parallel_calls.</summary>
    public static string V3Sample(string name, string file) => SharedFiles.Require("mistral", "conformance", name, file);
}

/// <summary>A fresh temp folder, deleted on dispose.</summary>
internal sealed class ScratchFolder : IDisposable
{
    public ScratchFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ertas-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
