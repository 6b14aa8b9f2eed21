namespace Ertas.GitHub.Tests;

public sealed class StickyCommentOwnershipTests : IDisposable
{
    private const string Token = "ghs_fakeOWNERtoken0123456789SECRET";
    private const string Key = "eval-demo";

    private readonly FakeGitHubApi _api = new(Token);

    public void Dispose() => _api.Dispose();

    private static string Marker => StickyComment.Marker(Key);

    private Task<StickyCommentResult> Upsert(string body, string? botLogin = null) =>
        StickyComment.UpsertAsync(
            GitHubClientFactory.Create(_api.ApiUrl, Token),
            FakeGitHubApi.Owner, FakeGitHubApi.Repo, FakeGitHubApi.PullRequest, Key, body,
            CancellationToken.None, (_, _) => Task.CompletedTask, botLogin);

    [Fact]
    public async Task A_reviewers_comment_carrying_the_marker_is_left_alone_and_a_new_one_is_created()
    {
        // GITHUB_TOKEN: GET /user is refused, so only the Actions bot's comments are ours.
        var pasted = _api.Seed(Marker + "\nI copied the bot's marker");

        var result = await Upsert("report");

        Assert.True(result.Created, result.Message);
        Assert.Equal(pasted, _api.Comments.Single(c => c.Id == pasted.Id));
        Assert.Equal(FakeGitHubApi.BotLogin, _api.Comments.Single(c => c.Id == result.CommentId).Author);
    }

    [Fact]
    public async Task With_a_personal_token_only_the_tokens_own_login_counts_as_ours()
    {
        _api.UserLogin = "octo-dev";
        var mine = _api.Seed(Marker + "\nold report", "octo-dev");
        var botsButNotMine = _api.Seed(Marker + "\nfrom the Actions bot", FakeGitHubApi.BotLogin);
        var pasted = _api.Seed(Marker + "\npasted by a reviewer");

        var result = await Upsert("new report");

        Assert.True(result.Updated, result.Message);
        Assert.Equal(mine.Id, result.CommentId);
        Assert.Equal(Marker + "\nnew report", _api.Comments.Single(c => c.Id == mine.Id).Body);
        Assert.Equal(botsButNotMine, _api.Comments.Single(c => c.Id == botsButNotMine.Id));
        Assert.Equal(pasted, _api.Comments.Single(c => c.Id == pasted.Id));
    }

    [Fact]
    public async Task A_GitHub_App_bot_named_by_the_caller_counts_as_ours_when_the_token_cannot_read_its_user()
    {
        var app = _api.Seed(Marker + "\nfrom the app", "ertas-app[bot]");

        var result = await Upsert("report", botLogin: "ertas-app[bot]");

        Assert.True(result.Updated, result.Message);
        Assert.Equal(app.Id, result.CommentId);
    }
}
