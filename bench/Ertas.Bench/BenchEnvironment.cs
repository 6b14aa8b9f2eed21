using System.Runtime.InteropServices;

namespace Ertas.Bench;

/// <summary>Where things are (the repository, the ertas CLI, the work folder) and what machine this is.</summary>
public sealed record BenchEnvironment(string RepoRoot, string ErtasDll, string WorkDir, TextWriter Log)
{
    public const string DefaultWorkDir = "/tmp/ertas-bench";

    public static BenchEnvironment Create(string? workDir, TextWriter log)
    {
        var root = FindRepoRoot();
        var work = Path.GetFullPath(workDir ?? DefaultWorkDir);
        Directory.CreateDirectory(work);
        return new BenchEnvironment(root, FindErtasDll(root), work, log);
    }

    /// <summary>Runs <c>dotnet ertas.dll ARGS</c> as a child process, measured.</summary>
    public ChildRun RunErtas(string description, params string[] arguments) =>
        ChildProcessMeasurement.Run(description, "dotnet", [ErtasDll, .. arguments], Log);

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Ertas.Build.sln")))
                return dir.FullName;
        throw new InvalidOperationException($"no Ertas.Build.sln above {AppContext.BaseDirectory}; run the bench from its build output inside the repository");
    }

    /// <summary>
    /// The Release ertas.dll the bench was built with: the project reference copies it (with its runtimeconfig)
    /// next to the bench; the Cli's own output is the fallback.
    /// </summary>
    private static string FindErtasDll(string root)
    {
        string[] candidates =
        [
            Path.Combine(AppContext.BaseDirectory, "ertas.dll"),
            Path.Combine(root, "src", "Ertas.Cli", "bin", "Release", "net10.0", "ertas.dll"),
        ];
        foreach (var dll in candidates)
            if (File.Exists(dll) && File.Exists(Path.ChangeExtension(dll, ".runtimeconfig.json")))
                return dll;
        throw new InvalidOperationException($"no runnable ertas.dll at {string.Join(" or ", candidates)}; build with -c Release");
    }
}

/// <summary>The machine a result was measured on, for the results table.</summary>
public sealed record MachineInfo(int Cores, string CpuModel, double MemoryGb, string DotNet, string Os)
{
    public static MachineInfo Current() => new(
        Environment.ProcessorCount,
        ReadCpuModel(),
        ReadMemoryGb(),
        RuntimeInformation.FrameworkDescription,
        RuntimeInformation.OSDescription);

    public string Describe() => $"{Cores} cores (nproc), {CpuModel}, {MemoryGb:F0} GB RAM, {DotNet}, {Os}";

    private static string ReadCpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line?.Split(':', 2)[1].Trim() ?? RuntimeInformation.ProcessArchitecture.ToString();
        }
        catch (IOException) { return RuntimeInformation.ProcessArchitecture.ToString(); }
    }

    private static double ReadMemoryGb()
    {
        try
        {
            var line = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
            return long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0]) / 1024.0 / 1024.0;
        }
        catch (IOException) { return 0; }
    }
}
