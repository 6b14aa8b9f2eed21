using System.Globalization;
using System.Text;
using Ertas.Core;
using NuGet.Versioning;
using Octokit;

namespace Ertas.GitHub;

/// <summary>What to do when the tag already has a release whose content differs from ours.</summary>
public enum OnExisting
{
    /// <summary>Refuse, naming the assets that differ.</summary>
    Fail,

    /// <summary>Leave the release as it is and say so.</summary>
    Skip,

    /// <summary>Replace what differs; only for prereleases and drafts, never a published stable release.</summary>
    Update,
}

/// <summary>What <see cref="ReleasePublisher.PublishAsync"/> did.</summary>
public enum ReleaseOutcome
{
    Created,
    Updated,
    Unchanged,
    Skipped,
    DryRun,
}

/// <summary>How to publish.</summary>
public sealed record ReleasePublishOptions
{
    public OnExisting OnExisting { get; init; } = OnExisting.Fail;

    /// <summary>Leave a new (or unfinished) release as a draft instead of publishing it.</summary>
    public bool Draft { get; init; }

    /// <summary>Read what is there and say what would be done; write nothing.</summary>
    public bool DryRun { get; init; }

    /// <summary>The token for the streamed uploads and downloads; default the one the Octokit client carries.</summary>
    public string? Token { get; init; }

    /// <summary>For the upload and download HttpClient (tests, benchmarks); default a real one. Not disposed here.</summary>
    public HttpMessageHandler? HttpHandler { get; init; }

    public IProgressSink? Progress { get; init; }
}

/// <summary>The outcome of one publish. <see cref="Message"/> is for the log as is: it never quotes the token.</summary>
/// <param name="ReleaseId">GitHub's id of the release; null when none was created (dry run of a new release).</param>
/// <param name="Uploaded">Asset names uploaded by this run, in order.</param>
public sealed record ReleaseResult(ReleaseOutcome Outcome, string? HtmlUrl, string? ReleaseId, IReadOnlyList<string> Uploaded, string Message);

/// <summary>
/// Publishes a <see cref="PreparedRelease"/> as a GitHub release, safely re-runnable: a new release is created as a
/// draft, filled (SHA256SUMS first, so a partial release says what it will hold) and only then published, and a re-run
/// of the same build finishes what an interrupted one left instead of failing. A published stable release is never
/// changed; a different build of the same version with other training is refused whatever the options say.
/// </summary>
public static class ReleasePublisher
{
    /// <summary>Tries per call, the first included, for 5xx answers, rate limits and dropped connections.</summary>
    public const int MaxAttempts = 4;

    internal const string UploadedState = "uploaded";
    private const string MissingPermission = "contents: write";

    public static async Task<ReleaseResult> PublishAsync(
        IGitHubClient client,
        string owner,
        string repo,
        PreparedRelease release,
        ReleasePublishOptions options,
        CancellationToken ct,
        Func<TimeSpan, CancellationToken, Task>? delay = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        ArgumentException.ThrowIfNullOrWhiteSpace(repo);
        ArgumentNullException.ThrowIfNull(release);
        ArgumentNullException.ThrowIfNull(options);

        var token = string.IsNullOrWhiteSpace(options.Token) ? GitHubRetry.TokenOf(client) : options.Token;
        if (string.IsNullOrWhiteSpace(token))
        {
            throw new ErtasException(ErrorCode.GitHubUnauthorized,
                "no GitHub token to publish the release with: set GITHUB_TOKEN (in a workflow, `github-token: ${{ github.token }}` with `permissions: contents: write`)");
        }

        using var transfer = new ReleaseAssetTransfer(token, options.HttpHandler);
        var run = new Run(client, owner, repo, release, options, transfer, delay ?? Task.Delay, ct);
        try
        {
            return await run.PublishAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is ApiException or HttpRequestException or IOException or InvalidDataException or System.Text.Json.JsonException
                                   || (ex is TaskCanceledException && !ct.IsCancellationRequested))
        {
            throw run.Explain(ex, token);
        }
    }

    /// <summary>
    /// The fields that made two locks of one version train differently, e.g. "LoraRank 16 → 32" or
    /// "input data/a.jsonl changed"; what the train-key refusal lists.
    /// </summary>
    internal static IReadOnlyList<string> TrainingDifferences(ModelLock before, ModelLock after)
    {
        var changes = new List<string>();
        var old = before.Settings.ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);
        var now = after.Settings.ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);
        foreach (var name in old.Keys.Union(now.Keys).Order(StringComparer.Ordinal))
        {
            var was = old.GetValueOrDefault(name);
            var @is = now.GetValueOrDefault(name);
            if (was != @is)
            {
                changes.Add($"setting {name} {was ?? "(unset)"} → {@is ?? "(unset)"}");
            }
        }

        var oldInputs = before.Inputs.GroupBy(i => i.Path, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Sha256, StringComparer.Ordinal);
        var newInputs = after.Inputs.GroupBy(i => i.Path, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Sha256, StringComparer.Ordinal);
        foreach (var path in oldInputs.Keys.Union(newInputs.Keys).Order(StringComparer.Ordinal))
        {
            var was = oldInputs.GetValueOrDefault(path);
            var @is = newInputs.GetValueOrDefault(path);
            if (was is null)
            {
                changes.Add($"input {path} added");
            }
            else if (@is is null)
            {
                changes.Add($"input {path} removed");
            }
            else if (was != @is)
            {
                changes.Add($"input {path} changed (sha256 {was[..Math.Min(12, was.Length)]} → {@is[..Math.Min(12, @is.Length)]})");
            }
        }

        if (before.EngineVersion != after.EngineVersion)
        {
            changes.Add($"engine {before.EngineVersion} → {after.EngineVersion}");
        }

        if (before.SdkVersion != after.SdkVersion)
        {
            changes.Add($"SDK {before.SdkVersion} → {after.SdkVersion}");
        }

        if (before.Seed != after.Seed && !changes.Any(c => c.StartsWith("setting Seed ", StringComparison.Ordinal)))
        {
            changes.Add($"seed {before.Seed} → {after.Seed}");
        }

        return changes;
    }

    /// <summary>One publish: the client, the release and what this run has done so far, for its messages.</summary>
    private sealed class Run(
        IGitHubClient client,
        string owner,
        string repo,
        PreparedRelease release,
        ReleasePublishOptions options,
        ReleaseAssetTransfer transfer,
        Func<TimeSpan, CancellationToken, Task> delay,
        CancellationToken ct)
    {
        private readonly List<string> _uploaded = [];
        private string _step = "listing the releases";

        private string Tag => release.Tag;
        private string Where => $"{owner}/{repo}";

        public async Task<ReleaseResult> PublishAsync()
        {
            var all = await ListReleasesAsync().ConfigureAwait(false);
            var existing = ForTag(all);
            if (existing is not null)
            {
                return await ExistingAsync(existing, raced: false).ConfigureAwait(false);
            }

            // Drafts are nobody's release yet, and other models' tags are other version lines.
            var published = all.Where(r => !r.Draft)
                .Select(r => ModelVersions.VersionOfTag(r.TagName, release.Lock.Model))
                .OfType<SemanticVersion>();
            ModelVersions.EnsureNewer(release.Version, published);

            if (options.DryRun)
            {
                return new ReleaseResult(ReleaseOutcome.DryRun, null, null, [],
                    $"Dry run: would create release {Tag} on {Where} as a draft{TargetNote()}, upload {release.Assets.Count} assets "
                    + $"({string.Join(", ", UploadOrder(release.Assets).Select(a => a.Name))}), then "
                    + (options.Draft ? "leave it as a draft." : release.Prerelease ? "publish it as a prerelease." : "publish it."));
            }

            Release created;
            try
            {
                _step = "creating the release";
                created = await Call(() => client.Repository.Release.Create(owner, repo, new NewRelease(Tag)
                {
                    Name = release.Title,
                    Body = release.Notes,
                    Draft = true,
                    Prerelease = release.Prerelease,
                    TargetCommitish = string.IsNullOrWhiteSpace(release.Commit) ? null : release.Commit,
                })).ConfigureAwait(false);
            }
            catch (ApiValidationException ex) when (AlreadyExists(ex))
            {
                // Two runs raced (or a create answered 5xx was stored after all): carry on with the release that won.
                _step = "listing the releases";
                var winner = ForTag(await ListReleasesAsync().ConfigureAwait(false))
                    ?? throw new ErtasException(ErrorCode.ReleaseExists,
                        $"GitHub says a release for {Tag} already exists on {Where}, but none is listed; if it is another account's draft, delete it or release under another tag");
                return await ExistingAsync(winner, raced: true).ConfigureAwait(false);
            }

            await UploadAsync(created, UploadOrder(release.Assets)).ConfigureAwait(false);
            var final = options.Draft ? created : await PublishDraftAsync(created).ConfigureAwait(false);
            return new ReleaseResult(ReleaseOutcome.Created, final.HtmlUrl, Id(final), [.. _uploaded],
                $"Created release {Tag} on {Where} with {release.Assets.Count} assets{(options.Draft ? " (left as a draft)" : "")}: {final.HtmlUrl}");
        }

        private async Task<ReleaseResult> ExistingAsync(Release existing, bool raced)
        {
            _step = "listing the release's assets";
            var remote = await Call(() => client.Repository.Release.GetAllAssets(owner, repo, existing.Id, new ApiOptions { PageSize = 100 })).ConfigureAwait(false);
            var present = remote.Where(a => a.State == UploadedState).GroupBy(a => a.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
            // A failed upload leaves an asset in state "new" or "starter": it holds nothing and blocks the name.
            var broken = remote.Where(a => a.State != UploadedState).ToList();
            var ours = release.Assets.ToDictionary(a => a.Name, StringComparer.Ordinal);

            string? remoteSums = null;
            if (present.TryGetValue(ReleasePlan.ChecksumsName, out var sumsAsset))
            {
                remoteSums = Encoding.UTF8.GetString(await DownloadAsync(sumsAsset).ConfigureAwait(false));
            }

            var differing = Differing(present, ours, remoteSums, release.Sha256Sums);
            var missing = release.Assets.Where(a => !present.ContainsKey(a.Name)).ToList();
            var racedNote = raced ? " (another run created it at the same time)" : "";

            if (differing.Count == 0)
            {
                return await CompleteAsync(existing, broken, missing, racedNote).ConfigureAwait(false);
            }

            await EnsureSameTrainingAsync(present).ConfigureAwait(false);
            var names = string.Join(", ", differing);
            var stable = !existing.Draft && !existing.Prerelease;
            if (options.OnExisting == OnExisting.Skip)
            {
                return new ReleaseResult(ReleaseOutcome.Skipped, existing.HtmlUrl, Id(existing), [],
                    $"Warning: release {Tag} on {Where} exists with different assets ({names}); left it as it is (on-existing: skip).{racedNote}");
            }

            if (stable)
            {
                throw new ErtasException(ErrorCode.ReleaseExists,
                    $"release {Tag} on {Where} is published as a stable release and its assets differ from this build's ({names}); "
                    + $"a published stable release is never replaced: raise ModelVersion above {release.Version.ToNormalizedString()} and rebuild (or pass on-existing skip to leave it)");
            }

            if (options.OnExisting == OnExisting.Fail)
            {
                throw new ErtasException(ErrorCode.ReleaseExists,
                    $"{(existing.Draft ? "draft" : "prerelease")} {Tag} on {Where} exists and its assets differ from this build's ({names}); "
                    + "pass on-existing update to replace them, or on-existing skip to leave it");
            }

            return await ReplaceAsync(existing, remote, differing, ours).ConfigureAwait(false);
        }

        /// <summary>Same content: finish what an interrupted run left (broken uploads, missing assets, an unpublished draft).</summary>
        private async Task<ReleaseResult> CompleteAsync(Release existing, IReadOnlyList<Octokit.ReleaseAsset> broken, IReadOnlyList<ReleaseFile> missing, string racedNote)
        {
            var publish = existing.Draft && !options.Draft;
            if (broken.Count == 0 && missing.Count == 0 && !publish)
            {
                return new ReleaseResult(ReleaseOutcome.Unchanged, existing.HtmlUrl, Id(existing), [],
                    $"Release {Tag} on {Where} already holds these {release.Assets.Count} assets byte for byte; nothing to do.{racedNote}");
            }

            var todo = Describe(missing.Select(a => a.Name), broken.Select(a => a.Name), publish);
            if (options.DryRun)
            {
                return new ReleaseResult(ReleaseOutcome.DryRun, existing.HtmlUrl, Id(existing), [],
                    $"Dry run: release {Tag} on {Where} holds the same content but is unfinished; would {todo}.{racedNote}");
            }

            await DeleteAsync(broken).ConfigureAwait(false);
            await UploadAsync(existing, UploadOrder(missing)).ConfigureAwait(false);
            var final = publish ? await PublishDraftAsync(existing).ConfigureAwait(false) : existing;
            return new ReleaseResult(ReleaseOutcome.Updated, final.HtmlUrl, Id(final), [.. _uploaded],
                $"Finished release {Tag} on {Where}, left unfinished by an earlier run with the same content: {todo}.{racedNote} {final.HtmlUrl}");
        }

        /// <summary>A prerelease or draft with other content, and OnExisting.Update: make it this build's.</summary>
        private async Task<ReleaseResult> ReplaceAsync(Release existing, IReadOnlyList<Octokit.ReleaseAsset> remote, IReadOnlyList<string> differing, Dictionary<string, ReleaseFile> ours)
        {
            var differs = differing.ToHashSet(StringComparer.Ordinal);
            // Old content goes first, SHA256SUMS is uploaded next: a run cut short anywhere leaves either the old
            // checksums (and the next run replaces again) or ours beside only assets that match them (and it completes).
            var delete = remote.Where(a => a.State != UploadedState || differs.Contains(a.Name)).ToList();
            var keep = remote.Where(a => a.State == UploadedState && !differs.Contains(a.Name)).Select(a => a.Name).ToHashSet(StringComparer.Ordinal);
            var upload = UploadOrder(release.Assets.Where(a => !keep.Contains(a.Name)));
            var removed = differing.Where(n => !ours.ContainsKey(n)).ToList();

            if (options.DryRun)
            {
                return new ReleaseResult(ReleaseOutcome.DryRun, existing.HtmlUrl, Id(existing), [],
                    $"Dry run: would update {(existing.Draft ? "draft" : "prerelease")} {Tag} on {Where}: replace "
                    + $"{string.Join(", ", differing.Where(ours.ContainsKey))}{(removed.Count > 0 ? $", delete {string.Join(", ", removed)}" : "")}"
                    + $", upload {string.Join(", ", upload.Select(a => a.Name))}, and rewrite the notes.");
            }

            await DeleteAsync(delete).ConfigureAwait(false);
            await UploadAsync(existing, upload).ConfigureAwait(false);
            _step = "updating the release notes";
            var update = new ReleaseUpdate
            {
                Name = release.Title,
                Body = release.Notes,
                Prerelease = release.Prerelease,
            };
            if (existing.Draft)
            {
                update.Draft = options.Draft;
                if (!string.IsNullOrWhiteSpace(release.Commit))
                {
                    update.TargetCommitish = release.Commit;
                }
            }

            var final = await Call(() => client.Repository.Release.Edit(owner, repo, existing.Id, update)).ConfigureAwait(false);
            return new ReleaseResult(ReleaseOutcome.Updated, final.HtmlUrl, Id(final), [.. _uploaded],
                $"Updated {(existing.Prerelease ? "prerelease" : "release")} {Tag} on {Where}: replaced {string.Join(", ", differing)}. {final.HtmlUrl}");
        }

        /// <summary>
        /// One version, one training: a release of this version built from other settings or data is refused before
        /// any comparison of files, since replacing it would change what the version means.
        /// </summary>
        private async Task EnsureSameTrainingAsync(IReadOnlyDictionary<string, Octokit.ReleaseAsset> present)
        {
            if (!present.TryGetValue(ModelLock.FileName, out var lockAsset))
            {
                return;
            }

            var bytes = await DownloadAsync(lockAsset).ConfigureAwait(false);
            var theirs = ModelLock.Parse(Encoding.UTF8.GetString(bytes), Path.Combine(release.StagingDirectory, $"{Tag}-{ModelLock.FileName}"));
            if (theirs.TrainKey == release.Lock.TrainKey || theirs.Version != release.Lock.Version)
            {
                return;
            }

            var changes = TrainingDifferences(theirs, release.Lock);
            throw new ErtasException(ErrorCode.ReleaseTrainKeyChanged,
                $"release {Tag} on {Where} was trained differently from this build of the same version {release.Lock.Version} "
                + $"(train key {theirs.TrainKey[..Math.Min(12, theirs.TrainKey.Length)]} → {release.Lock.TrainKey[..Math.Min(12, release.Lock.TrainKey.Length)]}): "
                + (changes.Count > 0 ? string.Join("; ", changes) : "the lock names no field, so the engine's training changed")
                + $". One version means one training: raise ModelVersion above {release.Version.ToNormalizedString()} and rebuild");
        }

        /// <summary>Asset names whose remote content is not ours, or that we would not publish.</summary>
        private static List<string> Differing(
            IReadOnlyDictionary<string, Octokit.ReleaseAsset> present, IReadOnlyDictionary<string, ReleaseFile> ours, string? remoteSums, string ourSums)
        {
            var theirLines = remoteSums is null ? null : ReleasePlan.ParseSha256Sums(remoteSums);
            var ourLines = ReleasePlan.ParseSha256Sums(ourSums);
            var differing = new List<string>();
            foreach (var (name, asset) in present.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                if (!ours.TryGetValue(name, out var mine) || asset.Size != mine.Bytes)
                {
                    differing.Add(name);
                }
                else if (name == ReleasePlan.ChecksumsName)
                {
                    if (theirLines is null || !SameLines(theirLines, ourLines))
                    {
                        differing.Add(name);
                    }
                }
                // SHA256SUMS went up first, so its line pins the content of every asset beside it; an asset with no
                // line (or no SHA256SUMS at all) is someone else's and cannot be trusted to be ours.
                else if (theirLines is null || !theirLines.TryGetValue(name, out var hash) || hash != mine.Sha256)
                {
                    differing.Add(name);
                }
            }

            return differing;
        }

        private static bool SameLines(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
            a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v == kv.Value);

        private async Task<IReadOnlyList<Release>> ListReleasesAsync() =>
            await Call(() => client.Repository.Release.GetAll(owner, repo, new ApiOptions { PageSize = 100 })).ConfigureAwait(false);

        /// <summary>
        /// The release for our tag. GitHub lets several drafts share a tag name (the tag does not exist until one is
        /// published): a published one wins, else the oldest, which is the one the first run filled.
        /// </summary>
        private Release? ForTag(IEnumerable<Release> all) =>
            all.Where(r => r.TagName == Tag).OrderBy(r => r.Draft).ThenBy(r => r.Id).FirstOrDefault();

        private async Task UploadAsync(Release target, IEnumerable<ReleaseFile> assets)
        {
            foreach (var asset in assets)
            {
                _step = $"uploading {asset.Name}";
                options.Progress?.Report(string.Create(CultureInfo.InvariantCulture, $"release: uploading {asset.Name} ({asset.Bytes:N0} bytes)"));
                await GitHubRetry.RunAsync(async attempt =>
                {
                    // A failed try can leave a half-created asset holding the name: remove it before the next.
                    if (attempt > 1)
                    {
                        await DeleteNamedAsync(target, asset.Name).ConfigureAwait(false);
                    }

                    var uploaded = await transfer.UploadAsync(target.UploadUrl, asset.Name, asset.Path, ct).ConfigureAwait(false);
                    if (uploaded.Size != asset.Bytes)
                    {
                        throw new IOException(string.Create(CultureInfo.InvariantCulture,
                            $"GitHub stored {uploaded.Size:N0} bytes of {asset.Name}, not {asset.Bytes:N0}"));
                    }

                    return uploaded;
                }, MaxAttempts, delay, ct).ConfigureAwait(false);
                _uploaded.Add(asset.Name);
            }
        }

        private async Task DeleteNamedAsync(Release target, string name)
        {
            var assets = await client.Repository.Release.GetAllAssets(owner, repo, target.Id, new ApiOptions { PageSize = 100 }).ConfigureAwait(false);
            foreach (var stale in assets.Where(a => a.Name == name))
            {
                await client.Repository.Release.DeleteAsset(owner, repo, stale.Id).ConfigureAwait(false);
            }
        }

        private async Task DeleteAsync(IEnumerable<Octokit.ReleaseAsset> assets)
        {
            foreach (var asset in assets)
            {
                _step = $"deleting {asset.Name}";
                await Call(async () =>
                {
                    await client.Repository.Release.DeleteAsset(owner, repo, asset.Id).ConfigureAwait(false);
                    return true;
                }).ConfigureAwait(false);
            }
        }

        private async Task<byte[]> DownloadAsync(Octokit.ReleaseAsset asset)
        {
            _step = $"downloading {asset.Name}";
            return await Call(() => transfer.DownloadAsync(asset.Url, ct)).ConfigureAwait(false);
        }

        private async Task<Release> PublishDraftAsync(Release draft)
        {
            _step = "publishing the release";
            return await Call(() => client.Repository.Release.Edit(owner, repo, draft.Id, new ReleaseUpdate { Draft = false })).ConfigureAwait(false);
        }

        private Task<T> Call<T>(Func<Task<T>> call) => GitHubRetry.RunAsync(_ => call(), MaxAttempts, delay, ct);

        /// <summary>A failure as one line for the log: what we were doing, GitHub's words, and what to do; never the token.</summary>
        public ErtasException Explain(Exception ex, string token)
        {
            var says = ex is ApiException api ? GitHubRetry.GitHubSays(api) : "";
            var uploadedNote = _uploaded.Count > 0 ? $" ({_uploaded.Count} assets were uploaded first)" : "";
            var (code, message) = ex switch
            {
                ForbiddenException when GitHubRetry.IsPermissionRefusal(ex) => (ErrorCode.GitHubForbidden,
                    $"GitHub refused {_step} for release {Tag} on {Where} (403{says}): the token lacks the `{MissingPermission}` permission; "
                    + $"add `permissions: {MissingPermission}` to the job (a pull request from a fork only ever gets a read-only token)"),
                AuthorizationException => (ErrorCode.GitHubUnauthorized,
                    $"GitHub did not accept the token while {_step} for release {Tag} on {Where} (401{says}): it is missing, expired or revoked; pass a valid GITHUB_TOKEN"),
                NotFoundException => (ErrorCode.GitHubRequestFailed,
                    $"GitHub answered 404{says} while {_step} for release {Tag}: the repository {Where} does not exist or the token cannot see it; check the repository name and the token's access"),
                ApiException apiEx => (ErrorCode.GitHubRequestFailed,
                    $"GitHub answered {(int)apiEx.StatusCode}{says} while {_step} for release {Tag} on {Where}{RetriedNote(apiEx)}{uploadedNote}; "
                    + "re-run the job: a re-run of the same build finishes an interrupted release"),
                _ => (ErrorCode.GitHubRequestFailed,
                    $"{_step} for release {Tag} on {Where} failed: {ex.Message}{uploadedNote}; re-run the job: a re-run of the same build finishes an interrupted release"),
            };
            return new ErtasException(code, GitHubRetry.Scrub(message, token));
        }

        private static string RetriedNote(ApiException ex) =>
            GitHubRetry.IsTransient(ex, CancellationToken.None) ? $" (tried up to {MaxAttempts} times)" : "";

        private static bool AlreadyExists(ApiValidationException ex) =>
            ex.ApiError?.Errors?.Any(e => e.Code == "already_exists") == true;

        private static string Id(Release release) => release.Id.ToString(CultureInfo.InvariantCulture);

        private string TargetNote() => string.IsNullOrWhiteSpace(release.Commit) ? "" : $" at {release.Commit}";

        private static string Describe(IEnumerable<string> upload, IEnumerable<string> broken, bool publish)
        {
            var parts = new List<string>();
            var brokenList = broken.ToList();
            var uploadList = upload.ToList();
            if (brokenList.Count > 0)
            {
                parts.Add($"delete the failed upload{(brokenList.Count > 1 ? "s" : "")} {string.Join(", ", brokenList)}");
            }

            if (uploadList.Count > 0)
            {
                parts.Add($"upload {string.Join(", ", uploadList)}");
            }

            if (publish)
            {
                parts.Add("publish the draft");
            }

            return string.Join(", ", parts);
        }

        /// <summary>SHA256SUMS first (its presence pins what a partial release will hold), then by name.</summary>
        private static List<ReleaseFile> UploadOrder(IEnumerable<ReleaseFile> assets) =>
            [.. assets.OrderBy(a => a.Kind == ReleaseFileKind.Checksums ? 0 : 1).ThenBy(a => a.Name, StringComparer.Ordinal)];
    }
}
