using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Ertas.Core;
using Ertas.Gguf;
using NuGet.Versioning;

namespace Ertas.GitHub;

/// <summary>What a release asset is, for the model card and the order of uploads.</summary>
public enum ReleaseFileKind
{
    Gguf,
    GgufShard,
    AdapterGguf,
    Modelfile,
    Lock,
    EvalSnapshot,
    ModelCard,
    Checksums,
    Other,
}

/// <summary>One file of a release: an asset on GitHub.</summary>
/// <param name="Name">The asset name on GitHub (the file name).</param>
/// <param name="Path">Where its bytes are on disk.</param>
/// <param name="Sha256">Lowercase hex.</param>
public sealed record ReleaseFile(string Name, string Path, long Bytes, string Sha256, ReleaseFileKind Kind);

/// <summary>A GGUF over the asset limit, shipped as llama.cpp split shards.</summary>
/// <param name="Name">The original file name, which a merge gives back byte for byte.</param>
/// <param name="Shards">Asset names, first shard first.</param>
public sealed record SplitGguf(string Name, long Bytes, string Sha256, IReadOnlyList<string> Shards);

/// <summary>An eval snapshot's summary, for the model card and the release notes.</summary>
/// <param name="Name">The snapshot's asset name.</param>
/// <param name="File">The GGUF the snapshot scored, as the snapshot names it.</param>
/// <param name="Sha256">That GGUF's SHA-256 when scored, to tell whether the released bytes are the scored ones.</param>
/// <param name="Metrics">The summary's other numbers (mean_score, acc, ...), as written, in the snapshot's order.</param>
public sealed record EvalSummaryLine(
    string Name,
    string? Quantization,
    string? File,
    string? Sha256,
    int Cases,
    int Passed,
    double PassRate,
    IReadOnlyList<KeyValuePair<string, string>> Metrics);

/// <summary>What to release besides the lock's outputs, and where it is going.</summary>
public sealed record ReleasePlanOptions
{
    /// <summary>The tag; default <c>v&lt;version&gt;</c>. It must name the lock's version (<c>v1.2.0</c> or <c>Model-v1.2.0</c>).</summary>
    public string? Tag { get; init; }

    /// <summary>More files to attach, typically the eval snapshots (<c>*.verified.json</c>), whose summaries the card shows.</summary>
    public IReadOnlyList<string> ExtraAssets { get; init; } = [];

    /// <summary>The commit the model was built from (GITHUB_SHA): the release's target and the card's provenance.</summary>
    public string? Commit { get; init; }

    /// <summary><c>owner/name</c> (GITHUB_REPOSITORY), for links in the card; none when absent.</summary>
    public string? Repository { get; init; }

    /// <summary>GITHUB_SERVER_URL: https://github.com, or the GHES host.</summary>
    public string ServerUrl { get; init; } = "https://github.com";

    /// <summary>GGUFs larger than this are split into shards no larger than this.</summary>
    public long MaxAssetBytes { get; init; } = ReleasePlan.DefaultMaxAssetBytes;
}

/// <summary>A release ready to publish: every asset verified and hashed, the card and checksums written.</summary>
/// <param name="Title">The release's name on GitHub.</param>
/// <param name="Notes">The release's body: short, with the eval summary; the card has the rest.</param>
/// <param name="Assets">Sorted by name (ordinal); SHA256SUMS lists every one but itself.</param>
/// <param name="Sha256Sums">SHA256SUMS's exact text.</param>
/// <param name="StagingDirectory">Where the shards, README.md and SHA256SUMS were written.</param>
public sealed record PreparedRelease(
    ModelLock Lock,
    string Tag,
    string Title,
    string Notes,
    string? Commit,
    IReadOnlyList<ReleaseFile> Assets,
    string Sha256Sums,
    IReadOnlyList<EvalSummaryLine> Evals,
    IReadOnlyList<SplitGguf> Splits,
    string StagingDirectory)
{
    public SemanticVersion Version => Lock.SemanticVersion;

    /// <summary>Prereleases (<c>1.2.0-rc.1</c>, pull-request builds) may be replaced; stable versions never are.</summary>
    public bool Prerelease => Lock.SemanticVersion.IsPrerelease;

    public ReleaseFile? Find(string name) => Assets.FirstOrDefault(a => a.Name == name);
}

/// <summary>
/// Turns a build's lock into the files of a GitHub release (issue 12): checks that every output is what the lock
/// says, splits GGUFs over GitHub's asset limit, and writes SHA256SUMS and the model card. Same inputs, same bytes.
/// </summary>
public static class ReleasePlan
{
    /// <summary>GitHub refuses release assets of 2 GiB or more ("each file ... must be under 2 GiB").</summary>
    public const long GitHubAssetLimit = 2_147_483_648;

    /// <summary>
    /// 2,000,000,000 bytes, 140.6 MiB under the limit: the same as <c>ertas gguf split</c>'s default, so a release and a
    /// manual split give the same shards, and room for what a shard's size estimate leaves out (the first shard's
    /// metadata, a few MB for a large vocabulary) and for a GHES proxy that counts the request's framing too.
    /// </summary>
    public const long DefaultMaxAssetBytes = GgufSplit.DefaultMaxShardBytes;

    public const string ChecksumsName = "SHA256SUMS";
    public const string ModelCardName = "README.md";
    public const string EvalSnapshotSuffix = ".verified.json";

    // Room for split.no, split.count and split.tensors.count and the alignment padding a shard adds to its metadata.
    private const long SplitKeysAllowance = 4096;

    /// <summary>
    /// Verifies, splits and writes; <paramref name="stagingDirectory"/> receives the shards, README.md and SHA256SUMS.
    /// Throws ErtasException naming the file for a missing or stale output, a name clash or a file over the limit.
    /// </summary>
    public static PreparedRelease Prepare(
        ModelLock lockFile,
        ReleasePlanOptions options,
        string stagingDirectory,
        IProgressSink? progress = null,
        CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(lockFile);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(stagingDirectory);
        if (options.MaxAssetBytes <= SplitKeysAllowance || options.MaxAssetBytes >= GitHubAssetLimit)
        {
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"the largest release asset must be between {SplitKeysAllowance + 1:N0} bytes and GitHub's limit of {GitHubAssetLimit - 1:N0}, got {options.MaxAssetBytes:N0}");
        }

        var tag = ResolveTag(lockFile, options.Tag);
        var staging = Path.GetFullPath(stagingDirectory);
        Directory.CreateDirectory(staging);

        var assets = new List<ReleaseFile>();
        var splits = new List<SplitGguf>();
        GgufCardMetadata? metadata = null;
        string? modelfileGguf = null;

        foreach (var output in lockFile.Outputs.OrderBy(o => o.Name, StringComparer.Ordinal))
        {
            ct.ThrowIfCancellationRequested();
            var path = lockFile.PathOf(output);
            Verify(lockFile, output, path, ct);
            progress?.Report($"release: verified {output.Name} ({output.Bytes:N0} bytes)");
            var kind = output.Kind switch
            {
                LockOutput.GgufKind => ReleaseFileKind.Gguf,
                LockOutput.AdapterGgufKind => ReleaseFileKind.AdapterGguf,
                LockOutput.ModelfileKind => ReleaseFileKind.Modelfile,
                _ => ReleaseFileKind.Other,
            };

            if (kind == ReleaseFileKind.Gguf)
            {
                metadata ??= GgufCardMetadata.Read(path);
            }

            if (kind == ReleaseFileKind.Modelfile)
            {
                modelfileGguf ??= ModelCard.ModelfileSource(path);
            }

            if (kind == ReleaseFileKind.Gguf && output.Bytes > options.MaxAssetBytes)
            {
                var split = Split(output, path, staging, options.MaxAssetBytes, progress, ct);
                splits.Add(split.Split);
                assets.AddRange(split.Shards);
                continue;
            }

            assets.Add(new ReleaseFile(output.Name, path, output.Bytes, output.Sha256, kind));
        }

        assets.Add(Hashed(lockFile.FullPath, ReleaseFileKind.Lock, ct));

        var evals = new List<EvalSummaryLine>();
        foreach (var extra in options.ExtraAssets.Select(Path.GetFullPath).Distinct(StringComparer.Ordinal))
        {
            if (!File.Exists(extra))
            {
                throw new ErtasException(ErrorCode.FileNotFound, $"the release asset '{extra}' does not exist; check the path given for extra assets", extra);
            }

            var isSnapshot = extra.EndsWith(EvalSnapshotSuffix, StringComparison.OrdinalIgnoreCase);
            var asset = Hashed(extra, isSnapshot ? ReleaseFileKind.EvalSnapshot : ReleaseFileKind.Other, ct);
            assets.Add(asset);
            if (isSnapshot)
            {
                evals.Add(ModelCard.ReadEvalSummary(extra));
            }
        }

        evals.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        foreach (var asset in assets)
        {
            EnsureFits(asset, options.MaxAssetBytes);
        }

        var context = new ModelCard.Context(lockFile, tag, options, metadata ?? GgufCardMetadata.Empty, modelfileGguf, evals, splits);
        var cardPath = Path.Combine(staging, ModelCardName);
        AtomicFile.WriteAllTextIfChanged(cardPath, ModelCard.Render(context, assets));
        assets.Add(Hashed(cardPath, ReleaseFileKind.ModelCard, ct));
        EnsureUniqueNames(assets);

        var sums = Sha256Sums(assets);
        var sumsPath = Path.Combine(staging, ChecksumsName);
        AtomicFile.WriteAllTextIfChanged(sumsPath, sums);
        assets.Add(Hashed(sumsPath, ReleaseFileKind.Checksums, ct));
        EnsureUniqueNames(assets);
        assets.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));

        return new PreparedRelease(lockFile, tag, ModelCard.Title(lockFile), ModelCard.Notes(context, assets), options.Commit,
            assets, sums, evals, splits, staging);
    }

    /// <summary><c>&lt;hex&gt;  &lt;name&gt;\n</c> per asset, sorted by name: what <c>sha256sum -c</c> reads.</summary>
    internal static string Sha256Sums(IEnumerable<ReleaseFile> assets)
    {
        var sb = new StringBuilder();
        foreach (var asset in assets.Where(a => a.Kind != ReleaseFileKind.Checksums).OrderBy(a => a.Name, StringComparer.Ordinal))
        {
            sb.Append(asset.Sha256).Append("  ").Append(asset.Name).Append('\n');
        }

        return sb.ToString();
    }

    /// <summary>SHA256SUMS text back into name to hash; lines that are not <c>hex  name</c> are ignored.</summary>
    internal static IReadOnlyDictionary<string, string> ParseSha256Sums(string text)
    {
        var sums = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            var trimmed = line.TrimEnd('\r');
            // sha256sum writes "hash  name", or "hash *name" in binary mode.
            if (trimmed.Length > 66 && trimmed[64] == ' ' && (trimmed[65] == ' ' || trimmed[65] == '*') && trimmed[..64].All(char.IsAsciiHexDigit))
            {
                sums[trimmed[66..]] = trimmed[..64].ToLowerInvariant();
            }
        }

        return sums;
    }

    internal static string Sha256OfFile(string path, CancellationToken ct)
    {
        // Not an async file handle: HashDataAsync reads it synchronously, checking the token between its chunks.
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(SHA256.HashDataAsync(stream, ct).AsTask().GetAwaiter().GetResult());
    }

    private static string ResolveTag(ModelLock lockFile, string? tag)
    {
        if (string.IsNullOrWhiteSpace(tag))
        {
            return ModelVersions.ReleaseTag(lockFile.Model, lockFile.SemanticVersion, severalModels: false);
        }

        var named = ModelVersions.VersionOfTag(tag.Trim(), lockFile.Model);
        if (named is null || !VersionComparer.Default.Equals(named, lockFile.SemanticVersion))
        {
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"the tag '{tag}' does not name {lockFile.Model} {lockFile.Version}; use v{lockFile.SemanticVersion.ToNormalizedString()} or {lockFile.Model}-v{lockFile.SemanticVersion.ToNormalizedString()}, or change ModelVersion and rebuild");
        }

        return tag.Trim();
    }

    private static void Verify(ModelLock lockFile, LockOutput output, string path, CancellationToken ct)
    {
        const string rebuild = "the build that wrote the lock did not leave this file as it recorded it (an interrupted or partial build, or a file changed since); rebuild the model project (dotnet build) and release again";
        if (!File.Exists(path))
        {
            throw new ErtasException(ErrorCode.ReleaseAssetStale,
                $"{output.Name}, an output of {Path.GetFileName(lockFile.FullPath)}, is missing: {rebuild}", path);
        }

        var length = new FileInfo(path).Length;
        if (length != output.Bytes)
        {
            throw new ErtasException(ErrorCode.ReleaseAssetStale,
                string.Create(CultureInfo.InvariantCulture, $"{output.Name} is {length:N0} bytes but the lock records {output.Bytes:N0}: {rebuild}"), path);
        }

        var sha = Sha256OfFile(path, ct);
        if (sha != output.Sha256)
        {
            throw new ErtasException(ErrorCode.ReleaseAssetStale,
                $"{output.Name} has SHA-256 {sha} but the lock records {output.Sha256}: {rebuild}", path);
        }
    }

    private static (SplitGguf Split, IReadOnlyList<ReleaseFile> Shards) Split(
        LockOutput output, string path, string staging, long maxAssetBytes, IProgressSink? progress, CancellationToken ct)
    {
        // GgufSplit bounds a shard's tensor data; the first shard also carries all the metadata and tensor infos,
        // which the original's data offset bounds, so that much comes off the budget of every shard.
        long header;
        using (var reader = new GgufReader(path))
        {
            header = reader.DataStart;
        }

        var budget = maxAssetBytes - header - SplitKeysAllowance;
        if (budget <= 0)
        {
            throw new ErtasException(ErrorCode.ReleaseAssetInvalid,
                $"{output.Name}'s metadata alone ({header:N0} bytes) does not fit in a release asset of {maxAssetBytes:N0} bytes; raise the largest asset size", path);
        }

        var prefix = Path.Combine(staging, Path.GetFileNameWithoutExtension(output.Name));
        var shardPaths = GgufSplit.Split(path, prefix, budget, overwrite: true, progress, ct);
        var shards = shardPaths.Select(p => Hashed(p, ReleaseFileKind.GgufShard, ct)).ToList();
        foreach (var shard in shards)
        {
            if (shard.Bytes > maxAssetBytes)
            {
                throw new ErtasException(ErrorCode.ReleaseAssetInvalid,
                    $"{output.Name} has a tensor too large for one release asset of {maxAssetBytes:N0} bytes ({shard.Name} is {shard.Bytes:N0}); raise the largest asset size up to GitHub's limit", path);
            }
        }

        return (new SplitGguf(output.Name, output.Bytes, output.Sha256, [.. shards.Select(s => s.Name)]), shards);
    }

    private static ReleaseFile Hashed(string path, ReleaseFileKind kind, CancellationToken ct) =>
        new(Path.GetFileName(path), path, new FileInfo(path).Length, Sha256OfFile(path, ct), kind);

    private static void EnsureFits(ReleaseFile asset, long maxAssetBytes)
    {
        if (asset.Bytes > maxAssetBytes)
        {
            var why = asset.Kind == ReleaseFileKind.AdapterGguf
                ? "llama.cpp loads a LoRA adapter from one file, so it cannot be split"
                : "only model GGUFs are split";
            throw new ErtasException(ErrorCode.ReleaseAssetInvalid,
                string.Create(CultureInfo.InvariantCulture, $"{asset.Name} is {asset.Bytes:N0} bytes, over the largest release asset of {maxAssetBytes:N0} bytes, and {why}; leave it out of the release or raise the largest asset size up to GitHub's limit"),
                asset.Path);
        }
    }

    private static void EnsureUniqueNames(IReadOnlyList<ReleaseFile> assets)
    {
        foreach (var asset in assets)
        {
            // GitHub renames an asset whose name has other characters (a space becomes a dot), which would break
            // SHA256SUMS and the comparison with an earlier run: refuse instead of publishing names we did not write.
            if (asset.Name.StartsWith('.') || asset.Name.EndsWith('.')
                || !asset.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' or '+'))
            {
                throw new ErtasException(ErrorCode.ReleaseAssetInvalid,
                    $"the release asset name '{asset.Name}' has characters GitHub would change; rename the file to letters, digits and . - _ + (not starting or ending with a dot)",
                    asset.Path);
            }
        }

        // Names that differ only in case would overwrite each other when downloaded to Windows or macOS.
        var clash = assets.GroupBy(a => a.Name, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (clash is not null)
        {
            throw new ErtasException(ErrorCode.ReleaseAssetInvalid,
                $"two release assets would be named '{clash.Key}' ({string.Join(" and ", clash.Select(a => a.Path))}); a release holds one file per name: rename or leave out one of them",
                clash.First().Path);
        }
    }
}
