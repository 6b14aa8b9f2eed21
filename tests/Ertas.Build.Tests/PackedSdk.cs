using System.Diagnostics;
using System.Text;

namespace Ertas.Build.Tests;

/// <summary>
/// The SDK as a user gets it: Ertas.Build.Sdk, Ertas.Build.Engine and Ertas.Build.Templates packed from this checkout
/// with a version of their own into a temporary folder feed, the template installed into a private template hive,
/// and a nuget.config naming only that feed and nuget.org. Our packages land in a private packages folder (so no
/// stale copy of a same-numbered version can be picked up); everything else (TorchSharp, libtorch) is read from the
/// user's global packages folder as a fallback folder, so restore stays offline and fast.
/// </summary>
public sealed class PackedSdk : IDisposable
{
    public PackedSdk()
    {
        RepoRoot = FindRepoRoot();
        Root = Path.Combine(Path.GetTempPath(), "ertas-build-tests-" + Guid.NewGuid().ToString("N")[..12]);
        Feed = Path.Combine(Root, "feed");
        Packages = Path.Combine(Root, "packages");
        Hive = Path.Combine(Root, "template-hive");
        Work = Path.Combine(Root, "work");
        Directory.CreateDirectory(Work);
        // Unique per run: the lock records it, and a build never sees a package packed by another run.
        _built = new Lazy<(string, ProcessResult)>(() =>
        {
            var project = NewProject("Capitals", "--quantizations \"Q8_0;Q4_K_M\"");
            return (project, Dotnet(project, "build").EnsureSuccess());
        });
        Version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}";
        _cliTool = new Lazy<string>(() =>
        {
            Run(RepoRoot, "dotnet", $"pack src/Ertas.Cli/Ertas.Cli.csproj -c {Configuration} -p:PackageVersion={Version} -p:PackageOutputPath={Feed}/ -nodeReuse:false", 600,
                privatePackages: false).EnsureSuccess();
            return Version;
        });
        _installedTool = new Lazy<string>(() =>
        {
            var toolPath = Path.Combine(Root, "tool");
            Run(Work, "dotnet", $"tool install Ertas.Cli --version {CliToolVersion} --tool-path {toolPath} --add-source {Feed}", 300).EnsureSuccess();
            return Path.Combine(toolPath, "ertas");
        });
        var configuration = Configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}") ? "Release" : "Debug";

        foreach (var project in new[] { "src/Ertas.Build.Sdk/Ertas.Build.Sdk.csproj", "templates/Ertas.Build.Templates.csproj" })
            // With the repository's own packages folder: packing restores and rebuilds the repository's projects, and
            // their obj/project.assets.json must keep pointing where the solution build's do.
            Run(RepoRoot, "dotnet", $"pack {project} -c {configuration} -p:PackageVersion={Version} -p:PackageOutputPath={Feed}/ -nodeReuse:false", 600,
                    privatePackages: false)
                .EnsureSuccess();
        Run(Work, "dotnet", $"new install {Path.Combine(Feed, $"Ertas.Build.Templates.{Version}.nupkg")} --debug:custom-hive {Hive}", 120).EnsureSuccess();

        var globalPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        File.WriteAllText(Path.Combine(Work, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="ertas-test-feed" value="{Feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <fallbackPackageFolders>
                <add key="user-global-packages" value="{globalPackages}" />
              </fallbackPackageFolders>
            </configuration>
            """);
        // Keep the temp folder's builds free of any Directory.Build.props above it.
        File.WriteAllText(Path.Combine(Work, "Directory.Build.props"), "<Project />");
        File.WriteAllText(Path.Combine(Work, "Directory.Build.targets"), "<Project />");
    }

    /// <summary>
    /// The ertas command as a dotnet tool package (Ertas.Cli) in <see cref="Feed"/>, packed on first use: the GitHub
    /// Action installs it from a feed at an exact version.
    /// </summary>
    public string CliToolVersion => _cliTool.Value;

    private readonly Lazy<string> _cliTool;

    /// <summary>The ertas executable, installed once from <see cref="Feed"/> as a user installs the tool.</summary>
    public string ErtasTool => _installedTool.Value;

    private readonly Lazy<string> _installedTool;

    public string RepoRoot { get; }
    public string Root { get; }
    public string Feed { get; }
    public string Packages { get; }
    public string Hive { get; }
    public string Work { get; }

    /// <summary>The configuration these tests were built in, which packing uses too.</summary>
    public string Configuration { get; }
    public string Version { get; }

    /// <summary><c>dotnet new ertas-model -n NAME [options]</c> in a fresh folder; returns the project folder.</summary>
    public string NewProject(string name, string options = "")
    {
        var parent = Path.Combine(Work, name + "-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(parent);
        Run(parent, "dotnet", $"new ertas-model -n {name} {options} --debug:custom-hive {Hive}", 120).EnsureSuccess();
        return Path.Combine(parent, name);
    }

    /// <summary>
    /// One template project ("Capitals", Q8_0 and Q4_K_M), fully built once per test class; tests that need a built
    /// project work on <see cref="CopyOfBuiltProject"/> copies so that each full build is paid for once.
    /// </summary>
    public (string Project, ProcessResult FirstBuild) BuiltProject => _built.Value;

    private readonly Lazy<(string, ProcessResult)> _built;

    /// <summary>
    /// A copy of <see cref="BuiltProject"/> in a new folder, as a user would copy a project: timestamps kept, the
    /// 500 MB engine folder hard-linked (nothing writes into it in place).
    /// </summary>
    public string CopyOfBuiltProject()
    {
        var (source, _) = BuiltProject;
        var parent = Path.Combine(Work, "copy-" + Guid.NewGuid().ToString("N")[..6]);
        var target = Path.Combine(parent, Path.GetFileName(source));
        Directory.CreateDirectory(target);
        const string engine = "obj/ertas/engine";
        Run(source, "bash", $"-c \"tar --exclude=./{engine} -cf - . | (cd '{target}' && tar -xpf -) && cp -al '{Path.Combine(source, engine)}' '{Path.Combine(target, engine)}'\"", 120)
            .EnsureSuccess();
        return target;
    }

    /// <summary>
    /// A copy of the repository's samples/TinyMistral as a user would build it from this feed: bin, obj and its
    /// nuget.config (which points at the repository's artifacts) left out, the SDK version set to this fixture's.
    /// </summary>
    public string CopyOfSample()
    {
        var source = Path.Combine(RepoRoot, "samples", "TinyMistral");
        var target = Path.Combine(Work, "sample-" + Guid.NewGuid().ToString("N")[..6], "TinyMistral");
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(source, file);
            var top = relative.Split(Path.DirectorySeparatorChar)[0];
            if (top is "bin" or "obj" or "nuget.config" || relative.EndsWith(".received.json", StringComparison.Ordinal))
                continue;
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(target, relative))!);
            File.Copy(file, Path.Combine(target, relative));
        }
        var project = Path.Combine(target, "TinyMistral.ertasproj");
        File.WriteAllText(project, System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(project),
            "Sdk=\"Ertas\\.Build\\.Sdk/[^\"]+\"", $"Sdk=\"Ertas.Build.Sdk/{Version}\""));
        return target;
    }

    /// <summary><c>dotnet build</c> (or another verb) with plain console logging at normal verbosity.</summary>
    public ProcessResult Dotnet(string directory, string verb, string extra = "", int timeoutSeconds = 600,
        IReadOnlyDictionary<string, string>? environment = null) =>
        Run(directory, "dotnet", $"{verb} -tl:off -v:n -nologo -nodeReuse:false {extra}", timeoutSeconds, environment: environment);

    /// <summary>Runs a process the way a user's shell would; <paramref name="privatePackages"/> points NuGet at this
    /// fixture's own packages folder (the user's builds), else the environment's (the repository's).</summary>
    public ProcessResult Run(string directory, string fileName, string arguments, int timeoutSeconds, bool privatePackages = true,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        using var running = Start(directory, fileName, arguments, privatePackages, environment);
        return running.WaitForExit(TimeSpan.FromSeconds(timeoutSeconds));
    }

    /// <summary><c>dotnet build</c> (or another verb) started and left running, for tests that act while it works.</summary>
    public RunningProcess StartDotnet(string directory, string verb, string extra = "") =>
        Start(directory, "dotnet", $"{verb} -tl:off -v:n -nologo -nodeReuse:false {extra}", privatePackages: true);

    private RunningProcess Start(string directory, string fileName, string arguments, bool privatePackages,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(fileName, arguments)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // The test host runs under `dotnet test`, whose MSBuild settings must not leak into the user's builds.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("MSBuild", StringComparison.Ordinal) || k == "DOTNET_HOST_PATH" || k.StartsWith("VSTEST", StringComparison.Ordinal)).ToList())
            start.Environment.Remove(key);
        // The user's builds run as on a developer's machine even when the tests run on CI (where a missing eval baseline
        // is an error); tests that play CI pass -p:ContinuousIntegrationBuild=true.
        start.Environment.Remove("CI");
        if (privatePackages) start.Environment["NUGET_PACKAGES"] = Packages;
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        start.Environment["DOTNET_CLI_DO_NOT_USE_MSBUILD_SERVER"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
            start.Environment[key] = value;
        return new RunningProcess(start);
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Ertas.Build.sln")))
                return dir.FullName;
        throw new InvalidOperationException("Ertas.Build.sln not found above " + AppContext.BaseDirectory);
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

public sealed record ProcessResult(string Command, int ExitCode, string Output, TimeSpan Elapsed)
{
    private const string StageMarker = "ertas stage: ";

    /// <summary>The heavy stages that ran, from the SDK's "ertas stage: NAME" lines, in order.</summary>
    public IReadOnlyList<string> Stages => Output.Split('\n')
        .Where(l => l.Contains(StageMarker, StringComparison.Ordinal))
        .Select(l => l[(l.IndexOf(StageMarker, StringComparison.Ordinal) + StageMarker.Length)..].Trim())
        .ToList();

    public ProcessResult EnsureSuccess() =>
        ExitCode == 0 ? this : throw new InvalidOperationException($"'{Command}' exited with {ExitCode}:\n{Output}");
}

/// <summary>A started process whose stdout and stderr are collected line by line as they arrive.</summary>
public sealed class RunningProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly Stopwatch _watch = Stopwatch.StartNew();
    private readonly string _command;

    public RunningProcess(ProcessStartInfo start)
    {
        _command = $"{start.FileName} {start.Arguments}";
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }


    public string OutputSoFar { get { lock (_output) return _output.ToString(); } }

    private void Append(string? line)
    {
        if (line is not null) lock (_output) _output.AppendLine(line);
    }

    /// <summary>Waits until the output so far satisfies <paramref name="condition"/>; false when the process exits or time runs out first.</summary>
    public bool WaitForOutput(Func<string, bool> condition, TimeSpan timeout)
    {
        var deadline = _watch.Elapsed + timeout;
        while (_watch.Elapsed < deadline)
        {
            if (condition(OutputSoFar)) return true;
            if (_process.HasExited) return condition(OutputSoFar);
            Thread.Sleep(100);
        }
        return false;
    }

    /// <summary>Sends SIGINT (what a terminal sends on Ctrl+C) and waits for the process to exit.</summary>
    public ProcessResult Interrupt(TimeSpan timeout)
    {
        if (_process.HasExited) // never signal a pid the system may have reused
            throw new InvalidOperationException($"'{_command}' ended before it could be interrupted:\n{OutputSoFar}");
        if (SendSignal(_process.Id, Sigint) != 0)
            throw new InvalidOperationException($"kill(SIGINT) failed with errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        return WaitForExit(timeout);
    }

    private const int Sigint = 2;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    public ProcessResult WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{_command}' ran longer than {timeout.TotalSeconds:F0} s:\n{OutputSoFar}");
        }
        _process.WaitForExit(); // drains the redirected streams
        return new ProcessResult(_command, _process.ExitCode, OutputSoFar, _watch.Elapsed);
    }

    public void Dispose()
    {
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
