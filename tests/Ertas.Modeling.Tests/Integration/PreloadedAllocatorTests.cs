using Ertas.TestSupport;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// The tensor block cache replaces libc10's posix_memalign and free and hands what is not its own to glibc. Many
/// PyTorch deployments preload jemalloc; under it, generation must still run cleanly and give the same ids (the cache
/// then stays out: libc10's other memory is jemalloc's). A child process, because LD_PRELOAD acts at process start.
/// </summary>
[Collection(CliModelsCollection.Name)]
public sealed class PreloadedAllocatorTests(CliModels models)
{
    private const string Jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

    [SkippableFact]
    public void GenerateUnderAPreloadedJemallocExitsCleanlyWithTheSameIds()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "LD_PRELOAD is a glibc loader feature");
        Skip.IfNot(File.Exists(Jemalloc), $"{Jemalloc} is not installed (Debian package libjemalloc2)");
        var dotnet = ExternalTool.FindOnPath("dotnet");
        Skip.If(dotnet is null, "dotnet is not on PATH");
        var cli = Path.Combine(AppContext.BaseDirectory, "ertas.dll");
        string[] arguments = [cli, "generate", "--model", models.TinyFolder, "--prompt", "hello", "--max-tokens", "8", "--ids"];

        var plain = ExternalTool.Run(dotnet!, Path.GetTempPath(), 120, arguments);
        var preloaded = ExternalTool.Run(dotnet!, Path.GetTempPath(), 120, arguments, new Dictionary<string, string> { ["LD_PRELOAD"] = Jemalloc });

        Assert.True(plain.Exit == 0, plain.Output);
        Assert.True(preloaded.Exit == 0, preloaded.Output);
        Assert.Equal(FirstLine(plain.Output), FirstLine(preloaded.Output));
        Assert.Matches(@"^\d+( \d+)+$", FirstLine(plain.Output));
    }

    private static string FirstLine(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0].Trim();
}
