namespace Ertas.TestSupport;

/// <summary>
/// Files in ../shared beside the repository (the real Mistral tokenizer and conformance data): tests may read them
/// but never copy them in, and skip with the path they looked for when they are absent (outside users' clones).
/// </summary>
public static class SharedFiles
{
    private static readonly Lazy<string?> SharedRoot = new(FindSharedRoot);

    /// <summary>The ../shared folder, or null when it is absent.</summary>
    public static string? Root => SharedRoot.Value;

    /// <summary>The path of a file under ../shared; skips the calling test when the folder or the file is absent.</summary>
    public static string Require(params string[] relative)
    {
        var root = SharedRoot.Value;
        Skip.If(root is null, "../shared (real Mistral tokenizer and conformance files) is not present beside the repository");
        var path = Path.Combine([root!, .. relative]);
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
