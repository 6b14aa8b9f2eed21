using Ertas.Core;
using Ertas.GitHub;
using Octokit;

namespace Ertas.Cli.Commands;

/// <summary>The token, repository and API address every <c>ertas github</c> verb takes, as the runner sets them.</summary>
internal static class GitHubConnection
{
    public static readonly OptionSpec[] Options =
    [
        new("--token-env", "The environment variable holding the token (default GITHUB_TOKEN). The token itself is never an argument: arguments show up in process lists and logs.", "NAME"),
        new("--repo", "The repository, OWNER/NAME (default GITHUB_REPOSITORY).", "OWNER/NAME"),
        new("--api-url", "The API address, used as given (default GITHUB_API_URL, else https://api.github.com; on GitHub Enterprise Server it ends in /api/v3).", "URL"),
    ];

    public sealed record Connection(IGitHubClient Client, string Owner, string Repo, string ApiUrl, string Token);

    public static Connection Connect(ParsedArgs args, CliContext context, ActionsContext actions)
    {
        var tokenVariable = args.Get("--token-env") ?? "GITHUB_TOKEN";
        var token = context.Variable(tokenVariable);
        if (string.IsNullOrWhiteSpace(token))
            throw new ErtasException(ErrorCode.MissingArgument,
                $"no GitHub token in {tokenVariable}: in a workflow, pass `github-token: ${{{{ github.token }}}}` (the action's default); elsewhere, export a token with the permissions this verb needs");
        var apiUrl = args.Get("--api-url") ?? actions.ApiUrl;
        var (owner, repo) = actions.RepositoryParts(args.Get("--repo"));
        return new Connection(GitHubClientFactory.Create(apiUrl, token), owner, repo, apiUrl, token);
    }

    /// <summary>The pull request number: --pr, else the one in GITHUB_EVENT_PATH.</summary>
    public static int PullRequestNumber(ParsedArgs args, ActionsContext actions)
    {
        if (args.GetIntOrNull("--pr", min: 1) is { } given)
            return given;
        return actions.PullRequest?.Number
            ?? throw new ErtasException(ErrorCode.MissingArgument,
                "no pull request: pass --pr N, or run on a pull_request event (its number is read from GITHUB_EVENT_PATH)");
    }
}
