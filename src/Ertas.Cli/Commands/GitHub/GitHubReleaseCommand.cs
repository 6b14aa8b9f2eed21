using Ertas.Core;
using Ertas.GitHub;

namespace Ertas.Cli.Commands;

/// <summary>
/// <c>ertas github release</c>: a build's outputs, as its lock lists them, published as a GitHub release with
/// SHA256SUMS and a model card; usable outside Actions with a token.
/// </summary>
public sealed class GitHubReleaseCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["github", "release"];
    public string Usage =>
        "ertas github release --lock PATH/ertas.lock.json [--tag TAG] [--on-existing fail|skip|update] [--draft] [--dry-run]\n" +
        "                     [--asset FILE]... [--max-asset-size 2000M] [--commit SHA] [--staging DIR] [--token-env NAME] [--repo OWNER/NAME] [--api-url URL]";
    public string Summary => "Publish the lock's model and version as a GitHub release (GGUFs, Modelfiles, lock, evals, SHA256SUMS, model card).";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--lock", "The build's ertas.lock.json; its outputs (beside it) are the assets.", "PATH", Required: true),
        new("--tag", "The tag (default: the pushed tag, else v<version>, or <Model>-v<version> when the repository holds several .ertasproj).", "TAG"),
        new("--on-existing", "When the tag's release exists with other assets: fail (default), skip, or update (prereleases and drafts only).", "MODE"),
        new("--draft", "Leave the release as a draft."),
        new("--dry-run", "Check and stage everything, read what exists, write nothing to GitHub."),
        new("--asset", "Another file to attach, e.g. an eval snapshot evals/NAME.Q8_0.verified.json (repeatable).", "FILE", Repeatable: true),
        new("--max-asset-size", "GGUFs larger than this are split into llama.cpp shards (default 2000M, under GitHub's 2 GiB).", "SIZE"),
        new("--commit", "The commit the release is built from (default GITHUB_SHA, else git's HEAD).", "SHA"),
        new("--staging", "Where SHA256SUMS, README.md and shards are written (default: a 'release' folder beside the lock).", "DIR"),
        .. GitHubConnection.Options,
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var actions = ActionsContext.Read(context.Variable);
        var onExisting = (args.Get("--on-existing") ?? "fail").Trim().ToLowerInvariant() switch
        {
            "fail" => OnExisting.Fail,
            "skip" => OnExisting.Skip,
            "update" => OnExisting.Update,
            var other => throw new ErtasException(ErrorCode.InvalidArgument, $"--on-existing must be fail, skip or update, got '{other}'"),
        };
        var maxAsset = args.Get("--max-asset-size") is { } size ? GgufSplitCommand.ParseSize(size) : (long?)null;
        var result = Publish(ModelLock.Read(args.Require("--lock")), args.Get("--tag") ?? actions.PushedTag, onExisting,
            args.Has("--draft"), args.Has("--dry-run"), args.GetAll("--asset"), maxAsset, args, context, actions);
        if (actions.OutputFile is { } output)
            WorkflowCommands.WriteOutputs(output, [new("release-url", result.HtmlUrl ?? ""), new("checksums-path", result.ChecksumsPath ?? "")]);
        return 0;
    }

    internal sealed record Published(string? HtmlUrl, string? ChecksumsPath);

    internal static Published Publish(ModelLock lockFile, string? tag, OnExisting onExisting, bool draft, bool dryRun,
        IReadOnlyList<string> extraAssets, long? maxAssetBytes, ParsedArgs args, CliContext context, ActionsContext actions)
    {
        var ct = context.Cancellation;
        tag ??= DefaultTag(lockFile);
        var version = lockFile.SemanticVersion.ToNormalizedString();
        if (lockFile.SemanticVersion.ReleaseLabels.FirstOrDefault() == "pr")
            throw new ErtasException(ErrorCode.ActionTagMismatch,
                $"{version} is a pull request's build, which is never released: release a build of the merged commit, tagged v<ModelVersion>", lockFile.FullPath);
        if (tag != "v" + version && tag != $"{lockFile.Model}-v{version}")
            throw new ErtasException(ErrorCode.ActionTagMismatch,
                $"the tag '{tag}' does not name this build's version {version}: release it as 'v{version}' or '{lockFile.Model}-v{version}', or set ModelVersion to the tag's version and rebuild", lockFile.FullPath);
        var commit = args.Get("--commit") ?? actions.Sha
            ?? ChildProcess.Capture("git", ["rev-parse", "HEAD"], lockFile.Directory, ct, out _)?.Trim();
        var staging = args.Get("--staging") is { } given ? Path.GetFullPath(given) : Path.Combine(lockFile.Directory, "release", tag);
        var options = new ReleasePlanOptions
        {
            Tag = tag,
            ExtraAssets = extraAssets,
            Commit = commit,
            Repository = args.Get("--repo") ?? actions.Repository,
            ServerUrl = actions.ServerUrl,
        };
        if (maxAssetBytes is { } max)
            options = options with { MaxAssetBytes = max };
        var prepared = ReleasePlan.Prepare(lockFile, options, staging, ProgressSinks.For(context.Error), ct);
        var checksums = Path.Combine(prepared.StagingDirectory, ReleasePlan.ChecksumsName);
        context.Error.WriteLine($"ertas github release: {prepared.Tag}: {prepared.Assets.Count} asset(s) staged in {prepared.StagingDirectory}");

        var connection = GitHubConnection.Connect(args, context, actions);
        var result = ReleasePublisher.PublishAsync(connection.Client, connection.Owner, connection.Repo, prepared,
            new ReleasePublishOptions { OnExisting = onExisting, Draft = draft, DryRun = dryRun }, ct).GetAwaiter().GetResult();
        if (result.Outcome == ReleaseOutcome.Skipped)
            context.Out.WriteLine(actions.IsActions ? WorkflowCommands.Line(new Annotation("warning", result.Message)) : "warning: " + result.Message);
        else
            context.Error.WriteLine(result.Message);
        return new Published(result.HtmlUrl, checksums);
    }

    /// <summary>v&lt;version&gt;, or &lt;Model&gt;-v&lt;version&gt; when the repository holds several models (each needs its own tags).</summary>
    private static string DefaultTag(ModelLock lockFile)
    {
        var projects = ChildProcess.Capture("git", ["ls-files", "--full-name", "--", ":(top)*.ertasproj"], lockFile.Directory, CancellationToken.None, out _);
        var several = projects is not null && projects.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length > 1;
        return ModelVersions.ReleaseTag(lockFile.Model, lockFile.SemanticVersion, several);
    }
}
