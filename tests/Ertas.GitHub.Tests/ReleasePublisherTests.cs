using System.Security.Cryptography;
using System.Text;
using Ertas.Core;

namespace Ertas.GitHub.Tests;

public sealed class ReleasePublisherTests : IDisposable
{
    private const string Token = "ghs_fakeRELEASEtoken0123456789SECRET";
    private const string ServerError = """{"message":"Server Error"}""";

    private readonly FakeGitHubApi _api = new(Token);
    private readonly List<TimeSpan> _waits = [];

    public void Dispose() => _api.Dispose();

    private Task<ReleaseResult> Publish(PreparedRelease release, ReleasePublishOptions? options = null, string token = Token) =>
        ReleasePublisher.PublishAsync(
            GitHubClientFactory.Create(_api.ApiUrl, token),
            FakeGitHubApi.Owner, FakeGitHubApi.Repo, release, options ?? new ReleasePublishOptions(),
            CancellationToken.None, RecordWait);

    private Task RecordWait(TimeSpan wait, CancellationToken ct)
    {
        _waits.Add(wait);
        return Task.CompletedTask;
    }

    /// <summary>Publishes the model, then rebuilds it with other weights but the same training, as a nondeterministic build would.</summary>
    private async Task<PreparedRelease> PublishThenRebuildAsync(ReleaseFixture model)
    {
        await Publish(model.Prepare());
        model.Write(seed: 2, loraRank: "16", trainKey: ReleaseFixture.TrainKey);
        return model.Prepare(staging: "rebuilt");
    }

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static void AssertHoldsExactly(FakeGitHubApi.ReleaseView remote, PreparedRelease release)
    {
        Assert.Equal(release.Assets.Select(a => a.Name).Order(StringComparer.Ordinal), remote.Assets.Select(a => a.Name).Order(StringComparer.Ordinal));
        Assert.All(remote.Assets, a => Assert.Equal("uploaded", a.State));
        // Every uploaded byte is what the uploaded SHA256SUMS says, and that is the prepared one.
        var sums = Encoding.UTF8.GetString(remote.Asset(ReleasePlan.ChecksumsName)!.Content);
        Assert.Equal(release.Sha256Sums, sums);
        var lines = sums.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split("  ", 2)).ToDictionary(p => p[1], p => p[0]);
        Assert.All(remote.Assets.Where(a => a.Name != ReleasePlan.ChecksumsName), a => Assert.Equal(lines[a.Name], Sha256(a.Content)));
    }

    [Fact]
    public async Task A_new_tag_is_created_as_a_draft_filled_with_SHA256SUMS_first_then_published()
    {
        using var model = new ReleaseFixture();
        var release = model.Prepare();

        var result = await Publish(release);

        Assert.Equal(ReleaseOutcome.Created, result.Outcome);
        var remote = Assert.Single(_api.Releases);
        Assert.Equal(("v1.0.0", false, false), (remote.TagName, remote.Draft, remote.Prerelease));
        Assert.Equal("0123456789abcdef0123456789abcdef01234567", remote.TargetCommitish);
        Assert.Equal("Tiny 1.0.0", remote.Name);
        Assert.Contains("91.7 %", remote.Body, StringComparison.Ordinal);
        AssertHoldsExactly(remote, release);
        Assert.Equal(remote.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), result.ReleaseId);
        Assert.Equal("https://github.example/octo/models/releases/tag/v1.0.0", result.HtmlUrl);
        Assert.Equal(release.Assets.Count, result.Uploaded.Count);
        Assert.Equal(ReleasePlan.ChecksumsName, result.Uploaded[0]);

        // Created as a draft, filled, and only then published.
        var writes = _api.Writes;
        Assert.StartsWith("POST /api/v3/repos/octo/models/releases", writes[0], StringComparison.Ordinal);
        Assert.All(writes.Skip(1).Take(release.Assets.Count), w => Assert.StartsWith("POST /api/uploads/", w, StringComparison.Ordinal));
        Assert.StartsWith("PATCH ", writes[^1], StringComparison.Ordinal);
        Assert.Contains("name=SHA256SUMS", writes[1], StringComparison.Ordinal);
        Assert.Empty(_waits);
    }

    [Fact]
    public async Task A_rerun_with_identical_assets_is_a_no_op_that_writes_nothing()
    {
        using var model = new ReleaseFixture();
        await Publish(model.Prepare(staging: "first"));
        var writesBefore = _api.Writes.Count;

        var again = await Publish(model.Prepare(staging: "second"));

        Assert.Equal(ReleaseOutcome.Unchanged, again.Outcome);
        Assert.Empty(again.Uploaded);
        Assert.Equal(writesBefore, _api.Writes.Count);
        Assert.Contains("byte for byte", again.Message, StringComparison.Ordinal);
        // The SHA256SUMS download went through the API and its redirect without handing the token to storage.
        Assert.Contains(_api.Requests, r => r.StartsWith("GET /storage/", StringComparison.Ordinal));
        Assert.False(_api.StorageSawAuthorization);
    }

    [Fact]
    public async Task An_upload_failing_on_the_third_asset_leaves_a_draft_that_a_rerun_finishes()
    {
        using var model = new ReleaseFixture();
        var release = model.Prepare();
        _api.FailAt("POST", "/api/uploads/", 502, ServerError, skip: 2, times: ReleasePublisher.MaxAttempts, leaveStarter: true);

        var failed = await Assert.ThrowsAsync<ErtasException>(() => Publish(release));

        Assert.Equal(ErrorCode.GitHubRequestFailed, failed.Code);
        Assert.Contains("re-run", failed.Message, StringComparison.Ordinal);
        Assert.Equal(ReleasePublisher.MaxAttempts - 1, _waits.Count);
        var partial = Assert.Single(_api.Releases);
        Assert.True(partial.Draft);
        Assert.Equal(2, partial.Assets.Count(a => a.State == "uploaded"));
        Assert.Contains(partial.Assets, a => a.State == "starter");

        var finished = await Publish(model.Prepare(staging: "rerun"));

        Assert.Equal(ReleaseOutcome.Updated, finished.Outcome);
        Assert.Equal(release.Assets.Count - 2, finished.Uploaded.Count);
        var remote = Assert.Single(_api.Releases);
        Assert.False(remote.Draft);
        AssertHoldsExactly(remote, release);
        Assert.Equal("https://github.example/octo/models/releases/tag/v1.0.0", finished.HtmlUrl);
    }

    [Fact]
    public async Task Different_assets_for_a_published_stable_version_are_refused_naming_the_asset_even_with_update()
    {
        using var model = new ReleaseFixture();
        var rebuilt = await PublishThenRebuildAsync(model);
        var writesBefore = _api.Writes.Count;

        var e = await Assert.ThrowsAsync<ErtasException>(() => Publish(rebuilt, new ReleasePublishOptions { OnExisting = OnExisting.Update }));

        Assert.Equal(ErrorCode.ReleaseExists, e.Code);
        Assert.Contains(model.GgufName, e.Message, StringComparison.Ordinal);
        Assert.Contains("raise ModelVersion", e.Message, StringComparison.Ordinal);
        Assert.Equal(writesBefore, _api.Writes.Count);
    }

    [Fact]
    public async Task A_changed_train_key_for_the_same_version_is_refused_listing_the_changed_settings()
    {
        using var model = new ReleaseFixture("1.1.0-rc.1");
        await Publish(model.Prepare());
        model.Write(seed: 1, loraRank: "32", trainKey: new string('9', 64));

        var e = await Assert.ThrowsAsync<ErtasException>(() => Publish(model.Prepare(staging: "retrained"), new ReleasePublishOptions { OnExisting = OnExisting.Update }));

        Assert.Equal(ErrorCode.ReleaseTrainKeyChanged, e.Code);
        Assert.Contains("setting LoraRank 16 → 32", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("LoraAlpha", e.Message, StringComparison.Ordinal);
        Assert.Contains("raise ModelVersion", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_prerelease_with_update_replaces_changed_assets_deletes_dropped_ones_and_rewrites_the_notes()
    {
        using var model = new ReleaseFixture("1.1.0-rc.1");
        var notes = Path.Combine(model.Staging("extra"), "notes.txt");
        Directory.CreateDirectory(Path.GetDirectoryName(notes)!);
        File.WriteAllText(notes, "first build only\n");
        await Publish(model.Prepare(model.DefaultOptions() with { ExtraAssets = [model.SnapshotPath, notes] }));
        model.Write(seed: 2, loraRank: "16", trainKey: ReleaseFixture.TrainKey);
        var rebuilt = model.Prepare(staging: "rebuilt");

        var result = await Publish(rebuilt, new ReleasePublishOptions { OnExisting = OnExisting.Update });

        Assert.Equal(ReleaseOutcome.Updated, result.Outcome);
        var remote = Assert.Single(_api.Releases);
        Assert.True(remote.Prerelease);
        Assert.False(remote.Draft);
        AssertHoldsExactly(remote, rebuilt);
        Assert.Null(remote.Asset("notes.txt"));
        Assert.Equal(File.ReadAllBytes(model.GgufPath), remote.Asset(model.GgufName)!.Content);
        Assert.Equal(rebuilt.Notes, remote.Body);
        Assert.Contains(model.GgufName, result.Uploaded);
        // Unchanged files are kept, not uploaded again.
        Assert.DoesNotContain("Modelfile", result.Uploaded);
    }

    [Fact]
    public async Task A_prerelease_with_fail_is_refused_naming_the_differing_assets()
    {
        using var model = new ReleaseFixture("1.1.0-rc.1");
        var rebuilt = await PublishThenRebuildAsync(model);

        var e = await Assert.ThrowsAsync<ErtasException>(() => Publish(rebuilt));

        Assert.Equal(ErrorCode.ReleaseExists, e.Code);
        Assert.Contains(model.GgufName, e.Message, StringComparison.Ordinal);
        Assert.Contains("on-existing update", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Skip_leaves_a_release_with_other_content_alone_with_a_warning()
    {
        using var model = new ReleaseFixture();
        var rebuilt = await PublishThenRebuildAsync(model);
        var writesBefore = _api.Writes.Count;

        var result = await Publish(rebuilt, new ReleasePublishOptions { OnExisting = OnExisting.Skip });

        Assert.Equal(ReleaseOutcome.Skipped, result.Outcome);
        Assert.StartsWith("Warning:", result.Message, StringComparison.Ordinal);
        Assert.Contains(model.GgufName, result.Message, StringComparison.Ordinal);
        Assert.Equal(writesBefore, _api.Writes.Count);
    }

    [Fact]
    public async Task A_create_refused_as_already_exists_by_a_racing_run_continues_with_the_release_that_won()
    {
        using var model = new ReleaseFixture();
        var release = model.Prepare();
        // The other run's draft appears between our listing (answered empty here) and our create.
        _api.SeedRelease("v1.0.0", draft: true);
        _api.FailAt("GET", "/releases", 200, "[]");

        var result = await Publish(release);

        Assert.Equal(ReleaseOutcome.Updated, result.Outcome);
        Assert.Contains("another run", result.Message, StringComparison.Ordinal);
        var remote = Assert.Single(_api.Releases);
        Assert.False(remote.Draft);
        AssertHoldsExactly(remote, release);
    }

    [Fact]
    public async Task Server_errors_and_rate_limits_are_retried_with_growing_backoff_and_Retry_After()
    {
        using var model = new ReleaseFixture();
        _api.FailAt("POST", "/api/v3/repos/octo/models/releases", 502, ServerError, times: 2);
        _api.FailAt("POST", "/api/uploads/", 429, """{"message":"Too many requests"}""", skip: 1,
            headers: new Dictionary<string, string> { ["Retry-After"] = "7" });

        var result = await Publish(model.Prepare());

        Assert.Equal(ReleaseOutcome.Created, result.Outcome);
        Assert.Equal([TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(7)], _waits);
        AssertHoldsExactly(Assert.Single(_api.Releases), model.Prepare(staging: "check"));
    }

    [Fact]
    public async Task A_failed_upload_that_left_a_half_created_asset_is_deleted_and_uploaded_again()
    {
        using var model = new ReleaseFixture();
        var release = model.Prepare();
        _api.FailAt("POST", "/api/uploads/", 500, ServerError, skip: 1, leaveStarter: true);

        var result = await Publish(release);

        Assert.Equal(ReleaseOutcome.Created, result.Outcome);
        Assert.Single(_waits);
        AssertHoldsExactly(Assert.Single(_api.Releases), release);
        Assert.Contains(_api.Writes, w => w.StartsWith("DELETE /api/v3/repos/octo/models/releases/assets/", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_403_is_refused_naming_contents_write_without_retrying()
    {
        using var model = new ReleaseFixture();
        _api.FailAt("POST", "/releases", 403, """{"message":"Resource not accessible by integration"}""", times: 10);

        var e = await Assert.ThrowsAsync<ErtasException>(() => Publish(model.Prepare()));

        Assert.Equal(ErrorCode.GitHubForbidden, e.Code);
        Assert.Contains("`contents: write`", e.Message, StringComparison.Ordinal);
        Assert.Contains("Resource not accessible by integration", e.Message, StringComparison.Ordinal);
        Assert.Empty(_waits);
        Assert.Empty(_api.Releases);
    }

    [Fact]
    public async Task A_rejected_token_is_refused_as_401_and_never_quoted_even_when_the_server_echoes_it()
    {
        using var model = new ReleaseFixture();
        const string revoked = Token + "-revoked";

        var e = await Assert.ThrowsAsync<ErtasException>(() => Publish(model.Prepare(), token: revoked));

        Assert.Equal(ErrorCode.GitHubUnauthorized, e.Code);
        Assert.Contains("401", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(revoked, e.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(Token, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_version_not_newer_than_the_latest_release_of_this_model_is_refused()
    {
        using var model = new ReleaseFixture();
        _api.SeedRelease("v1.2.0");

        var e = await Assert.ThrowsAsync<ErtasException>(() => Publish(model.Prepare()));

        Assert.Equal(ErrorCode.InvalidArgument, e.Code);
        Assert.Contains("not newer than the latest release 1.2.0", e.Message, StringComparison.Ordinal);
        Assert.Single(_api.Releases);
    }

    [Fact]
    public async Task Other_models_tags_and_unpublished_drafts_do_not_count_as_newer()
    {
        using var model = new ReleaseFixture();
        _api.SeedRelease("Other-v9.0.0");
        _api.SeedRelease("v5.0.0", draft: true);
        _api.SeedRelease("v0.9.0");

        var result = await Publish(model.Prepare());

        Assert.Equal(ReleaseOutcome.Created, result.Outcome);
    }

    [Fact]
    public async Task A_dry_run_reports_what_it_would_do_and_writes_nothing()
    {
        using var model = new ReleaseFixture("1.1.0-rc.1");

        var fresh = await Publish(model.Prepare(), new ReleasePublishOptions { DryRun = true });

        Assert.Equal(ReleaseOutcome.DryRun, fresh.Outcome);
        Assert.Contains("would create release v1.1.0-rc.1", fresh.Message, StringComparison.Ordinal);
        Assert.Contains(model.GgufName, fresh.Message, StringComparison.Ordinal);
        Assert.Empty(_api.Writes);

        var rebuilt = await PublishThenRebuildAsync(model);
        var writesBefore = _api.Writes.Count;

        var update = await Publish(rebuilt, new ReleasePublishOptions { DryRun = true, OnExisting = OnExisting.Update });

        Assert.Equal(ReleaseOutcome.DryRun, update.Outcome);
        Assert.Contains("would update prerelease", update.Message, StringComparison.Ordinal);
        Assert.Equal(writesBefore, _api.Writes.Count);
    }

    [Fact]
    public async Task The_draft_option_leaves_a_new_release_unpublished()
    {
        using var model = new ReleaseFixture();

        var result = await Publish(model.Prepare(), new ReleasePublishOptions { Draft = true });

        Assert.Equal(ReleaseOutcome.Created, result.Outcome);
        Assert.True(Assert.Single(_api.Releases).Draft);
    }

    [Fact]
    public void The_upload_address_drops_the_template_and_escapes_the_name()
    {
        var uri = ReleaseAssetTransfer.UploadUri("https://ghe.example/api/uploads/repos/o/r/releases/7/assets{?name,label}", "a+b.gguf");

        Assert.Equal("https://ghe.example/api/uploads/repos/o/r/releases/7/assets?name=a%2Bb.gguf", uri.AbsoluteUri);
    }
}
