using System.Text.Json;
using Ertas.Core;
using Ertas.GitHub;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas github version</c>: the version a build should carry (a pull request's builds are prereleases).</summary>
public sealed class GitHubVersionCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["github", "version"];
    public string Usage => "ertas github version --lock PATH/ertas.lock.json [--pr N --run N]";
    public string Summary => "Print the version a build carries: the lock's, or X.Y.Z-pr.N.RUN for a pull request's build.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--lock", "The build's ertas.lock.json.", "PATH", Required: true),
        new("--pr", "The pull request number (default: the one in GITHUB_EVENT_PATH on a pull_request event).", "N"),
        new("--run", "The run number (default GITHUB_RUN_NUMBER).", "N"),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var actions = ActionsContext.Read(context.Variable);
        var modelLock = ModelLock.Read(args.Require("--lock"));
        var pr = args.GetIntOrNull("--pr", min: 1) ?? (args.Has("--run") ? null : actions.PullRequest?.Number);
        var run = args.GetIntOrNull("--run", min: 1) ?? actions.RunNumber;
        if (pr is null && args.Has("--run"))
            throw new ErtasException(ErrorCode.MissingArgument, "--run goes with --pr: a run number alone makes no prerelease version");
        if (pr is not null && run is null)
            throw new ErtasException(ErrorCode.MissingArgument, "--pr needs --run N (or GITHUB_RUN_NUMBER), which orders a pull request's builds");
        var version = pr is { } number ? ModelVersions.PullRequest(modelLock.SemanticVersion, number, run!.Value) : modelLock.SemanticVersion;
        context.Out.WriteLine(version.ToNormalizedString());
        return 0;
    }
}

/// <summary><c>ertas github comment</c>: one comment per key on a pull request, edited in place on every run.</summary>
public sealed class GitHubCommentCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["github", "comment"];
    public string Usage => "ertas github comment --key KEY --body-file FILE.md [--pr N] [--token-env NAME] [--repo OWNER/NAME] [--api-url URL]";
    public string Summary => "Create or update the pull request's sticky comment for KEY from a Markdown file.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--key", "Which sticky comment: letters, digits, '-', '_', '.' (e.g. the model's name).", "KEY", Required: true),
        new("--body-file", "The Markdown to post (cut under GitHub's 65,536 characters when longer).", "FILE", Required: true),
        new("--pr", "The pull request number (default: the one in GITHUB_EVENT_PATH).", "N"),
        .. GitHubConnection.Options,
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var actions = ActionsContext.Read(context.Variable);
        var bodyFile = args.Require("--body-file");
        if (!File.Exists(bodyFile))
            throw new ErtasException(ErrorCode.FileNotFound, "the comment body file does not exist", bodyFile);
        var pr = GitHubConnection.PullRequestNumber(args, actions);
        var key = args.Require("--key");
        var connection = GitHubConnection.Connect(args, context, actions);
        var result = StickyComment.UpsertAsync(connection.Client, connection.Owner, connection.Repo, pr, key,
            File.ReadAllText(bodyFile), context.Cancellation).GetAwaiter().GetResult();
        Report(result, context, actions);
        return 0;
    }

    /// <summary>A skipped comment (a fork's read-only token) is a warning, never a failure: the report is in the job summary.</summary>
    internal static void Report(StickyCommentResult result, CliContext context, ActionsContext actions)
    {
        if (result.Skipped)
        {
            context.Out.WriteLine(actions.IsActions ? WorkflowCommands.Line(new Annotation("warning", result.Message)) : "warning: " + result.Message);
            return;
        }
        context.Error.WriteLine(result.Message);
        if (actions.OutputFile is { } output && result.HtmlUrl is { } url)
            WorkflowCommands.WriteOutputs(output, [new("comment-url", url)]);
    }
}

/// <summary>
/// <c>ertas github changed</c>: which .ertasproj projects a pull request touches, for a workflow's matrix, so unchanged
/// models are not retrained.
/// </summary>
public sealed class GitHubChangedCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["github", "changed"];
    public string Usage => "ertas github changed --base SHA [--head SHA] [--configuration Release]";
    public string Summary => "Print (JSON) the .ertasproj projects whose inputs differ between two commits.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--base", "The base commit (a pull request's base.sha).", "SHA", Required: true),
        new("--head", "The head commit (default HEAD, the checkout).", "SHA"),
        new("--configuration", "The configuration the projects are evaluated in (default Release).", "NAME"),
    ];

    /// <summary>Files that change every project below them: MSBuild imports them, NuGet and the SDK read them.</summary>
    private static readonly string[] SharedFiles = ["Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props", "nuget.config", "NuGet.Config", "global.json"];

    public int Run(ParsedArgs args, CliContext context)
    {
        var root = ChildProcess.Git(Environment.CurrentDirectory, context.Cancellation, "rev-parse", "--show-toplevel").Trim();
        var head = args.Get("--head") ?? "HEAD";
        var baseCommit = args.Require("--base");
        // Three dots: what the pull request changed since it left the base, not what the base gained since.
        var changed = ChildProcess.Git(root, context.Cancellation, "diff", "--name-only", "--no-renames", $"{baseCommit}...{head}")
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => Path.GetFullPath(p, root))
            .ToList();
        var projects = ChildProcess.Git(root, context.Cancellation, "ls-files", "--", "*.ertasproj")
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new List<string>();
        foreach (var project in projects)
        {
            var full = Path.GetFullPath(project, root);
            if (Affects(full, root, changed, args.Get("--configuration") ?? "Release", context))
                result.Add(project.Replace('\\', '/'));
        }
        context.Out.WriteLine(JsonSerializer.Serialize(result.Order(StringComparer.Ordinal).ToList()));
        return 0;
    }

    private static bool Affects(string project, string root, IReadOnlyList<string> changed, string configuration, CliContext context)
    {
        var directory = Path.GetDirectoryName(project)! + Path.DirectorySeparatorChar;
        // Anything in the project's folder (the project, its data, evals, baselines), or a shared build file above it.
        if (changed.Any(c => c.StartsWith(directory, StringComparison.Ordinal)))
            return true;
        if (changed.Any(c => SharedFiles.Contains(Path.GetFileName(c), StringComparer.OrdinalIgnoreCase)
                             && directory.StartsWith(Path.GetDirectoryName(c)! + Path.DirectorySeparatorChar, StringComparison.Ordinal)))
            return true;
        // Inputs outside its folder (a dataset shared by several models) are known only to MSBuild.
        try
        {
            var info = ErtasProjectInfo.Query(project, configuration, context.Cancellation);
            return info.InputFiles.Any(input => changed.Any(c => c == input || c.StartsWith(input.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal)));
        }
        catch (ErtasException e)
        {
            // Better one needless training run than a changed model left unbuilt.
            context.Error.WriteLine($"warning: {Path.GetRelativePath(root, project)}: counted as changed, since its inputs could not be listed ({e.Message})");
            return true;
        }
    }
}
