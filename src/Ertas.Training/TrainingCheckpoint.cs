using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Ertas.Core;
using Ertas.Data;

namespace Ertas.Training;

/// <summary>How often a run checkpoints, how many checkpoints it keeps, and where it resumes from.</summary>
public sealed record CheckpointPolicy
{
    public const string Latest = "latest";

    /// <summary>For the CLI and the SDK: <see cref="Latest"/> when the run has a complete checkpoint, else a fresh start.</summary>
    public const string Auto = "auto";

    /// <summary>Checkpoint every N optimizer steps; 0 turns checkpoints off.</summary>
    public int Every { get; init; }

    /// <summary>The newest K checkpoints stay; older ones are deleted after each new one.</summary>
    public int Keep { get; init; } = 2;

    /// <summary>A step folder, or <see cref="Latest"/> for the newest complete checkpoint of the run's checkpoints
    /// folder; null starts from scratch.</summary>
    public string? Resume { get; init; }

    public void Validate()
    {
        if (Every < 0) throw new ErtasException(ErrorCode.InvalidArgument, $"checkpoint every must be >= 0 (0 = off), got {Every}");
        if (Keep < 1) throw new ErtasException(ErrorCode.InvalidArgument, $"keep checkpoints must be at least 1, got {Keep}");
    }
}

/// <summary>Where a run writes besides the adapter: every path optional.</summary>
public sealed record TrainingRunSettings
{
    /// <summary>One JSON line per optimizer step.</summary>
    public string? MetricsPath { get; init; }

    /// <summary>The loss curve (<see cref="LossCurveSvg"/>), rewritten at each checkpoint and at the end.</summary>
    public string? LossCurvePath { get; init; }

    /// <summary>The folder holding <c>step-N</c> checkpoints (<c>OUT/checkpoints</c> for <see cref="Trainer.Run(string, PreparedDataset, string, TrainingOptions, IProgressSink, CancellationToken)"/>).</summary>
    public string? CheckpointsFolder { get; init; }

    public CheckpointPolicy Checkpoints { get; init; } = new();

    /// <summary>
    /// Told the name of each part of training as it starts (setup, where AdamW allocates its moments, then for
    /// each step forward, loss, backward, release, clip, optimizer, zero-grad, between-steps): a profiler's hook, which bench qlora-7b-step uses to say where the
    /// memory peak comes from. Null in ordinary runs.
    /// </summary>
    public Action<string>? Phase { get; init; }
}

/// <summary>One file of a checkpoint as the manifest records it.</summary>
public sealed record CheckpointFile(
    [property: JsonPropertyName("bytes")] long Bytes,
    [property: JsonPropertyName("sha256")] string Sha256);

/// <summary>An eval loss measured after an optimizer step.</summary>
public sealed record CheckpointEval(
    [property: JsonPropertyName("step")] long Step,
    [property: JsonPropertyName("loss")] double Loss);

/// <summary>The learning-rate schedule and where it stands (the rate is a pure function of the step index).</summary>
public sealed record CheckpointScheduler(
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("peak_lr")] double PeakLr,
    [property: JsonPropertyName("warmup_steps")] long WarmupSteps,
    [property: JsonPropertyName("total_steps")] long TotalSteps,
    [property: JsonPropertyName("next_step")] long NextStep);

/// <summary>
/// <c>checkpoint.json</c>: written last into a checkpoint folder, so a folder with a manifest whose file hashes check
/// is complete. <see cref="DataPosition"/> is the 0-based optimizer-step index into <c>Trainer.PlanSteps</c>' plan
/// (deterministic from the seed) that the resumed run starts with.
/// </summary>
public sealed record CheckpointManifest
{
    public const int CurrentFormat = 1;

    [JsonPropertyName("format")] public int Format { get; init; } = CurrentFormat;
    [JsonPropertyName("engine_version")] public string EngineVersion { get; init; } = "";
    [JsonPropertyName("step")] public long Step { get; init; }
    [JsonPropertyName("total_steps")] public long TotalSteps { get; init; }
    [JsonPropertyName("options_hash")] public string OptionsHash { get; init; } = "";
    [JsonPropertyName("options")] public Dictionary<string, string> Options { get; init; } = [];
    [JsonPropertyName("data_hash")] public string DataHash { get; init; } = "";
    [JsonPropertyName("data_position")] public long DataPosition { get; init; }
    [JsonPropertyName("optimizer_step")] public long OptimizerStep { get; init; }
    [JsonPropertyName("scheduler")] public CheckpointScheduler? Scheduler { get; init; }
    [JsonPropertyName("trained_tokens")] public long TrainedTokens { get; init; }
    [JsonPropertyName("processed_tokens")] public long ProcessedTokens { get; init; }
    [JsonPropertyName("step_losses")] public double[] StepLosses { get; init; } = [];
    [JsonPropertyName("eval_losses")] public CheckpointEval[] EvalLosses { get; init; } = [];
    [JsonPropertyName("files")] public Dictionary<string, CheckpointFile> Files { get; init; } = [];
}

/// <summary>A checkpoint read back and verified: every file the manifest lists is there with its size and SHA-256.</summary>
public sealed record TrainingCheckpoint(string Folder, CheckpointManifest Manifest)
{
    public const string ManifestFile = "checkpoint.json";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string RngStateFile = "rng_state.bin";
    public const string FolderPrefix = "step-";

    /// <summary>Files a checkpoint cannot be resumed without (besides the manifest).</summary>
    public static readonly IReadOnlyList<string> RequiredFiles =
        [Trainer.AdapterWeightsFile, Trainer.AdapterConfigFile, ErtasAdapterInfo.FileName, OptimizerFile, RngStateFile, Trainer.MetricsFile];

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a step without trained tokens has loss NaN
    };

    public string PathOf(string file) => Path.Combine(Folder, file);

    /// <summary>The metrics lines the run had written when the checkpoint was taken.</summary>
    public IReadOnlyList<string> MetricLines() =>
        [.. File.ReadAllLines(PathOf(Trainer.MetricsFile)).Where(l => l.Length > 0)];

    public static string StepFolderName(long step) => FolderPrefix + step.ToString(CultureInfo.InvariantCulture);

    /// <summary>The newest step folder under <paramref name="checkpointsFolder"/> that has a manifest (folders are moved
    /// into place whole, so one with a manifest is complete); null when there is none.</summary>
    public static string? FindLatest(string checkpointsFolder) =>
        StepFolders(checkpointsFolder).Where(f => File.Exists(Path.Combine(f.Path, ManifestFile)))
            .OrderByDescending(f => f.Step).Select(f => f.Path).FirstOrDefault();

    /// <summary>Resolves <see cref="CheckpointPolicy.Resume"/>: <c>latest</c> against <paramref name="checkpointsFolder"/>,
    /// anything else as a step folder.</summary>
    public static string ResolveResume(string resume, string? checkpointsFolder)
    {
        if (resume.Equals(CheckpointPolicy.Latest, StringComparison.OrdinalIgnoreCase))
        {
            if (checkpointsFolder is null)
                throw new ErtasException(ErrorCode.CheckpointInvalid, "resume 'latest' needs the run's checkpoints folder");
            return FindLatest(checkpointsFolder)
                ?? throw new ErtasException(ErrorCode.CheckpointInvalid,
                    $"no complete checkpoint to resume from in {checkpointsFolder} (a run writes them with --checkpoint-every N)", checkpointsFolder);
        }
        if (!Directory.Exists(resume))
            throw new ErtasException(ErrorCode.CheckpointInvalid,
                $"no checkpoint folder at '{resume}': give a step folder (OUT/checkpoints/step-N) or 'latest'", resume);
        return Path.GetFullPath(resume);
    }

    /// <summary>Reads <paramref name="folder"/>'s manifest and checks every file against it.</summary>
    public static TrainingCheckpoint Read(string folder)
    {
        var manifestPath = Path.Combine(folder, ManifestFile);
        if (!File.Exists(manifestPath))
            throw new ErtasException(ErrorCode.CheckpointInvalid,
                $"the checkpoint is incomplete: it has no {ManifestFile} (the run stopped while writing it?)", folder);
        CheckpointManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<CheckpointManifest>(File.ReadAllBytes(manifestPath), Json)
                ?? throw new ErtasException(ErrorCode.CheckpointInvalid, "the manifest holds null", manifestPath);
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.CheckpointInvalid, $"the manifest is not valid: {e.Message}", manifestPath,
                (int)(e.LineNumber ?? -1) + 1, (int)(e.BytePositionInLine ?? 0) + 1, e);
        }
        if (manifest.Format != CheckpointManifest.CurrentFormat)
            throw new ErtasException(ErrorCode.CheckpointInvalid,
                $"checkpoint format {manifest.Format} is not supported (this engine reads {CheckpointManifest.CurrentFormat})", manifestPath);
        if (manifest.Step < 1 || manifest.DataPosition != manifest.Step || manifest.StepLosses.Length != manifest.Step || manifest.Step > manifest.TotalSteps)
            throw new ErtasException(ErrorCode.CheckpointInvalid,
                $"the manifest is inconsistent: step {manifest.Step} of {manifest.TotalSteps}, data position {manifest.DataPosition}, {manifest.StepLosses.Length} step losses", manifestPath);
        foreach (var required in RequiredFiles)
            if (!manifest.Files.ContainsKey(required))
                throw new ErtasException(ErrorCode.CheckpointInvalid, $"the manifest lists no {required}", manifestPath);
        foreach (var (name, expected) in manifest.Files)
        {
            var path = Path.Combine(folder, name);
            if (name.Contains('/') || name.Contains('\\') || !File.Exists(path))
                throw new ErtasException(ErrorCode.CheckpointInvalid, $"the checkpoint is missing {name}", path);
            var actual = Describe(path);
            if (actual != expected)
                throw new ErtasException(ErrorCode.CheckpointInvalid,
                    $"{name} is corrupt: {actual.Bytes} bytes with SHA-256 {actual.Sha256[..12]}..., the manifest says {expected.Bytes} bytes with {expected.Sha256[..Math.Min(12, expected.Sha256.Length)]}...", path);
        }
        return new TrainingCheckpoint(Path.GetFullPath(folder), manifest);
    }

    /// <summary>
    /// Throws <see cref="ErrorCode.ResumeMismatch"/> naming every results-affecting setting that differs from the
    /// checkpoint's (and the data, when its hash differs): resuming with them would silently train something else.
    /// </summary>
    public void EnsureMatches(IReadOnlyList<KeyValuePair<string, string>> settings, string dataHash)
    {
        var differences = new List<string>();
        var now = settings.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        foreach (var key in Manifest.Options.Keys.Union(now.Keys).Order(StringComparer.Ordinal))
        {
            var before = Manifest.Options.GetValueOrDefault(key);
            var current = now.GetValueOrDefault(key);
            if (before != current)
                differences.Add($"{key} was {before ?? "(not set)"}, now {current ?? "(not set)"}");
        }
        if (Manifest.DataHash != dataHash)
            differences.Add($"the prepared data differs (rows hash {Short(Manifest.DataHash)} in the checkpoint, {Short(dataHash)} now)");
        if (differences.Count > 0)
            throw new ErtasException(ErrorCode.ResumeMismatch,
                $"cannot resume from step {Manifest.Step}: the run differs from the checkpoint's: {string.Join("; ", differences)}. " +
                "Resume with the original settings and data, or start a new run", PathOf(ManifestFile));
    }

    /// <summary>
    /// Writes a checkpoint atomically: <paramref name="writeFiles"/> fills a temporary folder beside the final one, the
    /// manifest (with each file's size and SHA-256) goes in last, and the folder is moved into place whole. Then all
    /// but the newest <paramref name="keep"/> step folders, and temp folders a killed run left, are deleted.
    /// </summary>
    public static string Write(string checkpointsFolder, CheckpointManifest manifest, Action<string> writeFiles, int keep)
    {
        Directory.CreateDirectory(checkpointsFolder);
        var final = Path.Combine(checkpointsFolder, StepFolderName(manifest.Step));
        var temp = Path.Combine(checkpointsFolder, $".{StepFolderName(manifest.Step)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            writeFiles(temp);
            var files = Directory.GetFiles(temp).Select(Path.GetFileName).Cast<string>().Where(n => !n.StartsWith('.'))
                .Order(StringComparer.Ordinal).ToDictionary(n => n, n => Describe(Path.Combine(temp, n)), StringComparer.Ordinal);
            var bytes = JsonSerializer.SerializeToUtf8Bytes(manifest with { Files = files }, Json);
            AtomicFile.Write(Path.Combine(temp, ManifestFile), stream => stream.Write(bytes));
            if (Directory.Exists(final))
            {
                // A step folder from an earlier attempt at this run: same settings and data, so same contents.
                var stale = final + $".{Guid.NewGuid():N}.old";
                Directory.Move(final, stale);
                Directory.Move(temp, final);
                TryDeleteFolder(stale);
            }
            else Directory.Move(temp, final);
        }
        catch
        {
            TryDeleteFolder(temp);
            throw;
        }
        Prune(checkpointsFolder, keep, manifest.Step);
        return final;
    }

    /// <summary>Deletes every step folder of an earlier run (a fresh run replaces them, as it replaces the adapter).</summary>
    public static int DeleteAll(string checkpointsFolder)
    {
        var folders = StepFolders(checkpointsFolder).ToList();
        foreach (var (path, _) in folders) TryDeleteFolder(path);
        foreach (var temp in TempFolders(checkpointsFolder)) TryDeleteFolder(temp);
        return folders.Count;
    }

    /// <summary>SHA-256 over the packed rows of both splits (ids, labels, positions, segments) and their shapes.</summary>
    public static string HashData(PackedSplit train, PackedSplit eval)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> shape = stackalloc byte[8];
        foreach (var split in new[] { train, eval })
        {
            BitConverter.TryWriteBytes(shape, split.SequenceLength);
            BitConverter.TryWriteBytes(shape[4..], split.RowCount);
            sha.AppendData(shape);
            sha.AppendData(MemoryMarshal.AsBytes(split.InputIds));
            sha.AppendData(MemoryMarshal.AsBytes(split.Labels));
            sha.AppendData(MemoryMarshal.AsBytes(split.PositionIds));
            sha.AppendData(MemoryMarshal.AsBytes(split.SegmentIds));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>SHA-256 of the settings as "key=value" lines.</summary>
    public static string HashSettings(IReadOnlyList<KeyValuePair<string, string>> settings) =>
        Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(
            string.Concat(settings.Select(p => $"{p.Key}={p.Value}\n")))));

    private static void Prune(string checkpointsFolder, int keep, long current)
    {
        // Folders of later steps than this one come from an abandoned attempt (this run resumed before them): the newest
        // K counted from the current step are the ones a resume should see.
        var folders = StepFolders(checkpointsFolder).OrderByDescending(f => f.Step).ToList();
        foreach (var (path, step) in folders)
            if (step > current) TryDeleteFolder(path);
        foreach (var (path, _) in folders.Where(f => f.Step <= current).Skip(keep))
            TryDeleteFolder(path);
        foreach (var temp in TempFolders(checkpointsFolder))
            if (!temp.Contains($".{Environment.ProcessId}.", StringComparison.Ordinal))
                TryDeleteFolder(temp);
    }

    private static IEnumerable<(string Path, long Step)> StepFolders(string checkpointsFolder)
    {
        if (!Directory.Exists(checkpointsFolder)) yield break;
        foreach (var dir in Directory.GetDirectories(checkpointsFolder, FolderPrefix + "*"))
        {
            var name = Path.GetFileName(dir);
            if (long.TryParse(name.AsSpan(FolderPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var step) && step > 0)
                yield return (dir, step);
        }
    }

    private static IEnumerable<string> TempFolders(string checkpointsFolder) =>
        Directory.Exists(checkpointsFolder)
            ? Directory.GetDirectories(checkpointsFolder, "." + FolderPrefix + "*")
                .Concat(Directory.GetDirectories(checkpointsFolder, FolderPrefix + "*.old"))
            : [];

    private static CheckpointFile Describe(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return new CheckpointFile(stream.Length, Convert.ToHexStringLower(SHA256.HashData(stream)));
    }

    private static string Short(string hash) => hash.Length > 12 ? hash[..12] : hash;

    private static void TryDeleteFolder(string path)
    {
        try { Directory.Delete(path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
