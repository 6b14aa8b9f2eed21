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

    /// <summary>The repository's root (the folder of Ertas.Build.sln) above the test assembly.</summary>
    public static string RepositoryRoot => Repository.Value ?? throw new InvalidOperationException("Ertas.Build.sln not found above " + AppContext.BaseDirectory);

    private static readonly Lazy<string?> Repository = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Ertas.Build.sln")))
                return dir.FullName;
        return null;
    });

    private static string? FindSharedRoot()
    {
        if (Repository.Value is not { } repository)
            return null;
        var shared = Path.GetFullPath(Path.Combine(repository, "..", "shared"));
        return Directory.Exists(shared) ? shared : null;
    }
}
