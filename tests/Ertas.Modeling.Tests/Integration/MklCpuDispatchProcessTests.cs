using Ertas.Modeling.Native;
using Ertas.TestSupport;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// MKL's kernels are chosen once per process, so the choice <see cref="MklCpuDispatch"/> makes is compared in child
/// processes: generation gives the same ids with it (<see cref="MklCpuDispatch.EnableVariable"/>=1) and without.
/// </summary>
[Collection(CliModelsCollection.Name)]
public sealed class MklCpuDispatchProcessTests(CliModels models)
{
    [SkippableFact]
    public void GenerateGivesTheSameIdsWithMklsVendorCheckKeptOrChanged()
    {
        var dotnet = ExternalTool.FindOnPath("dotnet");
        Skip.If(dotnet is null, "dotnet is not on PATH");
        var cli = Path.Combine(AppContext.BaseDirectory, "ertas.dll");
        string[] arguments = [cli, "generate", "--model", models.TinyFolder, "--prompt", "hello there", "--max-tokens", "12", "--ids"];

        var changed = ExternalTool.Run(dotnet!, Path.GetTempPath(), 120, arguments, new Dictionary<string, string> { [MklCpuDispatch.EnableVariable] = "1" });
        var kept = ExternalTool.Run(dotnet!, Path.GetTempPath(), 120, arguments);

        Assert.True(changed.Exit == 0, changed.Output);
        Assert.True(kept.Exit == 0, kept.Output);
        Assert.Equal(FirstLine(kept.Output), FirstLine(changed.Output));
        Assert.Matches(@"^\d+( \d+)+$", FirstLine(changed.Output));
    }

    private static string FirstLine(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0].Trim();
}
