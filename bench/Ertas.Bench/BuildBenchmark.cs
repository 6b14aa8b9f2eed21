using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Ertas.Bench;

/// <summary>One timed <c>dotnet</c> command and the heavy SDK stages it ran ("ertas stage: NAME" lines).</summary>
public sealed record BuildRun(string Command, double WallSeconds, int ExitCode, IReadOnlyList<string> Stages);

/// <summary>One quantization's cold eval of the sample suite: model load and every case, no cached result.</summary>
public sealed record EvalThroughput(string Quantization, int Cases, double Seconds)
{
    public double CasesPerSecond => Cases / Seconds;
}

public sealed record BuildBenchResult(BuildRun Pack, BuildRun Full, IReadOnlyList<BuildRun> NoOps, string LoadBefore, string LoadAfter,
    IReadOnlyList<EvalThroughput> Evals)
{
    public double NoOpMedianSeconds => NoOps.Select(r => r.WallSeconds).Order().ElementAt(NoOps.Count / 2);
    public bool NoOpsRanNothingHeavy => NoOps.All(r => r.ExitCode == 0 && r.Stages.Count == 0);
}

/// <summary>
/// <c>build-sample</c>: the SDK's own promise, measured on samples/TinyMistral as its README runs it. Packs the SDK and
/// engine into artifacts/feed, cleans the sample, times a full `dotnet build` (base, validate, train, merge, quantize,
/// adapter GGUF, Modelfile, lock, evals), then several no-op rebuilds (target: under 3 s with evals on, and no heavy
/// stage), then the sample's eval suite once more on each GGUF with an empty result cache (cases/s).
/// </summary>
public static class BuildBenchmark
{
    public const string Scenario = "build-sample";
    public const double NoOpTargetSeconds = 3;
    private const int NoOpRuns = 3;

    public static BuildBenchResult Run(BenchEnvironment env)
    {
        var sample = Path.Combine(env.RepoRoot, "samples", "TinyMistral");
        var loadBefore = ReadLoadAverage();
        var pack = Dotnet(env, env.RepoRoot, "pack src/Ertas.Build.Sdk -c Release");
        if (pack.ExitCode != 0)
            throw new InvalidOperationException("packing Ertas.Build.Sdk failed; see the log above");
        Dotnet(env, sample, "clean -c Release");
        var full = Dotnet(env, sample, "build -c Release");
        if (full.ExitCode != 0)
            throw new InvalidOperationException("the sample's full build failed; see the log above");
        var noOps = Enumerable.Range(0, NoOpRuns).Select(_ => Dotnet(env, sample, "build -c Release")).ToList();
        return new BuildBenchResult(pack, full, noOps, loadBefore, ReadLoadAverage(), ColdEvals(env, sample));
    }

    /// <summary>`ertas eval` as the build runs it (same engine folder, settings of the sample), into a scratch folder
    /// so no cached result is reused and the committed baselines are untouched.</summary>
    private static IReadOnlyList<EvalThroughput> ColdEvals(BenchEnvironment env, string sample)
    {
        var scratch = Path.Combine(env.WorkDir, "eval-sample");
        if (Directory.Exists(scratch)) Directory.Delete(scratch, recursive: true);
        Directory.CreateDirectory(scratch);
        var engine = Path.Combine(sample, "obj", "ertas", "engine", "cpu", "ertas.dll");
        var models = new[] { "Q8_0", "Q4_K_M" }.Select(q => Path.Combine(sample, "bin", "Release", $"TinyMistral-1.0.0.{q}.gguf"));
        var arguments = $"{engine} eval {string.Join(' ', models.Select(m => "--model " + m))} --suite {Path.Combine(sample, "evals", "capitals.jsonl")} " +
                        $"--name TinyMistral --snapshots {scratch} --out {Path.Combine(scratch, "out")} --threads 2 --context 128 --max-tokens 24";
        var start = new ProcessStartInfo("dotnet", arguments) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        env.Log.WriteLine(stderr);
        // "eval Q8_0: 11/12 passed in 0.7 s (0 cached)", one line per quantization.
        return System.Text.RegularExpressions.Regex.Matches(stderr, @"eval (\S+): \d+/(\d+) passed in ([\d.]+) s \(0 cached\)")
            .Select(m => new EvalThroughput(m.Groups[1].Value, int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture),
                double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture)))
            .ToList();
    }

    public static void AppendMarkdown(StringBuilder md, BuildBenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine(inv, $"## {Scenario}: `dotnet build samples/TinyMistral`, full and no-op");
        md.AppendLine();
        md.AppendLine("The sample as its README runs it, `-c Release`, after `dotnet pack src/Ertas.Build.Sdk` and `dotnet clean`.");
        md.AppendLine(inv, $"Load average before {r.LoadBefore}, after {r.LoadAfter}.");
        md.AppendLine();
        md.AppendLine("| build | wall time | heavy stages run |");
        md.AppendLine("|---|---|---|");
        md.AppendLine(inv, $"| full (clean) | {r.Full.WallSeconds:F1} s | {string.Join(", ", r.Full.Stages)} |");
        for (var i = 0; i < r.NoOps.Count; i++)
            md.AppendLine(inv, $"| no-op #{i + 1} | {r.NoOps[i].WallSeconds:F2} s | {(r.NoOps[i].Stages.Count == 0 ? "none" : string.Join(", ", r.NoOps[i].Stages))} |");
        md.AppendLine();
        var verdict = r.NoOpMedianSeconds < NoOpTargetSeconds && r.NoOpsRanNothingHeavy ? "meets" : "misses";
        md.AppendLine(inv, $"No-op median {r.NoOpMedianSeconds:F2} s with evals on: {verdict} the target (under {NoOpTargetSeconds:F0} s, no heavy stage). Packing took {r.Pack.WallSeconds:F1} s.");
        md.AppendLine();
        md.AppendLine("Eval throughput, the sample suite through llama.cpp, 2 threads, empty result cache (model load included):");
        md.AppendLine();
        md.AppendLine("| GGUF | cases | wall time | cases/s |");
        md.AppendLine("|---|---|---|---|");
        foreach (var e in r.Evals)
            md.AppendLine(inv, $"| {e.Quantization} | {e.Cases} | {e.Seconds:F2} s | {e.CasesPerSecond:F1} |");
    }

    private static BuildRun Dotnet(BenchEnvironment env, string directory, string arguments)
    {
        var start = new ProcessStartInfo("dotnet", arguments + " -tl:off -v:n -nologo")
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        var stages = new List<string>();
        var watch = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        void OnLine(string? line)
        {
            if (line is null) return;
            var at = line.IndexOf("ertas stage: ", StringComparison.Ordinal);
            if (at >= 0) lock (stages) stages.Add(line[(at + "ertas stage: ".Length)..].Trim());
            if (line.Contains("error", StringComparison.Ordinal) || at >= 0) env.Log.WriteLine("  " + line.Trim());
        }
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        process.WaitForExit();
        var run = new BuildRun($"dotnet {arguments}", watch.Elapsed.TotalSeconds, process.ExitCode, stages);
        env.Log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{run.Command} (in {directory}): {run.WallSeconds:F2} s, exit {run.ExitCode}, stages [{string.Join(", ", stages)}]"));
        return run;
    }

    private static string ReadLoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "n/a"; }
    }
}
