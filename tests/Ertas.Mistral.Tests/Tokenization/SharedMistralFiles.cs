namespace Ertas.Mistral.Tests.Tokenization;

/// <summary>
/// Real Mistral files in ../shared beside the repository (never copied into it). Tests that need them skip with
/// the path they looked for when they are absent.
/// </summary>
internal static class SharedMistralFiles
{
    private static readonly Lazy<string?> SharedRoot = new(FindSharedRoot);

    public static string TokenizerV1 => Require(Path.Combine("mistral", "tokenizer.model.v1"));
    public static string ConformanceSample => Require(Path.Combine("mistral", "conformance", "no_tools", "sample.json"));
    public static string ConformanceTokensV1 => Require(Path.Combine("mistral", "conformance", "no_tools", "tokens_v1.json"));
    public static string ConformanceTextV1 => Require(Path.Combine("mistral", "conformance", "no_tools", "text_v1.txt"));
    public static string Facts => Require(Path.Combine("reference", "FACTS.md"));

    private static string Require(string relative)
    {
        var root = SharedRoot.Value;
        Skip.If(root is null, "../shared (real Mistral tokenizer and conformance files) is not present beside the repository");
        var path = Path.Combine(root!, relative);
        Skip.IfNot(File.Exists(path), $"{path} is not present");
        return path;
    }

    private static string? FindSharedRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Ertas.Build.sln")))
            {
                var shared = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared"));
                return Directory.Exists(shared) ? shared : null;
            }
        }
        return null;
    }
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
