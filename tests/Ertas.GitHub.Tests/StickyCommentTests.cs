using Octokit;

namespace Ertas.GitHub.Tests;

public sealed class StickyCommentTests : IDisposable
{
    private const string Token = "ghs_fakeTOKEN0123456789abcdefSECRET";
    private const string Key = "eval-demo";

    private readonly FakeGitHubApi _api = new(Token);
    private readonly List<TimeSpan> _waits = [];

    public void Dispose() => _api.Dispose();

    private static string Marker => StickyComment.Marker(Key);

    private Task<StickyCommentResult> Upsert(string body, string key = Key) =>
        StickyComment.UpsertAsync(
            GitHubClientFactory.Create(_api.ApiUrl, Token),
            FakeGitHubApi.Owner, FakeGitHubApi.Repo, FakeGitHubApi.PullRequest, key, body,
            CancellationToken.None,
            RecordWait);

    private Task RecordWait(TimeSpan wait, CancellationToken ct)
    {
        _waits.Add(wait);
        return Task.CompletedTask;
    }

    private List<FakeGitHubApi.Comment> Ours() =>
        [.. _api.Comments.Where(c => c.Body.StartsWith(Marker, StringComparison.Ordinal))];

    [Fact]
    public async Task Three_upserts_leave_one_comment_carrying_the_last_body()
    {
        var first = await Upsert("run 1");
        var second = await Upsert("run 2");
        var third = await Upsert("run 3");

        Assert.True(first.Created);
        Assert.True(second.Updated);
        Assert.True(third.Updated);
        var only = Assert.Single(_api.Comments);
        Assert.Equal(Marker + "\nrun 3", only.Body);
        Assert.Equal(first.CommentId, third.CommentId);
        Assert.Equal($"https://github.example/octo/models/pull/7#issuecomment-{only.Id}", third.HtmlUrl);
        Assert.Empty(_waits);
    }

    [Fact]
    public async Task Our_comment_after_120_others_is_found_across_pages_and_updated()
    {
        for (var i = 0; i < 120; i++)
        {
            _api.Seed($"comment {i} by someone else");
        }

        var ours = _api.Seed(Marker + "\nold report", FakeGitHubApi.BotLogin);

        var result = await Upsert("new report");

        Assert.True(result.Updated, result.Message);
        Assert.Equal(ours.Id, result.CommentId);
        Assert.Equal(121, _api.Comments.Count);
        Assert.Equal(Marker + "\nnew report", _api.Comments.Single(c => c.Id == ours.Id).Body);
        // 121 comments at 100 a page: page 2 was reached through the Link header, not guessed.
        Assert.Contains(_api.Requests, r => r.StartsWith("GET ", StringComparison.Ordinal) && r.Contains("page=2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Of_two_comments_with_the_marker_the_newest_is_updated_and_the_race_is_reported()
    {
        var older = _api.Seed(Marker + "\nfrom run A", FakeGitHubApi.BotLogin);
        _api.Seed("unrelated");
        var newer = _api.Seed(Marker + "\nfrom run B", FakeGitHubApi.BotLogin);

        var result = await Upsert("run C");

        Assert.True(result.Updated);
        Assert.Equal(newer.Id, result.CommentId);
        Assert.Equal(Marker + "\nrun C", _api.Comments.Single(c => c.Id == newer.Id).Body);
        Assert.Equal(Marker + "\nfrom run A", _api.Comments.Single(c => c.Id == older.Id).Body);
        Assert.Contains("2 comments carry this key's marker", result.Message, StringComparison.Ordinal);
        Assert.Contains(older.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Another_keys_comment_and_a_quoted_marker_are_left_alone()
    {
        var otherKey = _api.Seed(StickyComment.Marker("eval-other") + "\nother project's report", FakeGitHubApi.BotLogin);
        // A reviewer quoting our comment: the marker is there, but not at the start.
        var quote = _api.Seed("> " + Marker + "\n> old numbers\nWhy did this drop?");
        // A key that our key is a prefix of.
        var longer = _api.Seed(StickyComment.Marker(Key + "x") + "\nlonger key", FakeGitHubApi.BotLogin);

        var result = await Upsert("ours");

        Assert.True(result.Created);
        Assert.Equal(4, _api.Comments.Count);
        Assert.Equal(otherKey, _api.Comments.Single(c => c.Id == otherKey.Id));
        Assert.Equal(quote, _api.Comments.Single(c => c.Id == quote.Id));
        Assert.Equal(longer, _api.Comments.Single(c => c.Id == longer.Id));
    }

    [Fact]
    public async Task A_100000_character_body_is_cut_at_a_line_under_65536_with_the_marker_and_a_note()
    {
        var line = new string('x', 99);
        var body = string.Join("\n", Enumerable.Range(0, 1000).Select(i => $"{i:D4}{line}"));
        Assert.True(body.Length > 100_000);

        var result = await Upsert(body);

        Assert.True(result.Created);
        Assert.True(result.Truncated);
        var stored = Assert.Single(_api.Comments).Body;
        Assert.True(stored.Length <= StickyComment.MaxBodyLength, $"{stored.Length} characters");
        Assert.True(stored.Length > 60_000, "the cut keeps as much as fits");
        Assert.StartsWith(Marker + "\n0000", stored, StringComparison.Ordinal);
        Assert.Contains("job summary", stored, StringComparison.Ordinal);
        // Every kept report line is whole.
        var reportLines = stored.Split('\n').Skip(1).TakeWhile(l => l.Length > 0).ToList();
        Assert.All(reportLines, l => Assert.Equal(103, l.Length));
        Assert.Contains("cut", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_cut_inside_a_code_block_closes_the_fence_before_the_note()
    {
        var body = "## Changed cases\n```diff\n" + string.Join("\n", Enumerable.Repeat("- old answer / + new answer", 5000));

        var (text, truncated) = StickyComment.Compose(Marker, body);

        Assert.True(truncated);
        Assert.True(text.Length <= StickyComment.MaxBodyLength);
        var noteAt = text.IndexOf("\n---\n", StringComparison.Ordinal);
        Assert.EndsWith("\n```", text[..noteAt].TrimEnd('\n'), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_403_on_create_is_skipped_naming_pull_requests_write_without_throwing()
    {
        _api.Fail("POST", 403, """{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest"}""", times: 10);

        var result = await Upsert("report");

        Assert.True(result.Skipped);
        Assert.Null(result.CommentId);
        Assert.Contains("pull-requests: write", result.Message, StringComparison.Ordinal);
        Assert.Contains("Resource not accessible by integration", result.Message, StringComparison.Ordinal);
        Assert.Empty(_api.Comments);
        Assert.Empty(_waits);
    }

    [Fact]
    public async Task Two_502s_then_success_retries_twice_and_creates_one_comment()
    {
        _api.Fail("POST", 502, """{"message":"Server Error"}""", times: 2);

        var result = await Upsert("report");

        Assert.True(result.Created, result.Message);
        Assert.Single(Ours());
        Assert.Equal(2, _waits.Count);
        Assert.True(_waits[1] > _waits[0], "the backoff grows");
    }

    [Fact]
    public async Task A_429_waits_as_long_as_Retry_After_says()
    {
        _api.Fail("GET", 429, """{"message":"Too many requests"}""", headers: new Dictionary<string, string> { ["Retry-After"] = "7" });

        var result = await Upsert("report");

        Assert.True(result.Created);
        Assert.Equal([TimeSpan.FromSeconds(7)], _waits);
    }

    [Fact]
    public async Task Three_503s_give_up_with_the_Octokit_exception_after_two_waits()
    {
        _api.Fail("GET", 503, """{"message":"Service Unavailable"}""", times: 3);

        var ex = await Assert.ThrowsAsync<ApiException>(() => Upsert("report"));

        Assert.Equal(503, (int)ex.StatusCode);
        Assert.Equal(StickyComment.MaxAttempts - 1, _waits.Count);
        Assert.DoesNotContain(Token, ex.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_token_appears_in_no_result_message()
    {
        var created = await Upsert("report");
        var updated = await Upsert("report 2");
        _api.Fail("PATCH", 403, """{"message":"Resource not accessible by integration"}""");
        var skipped = await Upsert("report 3");
        var refused = await StickyComment.UpsertAsync(
            GitHubClientFactory.Create(_api.ApiUrl, Token + "-revoked"),
            FakeGitHubApi.Owner, FakeGitHubApi.Repo, FakeGitHubApi.PullRequest, Key, "report 4", CancellationToken.None, RecordWait);

        Assert.True(skipped.Skipped);
        Assert.True(refused.Skipped);
        Assert.Contains("401", refused.Message, StringComparison.Ordinal);
        foreach (var result in new[] { created, updated, skipped, refused })
        {
            Assert.DoesNotContain(Token, result.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(Token, result.ToString(), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("ends-->")]
    [InlineData("slash/key")]
    public async Task A_key_outside_letters_digits_and_dash_underscore_dot_is_refused(string key)
    {
        await Assert.ThrowsAsync<ArgumentException>(() => Upsert("report", key));
        Assert.Empty(_api.Requests);
    }
}
