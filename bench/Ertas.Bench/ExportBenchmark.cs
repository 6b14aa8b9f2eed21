using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;

namespace Ertas.Bench;

/// <summary>One measured <c>ertas export</c> run and the phases its own progress lines mark.</summary>
public sealed record ExportRun(ChildRun Run, long OutputBytes, string Sha256, double InputCachedFraction)
{
    public double ThroughputGbPerSecond => OutputBytes / 1e9 / Run.WallSeconds;

    /// <summary>Process start, runtime, checkpoint open and tokenizer load, up to "exporting GGUF".</summary>
    public double StartupSeconds => Run.SecondsAt("exporting GGUF") ?? double.NaN;

    /// <summary>Metadata plus the tensor loop (read, convert, write), up to "wrote N tensors".</summary>
    public double TensorSeconds => (Run.SecondsAt(" tensors, ") ?? double.NaN) - StartupSeconds;

    /// <summary>AtomicFile's fsync of the output and the rename, up to the CLI's closing "export: wrote" line.</summary>
    public double FlushSeconds => (Run.SecondsAt("export: wrote") ?? double.NaN) - (Run.SecondsAt(" tensors, ") ?? double.NaN);

    public double ExitSeconds => Run.WallSeconds - (Run.SecondsAt("export: wrote") ?? double.NaN);
}

public sealed record ExportBenchResult(ChildRun? Create, bool Reused, long CheckpointBytes, IReadOnlyList<ExportRun> Exports, string LoadBefore, string LoadAfter)
{
    public bool Deterministic => Exports.Select(e => e.Sha256).Distinct().Count() == 1;
}

/// <summary>
/// <c>export-7b</c>: a Mistral 7B-shaped bf16 checkpoint (~14.5 GB, 3 shards) exported to f16 GGUF by the ertas CLI
/// as a child process, so peak RSS is the export's alone. Several runs over the same input show the timing spread
/// and prove the output is byte-for-byte deterministic.
/// </summary>
public static class ExportBenchmark
{
    public const string TargetPeakRssMb = "1536";
    private const string StampFile = ".ertas-bench-complete";

    public static ExportBenchResult Run(BenchEnvironment env, int runs, bool keepFiles)
    {
        var folder = CheckpointFolder(env);
        var output = QuantizeFileBenchmark.F16Path(env, "7b");
        var loadBefore = GenerateBenchmark.LoadAverage();
        var create = CreateUnlessReusable(env);
        var reused = create is null;
        var checkpointBytes = Directory.EnumerateFiles(folder, "*.safetensors").Sum(f => new FileInfo(f).Length);
        env.Log.WriteLine($"checkpoint: {folder}, {checkpointBytes / 1e9:F2} GB of safetensors{(reused ? " (reused)" : "")}");

        var exports = new List<ExportRun>();
        try
        {
            for (var i = 1; i <= runs; i++)
            {
                var cached = CachedFraction(folder);
                var run = env.RunErtas($"export f16 run {i}/{runs}", "export", "--model", folder, "--out", output, "--type", "f16", "--force");
                var bytes = new FileInfo(output).Length;
                var hash = Sha256(output, env.Log);
                var export = new ExportRun(run, bytes, hash, cached);
                env.Log.WriteLine($"  export {i}: {bytes / 1e9:F2} GB, {export.ThroughputGbPerSecond:F2} GB/s, sha256 {hash[..16]}..., " +
                                  $"startup {export.StartupSeconds:F1} s, tensors {export.TensorSeconds:F1} s, fsync+rename {export.FlushSeconds:F1} s, " +
                                  $"input {cached:P0} in page cache before the run");
                exports.Add(export);
            }
        }
        finally
        {
            if (!keepFiles)
            {
                File.Delete(output);
                Directory.Delete(folder, recursive: true);
                env.Log.WriteLine($"deleted {folder} and {output} (pass --keep to keep them)");
            }
        }
        return new ExportBenchResult(create, reused, checkpointBytes, exports, loadBefore, GenerateBenchmark.LoadAverage());
    }

    public static string CheckpointFolder(BenchEnvironment env) => Path.Combine(env.WorkDir, "7b");

    /// <summary>The 7b checkpoint folder, created unless a complete earlier one is there (quantize-7b's input comes from it).</summary>
    public static string EnsureCheckpoint(BenchEnvironment env)
    {
        CreateUnlessReusable(env);
        return CheckpointFolder(env);
    }

    /// <summary>Runs <c>base create --preset 7b</c> unless the folder holds a complete one; null when reused.</summary>
    private static ChildRun? CreateUnlessReusable(BenchEnvironment env)
    {
        var folder = CheckpointFolder(env);
        if (IsReusable(folder, env.Log))
            return null;
        var create = env.RunErtas("base create 7b", "base", "create", "--preset", "7b", "--out", folder, "--force");
        File.WriteAllText(Path.Combine(folder, StampFile), "ertas base create --preset 7b --seed 1\n");
        return create;
    }

    /// <summary>A finished earlier create of the same preset: stamp present, config equal to 7B's, shards valid.</summary>
    private static bool IsReusable(string folder, TextWriter log)
    {
        if (!File.Exists(Path.Combine(folder, StampFile)))
            return false;
        try
        {
            using var checkpoint = HfCheckpoint.Open(folder);
            var c = checkpoint.Config;
            var expected = MistralConfig.Mistral7B;
            var same = c.HiddenSize == expected.HiddenSize && c.IntermediateSize == expected.IntermediateSize
                && c.NumHiddenLayers == expected.NumHiddenLayers && c.NumAttentionHeads == expected.NumAttentionHeads
                && c.NumKeyValueHeads == expected.NumKeyValueHeads && c.VocabSize == expected.VocabSize
                && c.TorchDtype == expected.TorchDtype && checkpoint.TokenizerPath is not null;
            if (!same) log.WriteLine($"{folder} holds a different config; recreating it");
            return same;
        }
        catch (Ertas.Core.ErtasException e)
        {
            log.WriteLine($"{folder} is not a valid checkpoint ({e.Message}); recreating it");
            return false;
        }
    }

    /// <summary>Share of the shards' bytes in the page cache (util-linux fincore), or NaN when it cannot tell.</summary>
    private static double CachedFraction(string folder)
    {
        try
        {
            var shards = Directory.EnumerateFiles(folder, "*.safetensors").ToList();
            var start = new ProcessStartInfo("fincore") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE" }.Concat(shards))
                start.ArgumentList.Add(a);
            using var process = Process.Start(start)!;
            var text = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            long resident = 0, size = 0;
            foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                resident += long.Parse(parts[0], CultureInfo.InvariantCulture);
                size += long.Parse(parts[1], CultureInfo.InvariantCulture);
            }
            return size == 0 ? double.NaN : (double)resident / size;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or FormatException or IndexOutOfRangeException)
        {
            return double.NaN;
        }
    }

    private static string Sha256(string path, TextWriter log)
    {
        var clock = Stopwatch.StartNew();
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        var hash = Convert.ToHexStringLower(SHA256.HashData(stream));
        log.WriteLine($"  sha256 of {Path.GetFileName(path)} in {clock.Elapsed.TotalSeconds:F1} s");
        return hash;
    }
}
