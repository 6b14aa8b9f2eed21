using Ertas.Modeling.Native;
using Ertas.TestSupport;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// What acts once per process, at its start or at libtorch's load, is compared in child processes running
/// <c>ertas generate</c>: greedy ids must not change.
/// <list type="bullet">
/// <item>The tensor block cache replaces libc10's posix_memalign and free and hands what is not its own to glibc. Many
/// PyTorch deployments preload jemalloc; under it, generation must still run cleanly (the cache then stays out:
/// libc10's other memory is jemalloc's). LD_PRELOAD acts at process start.</item>
/// <item>MKL's kernels are chosen once per process, so the choice <see cref="MklCpuDispatch"/> makes
/// (on by default where it applies) is compared with MKL's own (<see cref="MklCpuDispatch.EnableVariable"/>=0).</item>
/// </list>
/// </summary>
[Collection(CliModelsCollection.Name)]
public sealed class ChildProcessGenerationTests(CliModels models)
{
    private const string Jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

    [SkippableFact]
    public void GenerateUnderAPreloadedJemallocExitsCleanlyWithTheSameIds()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "LD_PRELOAD is a glibc loader feature");
        Skip.IfNot(File.Exists(Jemalloc), $"{Jemalloc} is not installed (Debian package libjemalloc2)");
        var plain = GenerateIds("hello", 8);
        var preloaded = GenerateIds("hello", 8, new Dictionary<string, string> { ["LD_PRELOAD"] = Jemalloc });
        Assert.Equal(plain, preloaded);
    }

    [SkippableFact]
    public void GenerateGivesTheSameIdsWithMklsVendorCheckKeptOrChanged()
    {
        var changed = GenerateIds("hello there", 12);
        var kept = GenerateIds("hello there", 12, new Dictionary<string, string> { [MklCpuDispatch.EnableVariable] = "0" });
        Assert.Equal(kept, changed);
    }

    /// <summary>The ids line of <c>ertas generate --ids</c> in a child process, which must exit cleanly.</summary>
    private string GenerateIds(string prompt, int maxTokens, IReadOnlyDictionary<string, string>? environment = null)
    {
        var dotnet = ExternalTool.FindOnPath("dotnet");
        Skip.If(dotnet is null, "dotnet is not on PATH");
        var cli = Path.Combine(AppContext.BaseDirectory, "ertas.dll");
        string[] arguments = [cli, "generate", "--model", models.TinyFolder, "--prompt", prompt, "--max-tokens", $"{maxTokens}", "--ids"];
        var (exit, output) = ExternalTool.Run(dotnet!, Path.GetTempPath(), 120, arguments, environment);
        Assert.True(exit == 0, output);
        var ids = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0].Trim();
        Assert.Matches(@"^\d+( \d+)+$", ids);
        return ids;
    }
}
