using System.Globalization;
using System.Text.Json;
using Ertas.Core;

namespace Ertas.GitHub;

/// <summary>The pull request a <c>pull_request</c> (or <c>pull_request_target</c>) event is about.</summary>
/// <param name="HeadRepository">owner/name of the branch's repository: another repository's name means a fork.</param>
public sealed record PullRequestEvent(int Number, string BaseSha, string HeadSha, string? BaseRef, string? HeadRepository, string? Title)
{
    public bool IsFrom(string repository) =>
        HeadRepository is null || string.Equals(HeadRepository, repository, StringComparison.OrdinalIgnoreCase);
}

/// <summary>
/// What the runner tells a step (the default environment variables and the event payload file), read once, so the
/// rest of the code never reaches into the environment itself and tests can give any event.
/// </summary>
public sealed record ActionsContext
{
    public string? EventName { get; init; }
    public string? EventPath { get; init; }
    public string? Ref { get; init; }
    public string? Sha { get; init; }
    public string? Repository { get; init; }
    public string ServerUrl { get; init; } = "https://github.com";
    public string ApiUrl { get; init; } = "https://api.github.com";
    public string? RunId { get; init; }
    public long? RunNumber { get; init; }
    public string? OutputFile { get; init; }
    public string? SummaryFile { get; init; }
    public string? Workspace { get; init; }

    /// <summary><c>github-hosted</c> or <c>self-hosted</c> (RUNNER_ENVIRONMENT); null outside Actions.</summary>
    public string? RunnerEnvironment { get; init; }

    public PullRequestEvent? PullRequest { get; init; }

    public bool IsActions { get; init; }

    public bool IsSelfHosted => string.Equals(RunnerEnvironment, "self-hosted", StringComparison.OrdinalIgnoreCase);

    /// <summary>The tag a push event is for (refs/tags/NAME), else null.</summary>
    public string? PushedTag =>
        EventName == "push" && Ref is { } r && r.StartsWith("refs/tags/", StringComparison.Ordinal) ? r["refs/tags/".Length..] : null;

    /// <summary>The run's page on GitHub, for links in comments; null outside Actions.</summary>
    public string? RunUrl => Repository is null || RunId is null ? null : $"{ServerUrl.TrimEnd('/')}/{Repository}/actions/runs/{RunId}";

    public (string Owner, string Name) RepositoryParts(string? overrideRepository = null) =>
        SplitRepository(overrideRepository ?? Repository
            ?? throw new ErtasException(ErrorCode.MissingArgument, "no repository: set GITHUB_REPOSITORY (the runner does) or pass --repo OWNER/NAME"));

    public static (string Owner, string Name) SplitRepository(string repository)
    {
        var parts = repository.Trim().Split('/');
        if (parts.Length != 2 || parts.Any(p => p.Length == 0 || p.Any(char.IsWhiteSpace)))
            throw new ErtasException(ErrorCode.InvalidArgument, $"the repository '{repository}' is not OWNER/NAME");
        return (parts[0], parts[1]);
    }

    /// <summary>Reads the runner's variables through <paramref name="variable"/> (Environment.GetEnvironmentVariable in the CLI).</summary>
    public static ActionsContext Read(Func<string, string?> variable)
    {
        string? Get(string name) => variable(name) is { Length: > 0 } value ? value : null;
        var eventPath = Get("GITHUB_EVENT_PATH");
        var eventName = Get("GITHUB_EVENT_NAME");
        return new ActionsContext
        {
            IsActions = Get("GITHUB_ACTIONS") == "true",
            EventName = eventName,
            EventPath = eventPath,
            Ref = Get("GITHUB_REF"),
            Sha = Get("GITHUB_SHA"),
            Repository = Get("GITHUB_REPOSITORY"),
            ServerUrl = Get("GITHUB_SERVER_URL") ?? "https://github.com",
            ApiUrl = Get("GITHUB_API_URL") ?? "https://api.github.com",
            RunId = Get("GITHUB_RUN_ID"),
            RunNumber = long.TryParse(Get("GITHUB_RUN_NUMBER"), NumberStyles.None, CultureInfo.InvariantCulture, out var run) ? run : null,
            OutputFile = Get("GITHUB_OUTPUT"),
            SummaryFile = Get("GITHUB_STEP_SUMMARY"),
            Workspace = Get("GITHUB_WORKSPACE"),
            RunnerEnvironment = Get("RUNNER_ENVIRONMENT"),
            PullRequest = eventName is "pull_request" or "pull_request_target" && eventPath is not null ? ReadPullRequest(eventPath) : null,
        };
    }

    /// <summary>The pull request in an event payload file; null when the payload has none.</summary>
    public static PullRequestEvent? ReadPullRequest(string eventPath)
    {
        if (!File.Exists(eventPath))
            throw new ErtasException(ErrorCode.FileNotFound, "the event payload (GITHUB_EVENT_PATH) does not exist", eventPath);
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(eventPath));
            if (!document.RootElement.TryGetProperty("pull_request", out var pr) || pr.ValueKind != JsonValueKind.Object)
                return null;
            var number = pr.TryGetProperty("number", out var n) && n.TryGetInt32(out var value) ? value
                : document.RootElement.TryGetProperty("number", out var top) && top.TryGetInt32(out var topValue) ? topValue
                : throw new ErtasException(ErrorCode.InvalidArgument, "the pull_request event has no number", eventPath);
            return new PullRequestEvent(
                number,
                Text(pr, "base", "sha") ?? "",
                Text(pr, "head", "sha") ?? "",
                Text(pr, "base", "ref"),
                Text(pr, "head", "repo", "full_name"),
                Text(pr, "title"));
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.InvalidArgument, $"the event payload is not JSON: {e.Message}", eventPath);
        }
    }

    private static string? Text(JsonElement element, params string[] path)
    {
        foreach (var name in path)
        {
            if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty(name, out element))
                return null;
        }
        return element.ValueKind == JsonValueKind.String ? element.GetString() : null;
    }
}
