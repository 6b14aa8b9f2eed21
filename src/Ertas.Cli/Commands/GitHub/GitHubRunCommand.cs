using System.Globalization;
using System.Text;
using System.Text.Json;
using Ertas.Core;
using Ertas.Eval;
using Ertas.GitHub;
using NuGet.Versioning;

namespace Ertas.Cli.Commands;

/// <summary>
/// <c>ertas github run</c>: what the GitHub Action does, in one verb. It checks the inputs and the event, builds the
/// project with <c>dotnet build</c> (MSBuild's errors become annotations on the pull request's files), appends the eval
/// report to the job summary, and then, on a pull request, updates the sticky comment (before failing the job on a
/// failed gate) or, on a tag push, publishes the release. Outputs go to GITHUB_OUTPUT.
/// </summary>
public sealed class GitHubRunCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["github", "run"];
    public string Usage =>
        "ertas github run [--project PATH] [--mode auto|pr|release|build] [--configuration Release] [--device cpu|cuda]\n" +
        "                 [--comment upsert|off] [--on-existing fail|skip|update] [--dry-run false] [--allow-untrusted false]\n" +
        "                 [--cache true] [--upload-artifact true]";
    public string Summary => "The GitHub Action's work: build, annotate, summarize, comment on the pull request or release.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--project", "An .ertasproj or a solution (default: the one in the repository root).", "PATH"),
        new("--mode", "auto (pull_request: pr, tag push: release, else build), pr, release or build.", "MODE"),
        new("--configuration", "The build configuration (default Release).", "NAME"),
        new("--device", "cpu or cuda (sets ErtasDevice and ErtasTorchRuntime).", "DEVICE"),
        new("--comment", "upsert (default) or off: the sticky pull-request comment.", "MODE"),
        new("--on-existing", "fail (default), skip or update: what a release does when the tag's release exists.", "MODE"),
        new("--dry-run", "true: build and report, but write nothing to GitHub (default false).", "BOOL"),
        new("--allow-untrusted", "true: run pull_request_target events and fork pull requests on self-hosted runners (default false).", "BOOL"),
        new("--cache", "The action's cache input, checked here (true or false; the caching is the action's).", "BOOL"),
        new("--upload-artifact", "true (default): list the model's files in the artifact-paths output; false: none.", "BOOL"),
        .. GitHubConnection.Options,
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var inputs = ActionInputs.Parse(args);
        var actions = ActionsContext.Read(context.Variable);
        var mode = ResolveMode(inputs.Mode, actions);
        Guard(actions, inputs.AllowUntrusted);
        var workspace = actions.Workspace ?? Environment.CurrentDirectory;
        var projects = FindProjects(inputs.Project, inputs.Configuration, workspace, actions, mode, context.Cancellation);

        if (actions.IsActions)
            // setup-dotnet's problem matcher would annotate the build log's errors a second time, and by the raw path.
            context.Out.WriteLine("::remove-matcher owner=csc::");

        var outputs = new RunOutputs();
        var failed = false;
        foreach (var project in projects)
            failed |= RunProject(project, inputs, mode, actions, workspace, args, context, outputs);

        if (actions.OutputFile is { } outputFile)
            WorkflowCommands.WriteOutputs(outputFile, outputs.ToPairs().Where(p => inputs.UploadArtifact || p.Key != "artifact-paths"));
        return failed ? (int)ExitCode.Failure : 0;
    }

    private static bool RunProject(ErtasProjectInfo project, ActionInputs inputs, string mode, ActionsContext actions, string workspace,
        ParsedArgs args, CliContext context, RunOutputs outputs)
    {
        var ct = context.Cancellation;
        var version = SemanticVersion.Parse(project.ModelVersion);
        if (mode == "pr")
        {
            var run = actions.RunNumber ?? throw new ErtasException(ErrorCode.MissingArgument, "GITHUB_RUN_NUMBER is not set: a pull request's version needs the run number");
            version = ModelVersions.PullRequest(version, actions.PullRequest!.Number, run);
        }

        // The build: its log as it comes, folded in a group; its errors and warnings again as annotations.
        var build = new List<string> { "build", project.ProjectPath, "-c", inputs.Configuration, "-tl:off", "-nologo",
            "-p:ContinuousIntegrationBuild=true", $"-p:ErtasDevice={inputs.Device}" };
        if (inputs.Device == "cuda")
            build.Add("-p:ErtasTorchRuntime=cuda");
        if (mode == "pr")
            build.Add($"-p:ModelVersion={version.ToNormalizedString()}");
        var name = Path.GetRelativePath(workspace, project.ProjectPath).Replace('\\', '/');
        context.Out.WriteLine(actions.IsActions ? $"::group::dotnet build {name}" : $"dotnet build {name}");
        context.Out.Flush();
        var verdictBefore = File.Exists(project.VerdictPath) ? File.GetLastWriteTimeUtc(project.VerdictPath) : DateTime.MinValue;
        var result = ChildProcess.Run("dotnet", build, project.ProjectDirectory, context.Out, ct);
        if (actions.IsActions)
            context.Out.WriteLine("::endgroup::");
        var diagnostics = MsBuildDiagnostics.Parse(result.Lines, workspace);
        if (actions.IsActions)
        {
            foreach (var line in WorkflowCommands.Annotate(diagnostics))
                context.Out.WriteLine(line);
        }
        var buildFailed = result.ExitCode != 0;
        // Asked again now that the project is restored: before the first restore, imports that restore writes are
        // missing and paths such as OutDir can evaluate differently.
        if (!buildFailed)
            project = ErtasProjectInfo.Query(project.ProjectPath, inputs.Configuration, ct);
        context.Error.WriteLine(buildFailed
            ? $"ertas github: {name}: the build failed ({diagnostics.Count(d => d.Severity == "error")} error(s))"
            : $"ertas github: {name}: built {project.ModelName} {version.ToNormalizedString()}");

        // A failed build that left verdict.json as it was stopped before its eval stage: that verdict is an earlier build's.
        var stale = buildFailed && File.Exists(project.VerdictPath) && File.GetLastWriteTimeUtc(project.VerdictPath) == verdictBefore;
        var verdict = stale ? new VerdictFile("none-run", []) : ReadVerdict(project);
        var lockFile = !buildFailed && File.Exists(project.LockPath) ? ModelLock.Read(project.LockPath) : null;
        var report = project.HasEvals && File.Exists(project.ReportPath) && verdict.Verdict != "none-run" ? File.ReadAllText(project.ReportPath) : null;
        var verdictWord = verdict.Verdict == "none-run" ? (buildFailed ? "fail" : "none") : verdict.Verdict;

        outputs.Add(project, version, verdictWord, lockFile, report is null ? null : project.ReportPath, workspace, inputs.Configuration);

        var body = CommentBody(project, version, verdictWord, buildFailed, diagnostics, report, verdict, mode, actions, ct);
        if (actions.SummaryFile is { } summary)
            WorkflowCommands.AppendSummary(summary, body);

        if (mode == "pr" && inputs.Comment == "upsert")
        {
            if (inputs.DryRun)
                context.Error.WriteLine($"ertas github: dry run: the sticky comment '{CommentKey(project)}' was not posted ({body.Length:N0} characters)");
            else
            {
                var connection = GitHubConnection.Connect(args, context, actions);
                var posted = StickyComment.UpsertAsync(connection.Client, connection.Owner, connection.Repo, actions.PullRequest!.Number,
                    CommentKey(project), body, ct).GetAwaiter().GetResult();
                GitHubCommentCommand.Report(posted, context, actions with { OutputFile = null });
                if (posted.HtmlUrl is { } url)
                    outputs.CommentUrl = url;
            }
        }

        if (buildFailed || verdictWord == "fail")
            return true;

        if (mode == "release" && lockFile is not null)
        {
            var snapshots = Directory.Exists(project.SnapshotDirectory)
                ? Directory.GetFiles(project.SnapshotDirectory, $"{project.ModelName}.*.verified.json").Order(StringComparer.Ordinal).ToList()
                : [];
            var released = GitHubReleaseCommand.Publish(lockFile, actions.PushedTag, inputs.OnExisting, draft: false, inputs.DryRun,
                snapshots, maxAssetBytes: null, args, context, actions);
            outputs.ReleaseUrl = released.HtmlUrl ?? outputs.ReleaseUrl;
            outputs.ChecksumsPath = released.ChecksumsPath ?? outputs.ChecksumsPath;
        }
        return false;
    }

    /// <summary>The comment's key: the model, so each project of a repository keeps one comment.</summary>
    internal static string CommentKey(ErtasProjectInfo project) =>
        "eval-" + new string(project.ModelName.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '-').ToArray());

    private sealed record VerdictFile(string Verdict, IReadOnlyList<(string Quantization, string Snapshot)> Snapshots);

    /// <summary>The eval stage's verdict.json; "none-run" when no evals ran (none declared, or never reached).</summary>
    private static VerdictFile ReadVerdict(ErtasProjectInfo project)
    {
        if (!project.HasEvals || !File.Exists(project.VerdictPath))
            return new VerdictFile("none-run", []);
        using var document = JsonDocument.Parse(File.ReadAllBytes(project.VerdictPath));
        var root = document.RootElement;
        var snapshots = root.GetProperty("quantizations").EnumerateArray()
            .Select(q => (q.GetProperty("quantization").GetString()!, q.GetProperty("snapshot").GetString()!)).ToList();
        return new VerdictFile(root.GetProperty("verdict").GetString()!, snapshots);
    }

    private static string CommentBody(ErtasProjectInfo project, SemanticVersion version, string verdict, bool buildFailed,
        IReadOnlyList<Annotation> diagnostics, string? report, VerdictFile verdictFile, string mode, ActionsContext actions, CancellationToken ct)
    {
        var sb = new StringBuilder();
        var icon = verdict switch { "pass" => "✅", "fail" => "❌", _ => buildFailed ? "❌" : "🆕" };
        sb.Append(CultureInfo.InvariantCulture, $"## {icon} {project.ModelName} {version.ToNormalizedString()}\n\n");
        if (buildFailed)
        {
            var errors = diagnostics.Where(d => d.Severity == "error").ToList();
            sb.Append(CultureInfo.InvariantCulture, $"**The build failed** with {errors.Count} error(s):\n\n");
            foreach (var error in errors.Take(20))
                sb.Append("- ").Append(error.File is null ? "" : $"`{error.File}{(error.Line > 0 ? $"({error.Line},{Math.Max(error.Column, 1)})" : "")}`: ").Append(error.Message).Append('\n');
            if (errors.Count > 20)
                sb.Append(CultureInfo.InvariantCulture, $"- … and {errors.Count - 20} more (see the run's log)\n");
            sb.Append('\n');
        }
        if (report is not null)
        {
            sb.Append("### Against this branch's committed baselines\n\n").Append(report.TrimEnd()).Append("\n\n");
            if (mode == "pr" && actions.PullRequest is { } pr)
                sb.Append(BaseComparison(project, pr, verdictFile, ct));
        }
        else if (!buildFailed)
            sb.Append("No evals ran: the project declares no `EvalSuite`.\n\n");
        if (actions.RunUrl is { } run)
            sb.Append(CultureInfo.InvariantCulture, $"[Run]({run}) · [GGUFs and report (artifact)]({run}#artifacts)\n");
        return sb.ToString();
    }

    /// <summary>
    /// The same results against the base branch's baseline (git show BASE:evals/...verified.json): a pull request that
    /// accepted a new baseline passes its own gate, and this is where reviewers see what it changed.
    /// </summary>
    private static string BaseComparison(ErtasProjectInfo project, PullRequestEvent pr, VerdictFile verdict, CancellationToken ct)
    {
        if (pr.BaseSha.Length == 0 || verdict.Snapshots.Count == 0)
            return "";
        var sb = new StringBuilder();
        var root = ChildProcess.Capture("git", ["rev-parse", "--show-toplevel"], project.ProjectDirectory, ct, out _)?.Trim();
        // Where the pull request left the base branch: the base's later commits are not this change's doing.
        var baseCommit = root is not null && pr.HeadSha.Length > 0
            && ChildProcess.Capture("git", ["merge-base", pr.BaseSha, pr.HeadSha], root, ct, out _)?.Trim() is { Length: > 0 } mergeBase
            ? mergeBase
            : pr.BaseSha;
        sb.Append(CultureInfo.InvariantCulture, $"### Against the base branch ({(pr.BaseRef is null ? "" : $"`{pr.BaseRef}` ")}at {baseCommit[..Math.Min(7, baseCommit.Length)]})\n\n");
        var comparisons = new List<QuantComparison>();
        var missing = new List<string>();
        foreach (var (quantization, snapshot) in verdict.Snapshots)
        {
            var now = Path.Combine(project.SnapshotDirectory, snapshot);
            var verified = EvalRun.VerifiedPath(project.SnapshotDirectory, project.ModelName, quantization);
            if (root is null || !File.Exists(now))
                continue;
            var relative = Path.GetRelativePath(root, verified).Replace('\\', '/');
            var text = BaseFile(root, baseCommit, relative, ct);
            if (text is null)
            {
                missing.Add(relative);
                continue;
            }
            var temporary = Path.Combine(Path.GetTempPath(), $"ertas-base-{Guid.NewGuid():N}.json");
            try
            {
                File.WriteAllText(temporary, text);
                comparisons.Add(EvalGate.Compare(EvalSnapshot.Read(temporary), EvalSnapshot.Read(now), new GateOptions()));
            }
            catch (ErtasException e)
            {
                sb.Append(CultureInfo.InvariantCulture, $"The base branch's `{relative}` could not be read: {e.Message}\n");
            }
            finally
            {
                File.Delete(temporary);
            }
        }
        if (comparisons.Count > 0)
            sb.Append(EvalMarkdown.Render(new EvalReport(project.ModelName, comparisons)).TrimEnd()).Append("\n\n");
        foreach (var file in missing)
            sb.Append(CultureInfo.InvariantCulture, $"The base branch has no `{file}`: these results are new.\n");
        if (root is null)
            sb.Append("The checkout is not a git repository, so the base branch's baseline could not be read.\n");
        return sb.Append('\n').ToString();
    }

    /// <summary>A file at the base commit; fetched once when a shallow checkout lacks the commit.</summary>
    private static string? BaseFile(string root, string sha, string path, CancellationToken ct)
    {
        var text = ChildProcess.Capture("git", ["show", $"{sha}:{path}"], root, ct, out _);
        if (text is not null)
            return text;
        if (ChildProcess.Capture("git", ["cat-file", "-e", sha + "^{commit}"], root, ct, out _) is null)
        {
            ChildProcess.Capture("git", ["fetch", "--no-tags", "--depth=1", "origin", sha], root, ct, out _);
            return ChildProcess.Capture("git", ["show", $"{sha}:{path}"], root, ct, out _);
        }
        return null;
    }

    private static string ResolveMode(string mode, ActionsContext actions)
    {
        var resolved = mode != "auto" ? mode
            : actions.EventName is "pull_request" or "pull_request_target" ? "pr"
            : actions.PushedTag is not null ? "release"
            : "build";
        if (resolved == "pr" && actions.PullRequest is null)
            throw new ErtasException(ErrorCode.ActionInputInvalid,
                $"mode 'pr' needs a pull_request event with its payload (GITHUB_EVENT_NAME is '{actions.EventName}')");
        return resolved;
    }

    /// <summary>
    /// pull_request_target runs the base repository's workflow with a write token and secrets, and a fork's pull request
    /// on a self-hosted runner runs a stranger's code (its MSBuild files are code) on a machine that keeps state: both
    /// are refused unless allow-untrusted says the workflow was written for them.
    /// </summary>
    private static void Guard(ActionsContext actions, bool allowUntrusted)
    {
        if (allowUntrusted)
            return;
        if (actions.EventName == "pull_request_target")
            throw new ErtasException(ErrorCode.ActionUntrustedEvent,
                "refusing a pull_request_target event: it runs with the base repository's write token and secrets, and building the pull request's .ertasproj runs its code. Trigger the workflow on pull_request, or set allow-untrusted: true if the workflow checks out only trusted code");
        if (actions.PullRequest is { } pr && actions.Repository is { } repository && !pr.IsFrom(repository) && actions.IsSelfHosted)
            throw new ErtasException(ErrorCode.ActionUntrustedEvent,
                $"refusing to build pull request #{pr.Number} from the fork {pr.HeadRepository} on a self-hosted runner: its project and MSBuild files are code that would run on your machine. Guard the job with `if: github.event.pull_request.head.repo.full_name == github.repository`, or set allow-untrusted: true");
    }

    private static IReadOnlyList<ErtasProjectInfo> FindProjects(string given, string configuration, string workspace, ActionsContext actions, string mode, CancellationToken ct)
    {
        List<string> paths;
        if (given.Length > 0)
        {
            var full = Path.GetFullPath(given, workspace);
            if (!File.Exists(full))
                throw new ErtasException(ErrorCode.ActionProjectNotFound, $"input 'project': '{given}' does not exist (relative paths start at the repository root, {workspace})");
            paths = Path.GetExtension(full).ToLowerInvariant() switch
            {
                ".ertasproj" => [full],
                ".sln" or ".slnx" => SolutionProjects(full, ct),
                _ => throw new ErtasException(ErrorCode.ActionInputInvalid, $"input 'project': '{given}' is neither an .ertasproj nor a solution (.sln, .slnx)"),
            };
        }
        else
        {
            paths = [.. Directory.GetFiles(workspace, "*.ertasproj").Order(StringComparer.Ordinal)];
            // A tag push in a repository of several models: the tag names the one to release, wherever it lives.
            if (paths.Count == 0 && mode == "release"
                && ChildProcess.Capture("git", ["ls-files", "--full-name", "--", ":(top)*.ertasproj"], workspace, ct, out _) is { } tracked)
                paths = [.. tracked.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => Path.GetFullPath(p, workspace))];
            if (paths.Count == 0 && Directory.GetFiles(workspace, "*.sln*").Where(f => f.EndsWith(".sln", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".slnx", StringComparison.OrdinalIgnoreCase)).ToList() is [var solution])
                paths = SolutionProjects(solution, ct);
            if (paths.Count == 0)
                throw new ErtasException(ErrorCode.ActionProjectNotFound,
                    $"no .ertasproj (or solution) in the repository root {workspace}: set the action's 'project' input to the model's .ertasproj");
            if (paths.Count > 1 && mode != "release")
                throw new ErtasException(ErrorCode.ActionProjectNotFound,
                    $"the repository root holds several .ertasproj ({string.Join(", ", paths.Select(Path.GetFileName))}): set the action's 'project' input (the PR workflow template builds one per matrix job)");
        }
        if (paths.Count == 0)
            throw new ErtasException(ErrorCode.ActionProjectNotFound, $"the solution '{given}' holds no .ertasproj");

        var projects = paths.Select(p => ErtasProjectInfo.Query(p, configuration, ct)).ToList();
        if (mode != "release")
            return projects;

        // A tag releases one model: v<version> the only one, or <Model>-v<version> the one it names.
        var tag = actions.PushedTag ?? throw new ErtasException(ErrorCode.ActionInputInvalid,
            $"mode 'release' needs a tag push (GITHUB_REF is '{actions.Ref}'); push a tag v<ModelVersion> or <ModelName>-v<ModelVersion>");
        var matching = projects.Where(p => TagMatches(tag, p)).ToList();
        if (matching.Count == 0)
            throw new ErtasException(ErrorCode.ActionTagMismatch,
                $"the tag '{tag}' matches no project's version: expected {string.Join(" or ", projects.SelectMany(p => new[] { $"v{Normalized(p)}", $"{p.ModelName}-v{Normalized(p)}" }).Select(t => $"'{t}'"))}. Set ModelVersion to the tag's version, or push the right tag");
        return matching;
    }

    private static string Normalized(ErtasProjectInfo p) =>
        SemanticVersion.TryParse(p.ModelVersion, out var v) ? v.ToNormalizedString() : p.ModelVersion;

    internal static bool TagMatches(string tag, ErtasProjectInfo project) =>
        tag == "v" + Normalized(project) || tag == $"{project.ModelName}-v{Normalized(project)}";

    private static List<string> SolutionProjects(string solution, CancellationToken ct)
    {
        var listed = ChildProcess.Capture("dotnet", ["sln", solution, "list"], Path.GetDirectoryName(solution)!, ct, out var error)
            ?? throw new ErtasException(ErrorCode.ActionProjectNotFound, $"dotnet sln list failed: {error}", solution);
        return listed.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.EndsWith(".ertasproj", StringComparison.OrdinalIgnoreCase))
            .Select(l => Path.GetFullPath(l.Replace('\\', Path.DirectorySeparatorChar), Path.GetDirectoryName(solution)!))
            .ToList();
    }

    /// <summary>What the action's outputs say, accumulated over the projects built (one, except for a solution).</summary>
    private sealed class RunOutputs
    {
        private readonly List<string> _ggufs = [];
        private readonly List<string> _artifacts = [];
        private readonly List<string> _versions = [];
        private readonly List<string> _verdicts = [];
        private readonly List<string> _reports = [];
        private string? _name;
        private bool _prerelease;

        public string? CommentUrl { get; set; }
        public string? ReleaseUrl { get; set; }
        public string? ChecksumsPath { get; set; }

        public void Add(ErtasProjectInfo project, SemanticVersion version, string verdict, ModelLock? lockFile, string? report, string workspace, string configuration)
        {
            string Relative(string path) => Path.GetRelativePath(workspace, path).Replace('\\', '/');
            _versions.Add(version.ToNormalizedString());
            _prerelease |= version.IsPrerelease;
            _verdicts.Add(verdict);
            _name ??= $"{project.ModelName}-{version.ToNormalizedString()}";
            if (report is not null)
            {
                _reports.Add(Relative(report));
                _artifacts.Add(Relative(report));
                if (File.Exists(project.ReportHtmlPath))
                    _artifacts.Add(Relative(project.ReportHtmlPath));
            }
            if (lockFile is null)
                return;
            _artifacts.Add(Relative(lockFile.FullPath));
            foreach (var output in lockFile.Outputs)
            {
                var path = Relative(lockFile.PathOf(output));
                _artifacts.Add(path);
                if (output.Kind is LockOutput.GgufKind or LockOutput.AdapterGgufKind)
                    _ggufs.Add(path);
            }
        }

        public IEnumerable<KeyValuePair<string, string>> ToPairs()
        {
            yield return new("version", string.Join(' ', _versions.Distinct()));
            yield return new("is-prerelease", _prerelease ? "true" : "false");
            yield return new("gguf-files", JsonSerializer.Serialize(_ggufs));
            // One failure fails them all; "none" only when nothing was compared with a baseline.
            yield return new("eval-verdict", _verdicts.Contains("fail") ? "fail" : _verdicts.Contains("pass") ? "pass" : "none");
            yield return new("report-path", _reports.FirstOrDefault() ?? "");
            yield return new("comment-url", CommentUrl ?? "");
            yield return new("release-url", ReleaseUrl ?? "");
            yield return new("checksums-path", ChecksumsPath ?? "");
            yield return new("artifact-name", _name ?? "ertas");
            yield return new("artifact-paths", string.Join('\n', _artifacts.Distinct()));
        }
    }
}

/// <summary>The action's inputs as the verb receives them (strings), each checked with one clear error.</summary>
internal sealed record ActionInputs(string Project, string Mode, string Configuration, string Device, string Comment, OnExisting OnExisting, bool DryRun,
    bool AllowUntrusted, bool UploadArtifact)
{
    public static ActionInputs Parse(ParsedArgs args)
    {
        string OneOf(string option, string input, string fallback, params string[] allowed)
        {
            var value = (args.Get(option) ?? "").Trim();
            if (value.Length == 0)
                return fallback;
            value = value.ToLowerInvariant();
            return allowed.Contains(value) ? value
                : throw new ErtasException(ErrorCode.ActionInputInvalid, $"input '{input}' must be {string.Join(", ", allowed[..^1])} or {allowed[^1]}, got '{args.Get(option)}'");
        }
        // The cache itself is the action's (actions/cache); the value is only checked here.
        OneOf("--cache", "cache", "true", "true", "false");
        var configuration = (args.Get("--configuration") ?? "").Trim();
        if (configuration.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')))
            throw new ErtasException(ErrorCode.ActionInputInvalid, $"input 'configuration' must be a configuration name such as Release, got '{configuration}'");
        return new ActionInputs(
            (args.Get("--project") ?? "").Trim(),
            OneOf("--mode", "mode", "auto", "auto", "pr", "release", "build"),
            configuration.Length == 0 ? "Release" : configuration,
            OneOf("--device", "device", "cpu", "cpu", "cuda"),
            OneOf("--comment", "comment", "upsert", "upsert", "off"),
            OneOf("--on-existing", "on-existing", "fail", "fail", "skip", "update") switch { "skip" => OnExisting.Skip, "update" => OnExisting.Update, _ => OnExisting.Fail },
            OneOf("--dry-run", "dry-run", "false", "true", "false") == "true",
            OneOf("--allow-untrusted", "allow-untrusted", "false", "true", "false") == "true",
            OneOf("--upload-artifact", "upload-artifact", "true", "true", "false") == "true");
    }
}
