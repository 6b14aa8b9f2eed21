using System.Text.RegularExpressions;
using Ertas.Cli;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>What one <c>ertas</c> invocation printed and returned.</summary>
public sealed record CliResult(int ExitCode, string Out, string Error)
{
    /// <summary>stderr lines, without the TorchSharp loader's one-time patch notice (it goes to Console.Error anyway).</summary>
    public IReadOnlyList<string> ErrorLines =>
        Error.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.TrimEnd('\r'))
            .Where(l => !l.StartsWith("ertas: made", StringComparison.Ordinal))
            .ToArray();
}

/// <summary>The real <c>ertas</c> entry point, run in-process exactly as Program.Main runs it.</summary>
public static partial class Cli
{
    public static CliResult Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr, CancellationToken.None);
        return new CliResult(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Runs and insists on success, so a fixture that cannot build its model says why.</summary>
    public static CliResult Succeed(params string[] args)
    {
        var result = Run(args);
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"ertas {string.Join(' ', args)} exited {result.ExitCode}:\n{result.Error}");
        return result;
    }

    /// <summary>MSBuild's canonical diagnostic: <c>origin: error ERTAS1234: message</c>.</summary>
    [GeneratedRegex(@"^.+: error ERTAS\d{4}: .+$")]
    public static partial Regex Diagnostic();
}

/// <summary>A fresh temp folder, deleted on dispose.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder(string prefix = "ertas-it-")
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Files beside the repository that tests may use but never copy in (../shared).</summary>
public static class RepoPaths
{
    private static readonly Lazy<string?> RepoRoot = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Ertas.Build.sln")))
                return dir.FullName;
        return null;
    });

    /// <summary>The real Mistral v1 tokenizer, or null when ../shared is absent.</summary>
    public static string? MistralTokenizerV1 => Shared("mistral", "tokenizer.model.v1");

    public static string? ConformanceSample => Shared("mistral", "conformance", "no_tools", "sample.json");

    /// <summary>Mistral's v3 tokenizer (Mistral-7B v0.3), or null when ../shared is absent.</summary>
    public static string? MistralTokenizerV3 => Shared("mistral", "tokenizer.model.v3");

    public static string? ConformanceV3(string sample, string file) => Shared("mistral", "conformance", sample, file);

    private static string? Shared(params string[] parts)
    {
        if (RepoRoot.Value is not { } root) return null;
        var path = System.IO.Path.GetFullPath(System.IO.Path.Combine([root, "..", "shared", .. parts]));
        return File.Exists(path) ? path : null;
    }
}

[CollectionDefinition(Name)]
public sealed class CliModelsCollection : ICollectionFixture<CliModels>
{
    public const string Name = "models built with the ertas CLI";
}

/// <summary>
/// Models made once through the CLI, as a user makes them, and shared by every integration test: the tiny preset
/// (seed 7) and its f32 export up front; the other variants on first use, since not every run needs them.
/// </summary>
public sealed class CliModels : IDisposable
{
    private readonly TempFolder _root = new("ertas-models-");
    private readonly Lazy<string> _slidingWindowFolder;
    private readonly Lazy<string> _slidingWindowF32;
    private readonly Lazy<string> _tinyF16;
    private readonly Lazy<string> _tinyBf16;
    private readonly Lazy<(string Folder, string Gguf)?> _mistralVocabulary;
    private readonly Lazy<(string Folder, string Gguf)?> _mistralV3Vocabulary;
    private readonly Lazy<string> _inspectF16;

    public CliModels()
    {
        TinyFolder = _root.Combine("tiny");
        TinyF32 = _root.Combine("tiny-f32.gguf");
        Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "7", "--out", TinyFolder);
        Cli.Succeed("export", "--model", TinyFolder, "--out", TinyF32, "--type", "f32");

        _tinyF16 = new(() => Export(TinyFolder, "tiny-f16.gguf", "f16"));
        _tinyBf16 = new(() => Export(TinyFolder, "tiny-bf16.gguf", "bf16"));
        _slidingWindowFolder = new(() =>
        {
            var folder = _root.Combine("tiny-sw4096");
            Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "7", "--sliding-window", "4096", "--out", folder);
            return folder;
        });
        _slidingWindowF32 = new(() => Export(SlidingWindowFolder, "tiny-sw4096-f32.gguf", "f32"));
        _mistralVocabulary = new(() =>
        {
            if (RepoPaths.MistralTokenizerV1 is not { } tokenizer) return null;
            var folder = _root.Combine("mistral-vocab");
            Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "7", "--tokenizer", tokenizer,
                "--hidden-size", "64", "--intermediate-size", "256", "--layers", "1", "--heads", "4", "--kv-heads", "2", "--out", folder);
            return (folder, Export(folder, "mistral-vocab-f32.gguf", "f32"));
        });
        _mistralV3Vocabulary = new(() =>
        {
            if (RepoPaths.MistralTokenizerV3 is not { } tokenizer) return null;
            var folder = _root.Combine("mistral-v3-vocab");
            Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "7", "--tokenizer", tokenizer,
                "--hidden-size", "64", "--intermediate-size", "256", "--layers", "1", "--heads", "4", "--kv-heads", "2", "--out", folder);
            return (folder, Export(folder, "mistral-v3-vocab-f32.gguf", "f32"));
        });
        _inspectF16 = new(() =>
        {
            // Fixed names: inspect prints the file name and general.name (the folder's name), nothing else of the path.
            var folder = _root.Combine("inspect-tiny");
            Cli.Succeed("base", "create", "--preset", "tiny", "--hidden-size", "64", "--intermediate-size", "128",
                "--layers", "2", "--heads", "4", "--kv-heads", "2", "--seed", "3", "--out", folder);
            return Export(folder, "inspect-tiny-f16.gguf", "f16");
        });
    }

    /// <summary>HF folder of <c>base create --preset tiny --seed 7</c>.</summary>
    public string TinyFolder { get; }

    /// <summary>That folder exported to GGUF with f32 tensors.</summary>
    public string TinyF32 { get; }

    public string TinyF16 => _tinyF16.Value;
    public string TinyBf16 => _tinyBf16.Value;

    /// <summary>The tiny preset with <c>--sliding-window 4096</c>: a window wider than any test sequence.</summary>
    public string SlidingWindowFolder => _slidingWindowFolder.Value;
    public string SlidingWindowF32 => _slidingWindowF32.Value;

    /// <summary>A one-layer model on Mistral's real 32000-piece vocabulary, or null without ../shared.</summary>
    public (string Folder, string Gguf)? MistralVocabulary => _mistralVocabulary.Value;

    /// <summary>A one-layer model on Mistral's v3 vocabulary (32768 pieces, control tokens), or null without ../shared.</summary>
    public (string Folder, string Gguf)? MistralV3Vocabulary => _mistralV3Vocabulary.Value;

    /// <summary>A small fixed config (hidden 64, 2 layers, heads 4/2, seed 3) exported to f16, for the inspect snapshot.</summary>
    public string InspectF16 => _inspectF16.Value;

    private string Export(string folder, string fileName, string type)
    {
        var path = _root.Combine(fileName);
        Cli.Succeed("export", "--model", folder, "--out", path, "--type", type);
        return path;
    }

    public void Dispose() => _root.Dispose();
}
