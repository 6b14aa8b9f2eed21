using System.Globalization;
using System.Text;
using Octokit;

namespace Ertas.GitHub;

/// <summary>What <see cref="StickyComment.UpsertAsync"/> did.</summary>
public enum StickyCommentOutcome
{
    Created,
    Updated,
    Skipped,
}

/// <summary>
/// The outcome of one upsert. <see cref="Message"/> is meant for the log as is: it never quotes the token.
/// </summary>
/// <param name="CommentId">The comment written; null when skipped.</param>
/// <param name="HtmlUrl">The comment's address on GitHub (the action's <c>comment-url</c> output); null when skipped.</param>
/// <param name="Truncated">The body was over GitHub's limit and was cut.</param>
public sealed record StickyCommentResult(
    StickyCommentOutcome Outcome,
    long? CommentId,
    string? HtmlUrl,
    bool Truncated,
    string Message)
{
    public bool Created => Outcome == StickyCommentOutcome.Created;
    public bool Updated => Outcome == StickyCommentOutcome.Updated;
    public bool Skipped => Outcome == StickyCommentOutcome.Skipped;
}

/// <summary>
/// One comment per key on a pull request, found again by a hidden marker and edited in place on every push, so a
/// pull request carries the latest report instead of one comment per run.
/// </summary>
public static class StickyComment
{
    /// <summary>GitHub refuses comment bodies longer than this ("body is too long (maximum is 65536 characters)").</summary>
    public const int MaxBodyLength = 65_536;

    /// <summary>Tries per upsert, the first included, for 5xx answers and rate limits.</summary>
    public const int MaxAttempts = 3;

    private const string MarkerPrefix = "<!-- ertas:sticky:";
    private const string MarkerSuffix = " -->";
    private const string MissingPermission = "pull-requests: write";

    /// <summary>The login GitHub gives the workflow's GITHUB_TOKEN, whose comments are ours when /user is closed to the token.</summary>
    public const string ActionsBotLogin = "github-actions[bot]";

    /// <summary>The hidden first line that marks the comment for <paramref name="key"/>.</summary>
    public static string Marker(string key)
    {
        ValidateKey(key);
        return MarkerPrefix + key + MarkerSuffix;
    }

    /// <summary>
    /// Updates the pull request's comment for <paramref name="key"/> in place, or creates it when there is none. Only
    /// comments written by the token's own identity count, so a reviewer pasting the marker never has theirs edited.
    /// A token without write access (a pull request from a fork) gives a skipped result, not an exception; 5xx answers
    /// and rate limits are retried up to <see cref="MaxAttempts"/> times, after which the Octokit exception propagates.
    /// </summary>
    /// <param name="key">Letters, digits and <c>-_.</c>: one sticky comment per key (e.g. per project).</param>
    /// <param name="body">Markdown; cut at a line boundary when over GitHub's limit.</param>
    /// <param name="delay">Waits between tries; tests pass one that records instead of sleeping.</param>
    /// <param name="botLogin">
    /// The bot login a GitHub App token posts as (e.g. <c>my-app[bot]</c>), counted as ours beside
    /// <see cref="ActionsBotLogin"/> when the token cannot read <c>GET /user</c>.
    /// </param>
    public static async Task<StickyCommentResult> UpsertAsync(
        IGitHubClient client,
        string owner,
        string repo,
        long pullRequest,
        string key,
        string body,
        CancellationToken ct,
        Func<TimeSpan, CancellationToken, Task>? delay = null,
        string? botLogin = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        ArgumentException.ThrowIfNullOrWhiteSpace(repo);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pullRequest);
        ArgumentNullException.ThrowIfNull(body);
        var marker = Marker(key);
        delay ??= Task.Delay;

        var (text, truncated) = Compose(marker, body);

        try
        {
            // The whole find-then-write is retried, not just the failed call: a create answered with a 502 may
            // still have been stored, and listing again finds it instead of posting a duplicate.
            return await GitHubRetry.RunAsync(
                _ => UpsertOnceAsync(client, owner, repo, pullRequest, key, marker, text, truncated, botLogin),
                MaxAttempts, delay, ct).ConfigureAwait(false);
        }
        catch (ForbiddenException ex) when (GitHubRetry.IsPermissionRefusal(ex))
        {
            return Skipped(client, truncated,
                $"GitHub refused the sticky comment '{key}' on pull request #{Number(pullRequest)} (403{GitHubRetry.GitHubSays(ex)}): "
                + $"the token lacks the `{MissingPermission}` permission. A pull request from a fork gets a read-only "
                + $"token; otherwise add `permissions: {MissingPermission}` to the job. The report is in the job summary.");
        }
        catch (AuthorizationException ex)
        {
            return Skipped(client, truncated,
                $"GitHub did not accept the token for the sticky comment '{key}' on pull request #{Number(pullRequest)} "
                + $"(401{GitHubRetry.GitHubSays(ex)}): it is missing, expired or revoked. The report is in the job summary.");
        }
    }

    /// <summary>The comment text: the marker line, then the body, cut under GitHub's limit when needed.</summary>
    internal static (string Text, bool Truncated) Compose(string marker, string body)
    {
        // A caller re-posting a body it read back from GitHub must not end up with the marker twice.
        if (body.StartsWith(marker, StringComparison.Ordinal))
        {
            body = body[marker.Length..].TrimStart('\r', '\n');
        }

        var full = marker + "\n" + body;
        if (full.Length <= MaxBodyLength)
        {
            return (full, false);
        }

        // string.Length counts UTF-16 units, never fewer than the characters GitHub counts, so the limit holds.
        var note = string.Create(CultureInfo.InvariantCulture,
            $"\n\n---\n:scissors: This comment was cut to fit GitHub's limit of {MaxBodyLength:N0} characters "
            + $"(the report has {body.Length:N0}). The full report is in the run's job summary and its artifact.\n");
        const int fenceCloseLength = 4; // "\n```" or "\n~~~"
        var budget = MaxBodyLength - marker.Length - 1 - note.Length - fenceCloseLength;

        var cut = body.LastIndexOf('\n', budget);
        if (cut <= 0)
        {
            // One enormous line: cut inside it, but never between the halves of a surrogate pair.
            cut = char.IsLowSurrogate(body[budget]) ? budget - 1 : budget;
        }

        var kept = body[..cut].TrimEnd('\r');
        var sb = new StringBuilder(MaxBodyLength);
        sb.Append(marker).Append('\n').Append(kept);
        // Cut inside a code block, the note would render as code; close the fence first.
        if (OpenCodeFence(kept) is { } fence)
        {
            sb.Append('\n').Append(fence);
        }

        sb.Append(note);
        return (sb.ToString(), true);
    }

    private static async Task<StickyCommentResult> UpsertOnceAsync(
        IGitHubClient client, string owner, string repo, long pullRequest, string key, string marker, string text, bool truncated,
        string? botLogin)
    {
        var isOurs = await AuthorFilterAsync(client, botLogin).ConfigureAwait(false);

        // The list endpoint answers oldest first (Octokit sends sort=created&direction=asc, which this endpoint does not
        // document and cannot be relied on to reverse), so every page is read and the newest picked here; PageSize
        // 100 (GitHub's maximum) keeps a long discussion to a few requests, and Octokit follows Link rel="next" itself.
        var all = await client.Issue.Comment
            .GetAllForIssue(owner, repo, pullRequest, new ApiOptions { PageSize = 100 })
            .ConfigureAwait(false);

        var ours = all
            .Where(c => c.Body is not null && c.Body.StartsWith(marker, StringComparison.Ordinal) && isOurs(c.User))
            .OrderByDescending(c => c.CreatedAt)
            .ThenByDescending(c => c.Id)
            .ToList();

        var cutNote = truncated ? string.Create(CultureInfo.InvariantCulture, $" The body was cut under {MaxBodyLength:N0} characters.") : "";

        if (ours.Count == 0)
        {
            var created = await client.Issue.Comment.Create(owner, repo, pullRequest, text).ConfigureAwait(false);
            return new StickyCommentResult(StickyCommentOutcome.Created, created.Id, created.HtmlUrl, truncated,
                $"Created the sticky comment '{key}' on pull request #{Number(pullRequest)}: {created.HtmlUrl}.{cutNote}");
        }

        var target = ours[0];
        var updated = await client.Issue.Comment.Update(owner, repo, target.Id, text).ConfigureAwait(false);

        // Two jobs that both found no comment and both created one leave two; the newest wins and the rest stay,
        // since deleting a comment is not this token's call to make silently.
        var raceNote = ours.Count > 1
            ? string.Create(CultureInfo.InvariantCulture,
                $" {ours.Count} comments carry this key's marker (two runs raced); updated the newest, left {string.Join(", ", ours.Skip(1).Select(c => c.Id))}.")
            : "";

        return new StickyCommentResult(StickyCommentOutcome.Updated, updated.Id, updated.HtmlUrl, truncated,
            $"Updated the sticky comment '{key}' on pull request #{Number(pullRequest)}: {updated.HtmlUrl}.{cutNote}{raceNote}");
    }

    /// <summary>
    /// Which authors' comments count as ours. Anyone can paste the marker into a comment, so only the token's own
    /// identity counts: the login <c>GET /user</c> names for a personal token; installation tokens (GITHUB_TOKEN, a
    /// GitHub App) get 403 "Resource not accessible by integration" there, and then the Actions bot, or the App's
    /// bot login when given, is ours, checked as a Bot account so that a user named alike never matches.
    /// </summary>
    private static async Task<Func<User?, bool>> AuthorFilterAsync(IGitHubClient client, string? botLogin)
    {
        try
        {
            var me = await client.User.Current().ConfigureAwait(false);
            var login = me.Login;
            return user => user is not null && string.Equals(user.Login, login, StringComparison.OrdinalIgnoreCase);
        }
        catch (ForbiddenException ex) when (GitHubRetry.IsPermissionRefusal(ex))
        {
            return user => user is { Type: AccountType.Bot }
                && (string.Equals(user.Login, ActionsBotLogin, StringComparison.OrdinalIgnoreCase)
                    || (botLogin is not null && string.Equals(user.Login, botLogin, StringComparison.OrdinalIgnoreCase)));
        }
    }

    /// <remarks>These messages quote GitHub's answer; the client's own token is scrubbed from them.</remarks>
    private static StickyCommentResult Skipped(IGitHubClient client, bool truncated, string message) =>
        new(StickyCommentOutcome.Skipped, null, null, truncated, GitHubRetry.Scrub(message, GitHubRetry.TokenOf(client)));

    private static void ValidateKey(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        // The key sits inside an HTML comment and is matched as a prefix: anything beyond these characters could end
        // the comment early ("-->") or make one key's marker a prefix of another's.
        if (key.Length == 0 || key.Length > 100 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
        {
            throw new ArgumentException(
                $"the sticky comment key '{key}' must be 1 to 100 characters of letters, digits, '-', '_' and '.'", nameof(key));
        }
    }

    /// <summary>The fence ("```" or "~~~") of a code block left open at the end of <paramref name="markdown"/>, else null.</summary>
    private static string? OpenCodeFence(string markdown)
    {
        string? open = null;
        foreach (var line in markdown.Split('\n'))
        {
            var trimmed = line.TrimStart(' ');
            if (line.Length - trimmed.Length > 3 || trimmed.Length < 3)
            {
                continue;
            }

            var fence = trimmed[..3];
            if (fence is not ("```" or "~~~"))
            {
                continue;
            }

            // Only the opening kind closes a block: a ~~~ line inside a ``` block is content.
            if (open is null)
            {
                open = fence;
            }
            else if (open == fence)
            {
                open = null;
            }
        }

        return open;
    }

    private static string Number(long pullRequest) => pullRequest.ToString(CultureInfo.InvariantCulture);
}
