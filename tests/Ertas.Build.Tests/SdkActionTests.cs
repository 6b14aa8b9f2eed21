using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Ertas.GitHub.Tests;

namespace Ertas.Build.Tests;

/// <summary>
/// The composite action (action.yml) run step by step as the runner would, on a git repository holding a copy of the
/// sample, against a fake GitHub API on loopback: a pull request gets one sticky comment with the eval table, a
/// failing gate fails the job after the comment, a tag push publishes the release, and a clean clone of the tagged
/// commit rebuilds to the SHA256SUMS that was published.
/// </summary>
public sealed partial class SdkBuildTests
{
    private const string Token = "ghs_actionTestToken0123456789";

    [Fact]
    public void GitHubAction_PullRequestsGetOneStickyEvalComment_AFailedGateFailsAfterIt_AndATagPushReleasesReproducibleAssets()
    {
        var repository = sdk.CopyOfSample();
        File.WriteAllText(Path.Combine(repository, ".gitignore"), "bin/\nobj/\n*.received.json\n");
        Git(repository, "init -q -b main");
        Git(repository, "add -A");
        Git(repository, "commit -q -m base");
        var baseSha = Git(repository, "rev-parse HEAD");
        Git(repository, "checkout -q -b feature");
        File.AppendAllText(Path.Combine(repository, "README.md"), "\nA change under review.\n");
        Git(repository, "commit -q -am feature");
        var headSha = Git(repository, "rev-parse HEAD");

        using var api = new FakeGitHubApi(Token);
        var pullRequest = new
        {
            number = FakeGitHubApi.PullRequest,
            pull_request = new
            {
                number = FakeGitHubApi.PullRequest,
                title = "A change under review",
                @base = new { sha = baseSha, @ref = "main", repo = new { full_name = $"{FakeGitHubApi.Owner}/{FakeGitHubApi.Repo}" } },
                head = new { sha = headSha, @ref = "feature", repo = new { full_name = $"{FakeGitHubApi.Owner}/{FakeGitHubApi.Repo}" } },
            },
        };

        // A pull request: built as 1.0.0-pr.7.1, gated on the committed baselines, one comment with the eval table.
        var first = Runner(api, repository, "pull_request", $"refs/pull/{FakeGitHubApi.PullRequest}/merge", headSha, 1, pullRequest).Run(repository);
        Assert.True(first.Succeeded, first.Log);
        Assert.Equal($"1.0.0-pr.{FakeGitHubApi.PullRequest}.1", first.Outputs["version"]);
        Assert.Equal("true", first.Outputs["is-prerelease"]);
        Assert.Equal("pass", first.Outputs["eval-verdict"]);
        var ggufs = JsonSerializer.Deserialize<string[]>(first.Outputs["gguf-files"])!;
        var lockPath = Path.Combine(repository, "bin", "Release", "ertas.lock.json");
        Assert.True(ggufs.Length == 3, $"gguf-files: {first.Outputs["gguf-files"]}\n{string.Join("\n", Directory.GetFiles(Path.Combine(repository, "bin", "Release")))}\n{(File.Exists(lockPath) ? File.ReadAllText(lockPath) : "no lock")}");
        Assert.All(ggufs, g => Assert.True(File.Exists(Path.Combine(repository, g)), g));
        Assert.True(File.Exists(Path.Combine(repository, first.Outputs["report-path"])), first.Outputs["report-path"]);
        var comment = Assert.Single(api.Comments);
        Assert.StartsWith("<!-- ertas:sticky:eval-TinyMistral -->", comment.Body);
        Assert.Contains("| metric | baseline | now | delta | rule | status |", comment.Body);
        Assert.Contains("| pass_rate |", comment.Body);
        Assert.Contains("Against the base branch (`main` at " + baseSha[..7], comment.Body);
        Assert.NotEqual("", first.Outputs["comment-url"]);
        Assert.Contains("| pass_rate |", first.Summary);
        var artifact = Assert.Single(first.Uses, u => u.Action.StartsWith("actions/upload-artifact@", StringComparison.Ordinal));
        var paths = artifact.With["path"].Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(paths, p => p.EndsWith(".Q8_0.gguf", StringComparison.Ordinal));
        Assert.Contains(paths, p => p.EndsWith("report.md", StringComparison.Ordinal));
        Assert.All(paths, p => Assert.True(File.Exists(Path.Combine(repository, p)), p));

        // The next push: the same comment, edited in place.
        var second = Runner(api, repository, "pull_request", $"refs/pull/{FakeGitHubApi.PullRequest}/merge", headSha, 2, pullRequest).Run(repository);
        Assert.True(second.Succeeded, second.Log);
        comment = Assert.Single(api.Comments);
        Assert.Contains($"1.0.0-pr.{FakeGitHubApi.PullRequest}.2", comment.Body);

        // A push that breaks the gate (a pass-rate floor the model does not reach): the comment says so first, then the job fails.
        var project = Path.Combine(repository, "TinyMistral.ertasproj");
        File.WriteAllText(project, File.ReadAllText(project).Replace("<EvalMaxTokens>24</EvalMaxTokens>",
            "<EvalMaxTokens>24</EvalMaxTokens>\n    <EvalMinPassRate>1</EvalMinPassRate>", StringComparison.Ordinal));
        Git(repository, "commit -q -am floor");
        var failing = Runner(api, repository, "pull_request", $"refs/pull/{FakeGitHubApi.PullRequest}/merge", Git(repository, "rev-parse HEAD"), 3, pullRequest).Run(repository);
        Assert.False(failing.Succeeded, failing.Log);
        Assert.Equal("fail", failing.Outputs["eval-verdict"]);
        comment = Assert.Single(api.Comments);
        Assert.Contains("❌", comment.Body);
        Assert.Contains("ERTAS9202", failing.Log);
        Assert.Contains("::error file=", failing.Log);
        Assert.Contains(failing.Uses, u => u.Action.StartsWith("actions/upload-artifact@", StringComparison.Ordinal));

        // A tag push on main: the release, its assets and a SHA256SUMS that matches them.
        Git(repository, "checkout -q main");
        Git(repository, "tag v1.0.0");
        var releaseRunner = Runner(api, repository, "push", "refs/tags/v1.0.0", baseSha, 4, new { @ref = "refs/tags/v1.0.0" });
        var released = releaseRunner.Run(repository);
        Assert.True(released.Succeeded, released.Log);
        Assert.Equal("1.0.0", released.Outputs["version"]);
        Assert.Equal("false", released.Outputs["is-prerelease"]);
        Assert.NotEqual("", released.Outputs["release-url"]);
        var release = Assert.Single(api.Releases);
        Assert.Equal("v1.0.0", release.TagName);
        Assert.False(release.Draft);
        var assets = release.Assets.ToDictionary(a => a.Name, a => a.Content);
        foreach (var expected in new[] { "TinyMistral-1.0.0.Q8_0.gguf", "TinyMistral-1.0.0.Q4_K_M.gguf", "TinyMistral-1.0.0.lora.gguf", "Modelfile",
                     "ertas.lock.json", "TinyMistral.Q8_0.verified.json", "TinyMistral.Q4_K_M.verified.json", "README.md", "SHA256SUMS" })
            Assert.True(assets.ContainsKey(expected), $"{expected} missing from the release: {string.Join(", ", assets.Keys)}");
        var sums = Encoding.UTF8.GetString(assets["SHA256SUMS"]);
        var listed = sums.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split("  ", 2)).ToDictionary(p => p[1], p => p[0]);
        Assert.Equal(assets.Keys.Where(k => k != "SHA256SUMS").Order(StringComparer.Ordinal), listed.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, hash) in listed)
            Assert.Equal(hash, Convert.ToHexStringLower(SHA256.HashData(assets[name])));
        Assert.Equal(sums, File.ReadAllText(Path.Combine(repository, released.Outputs["checksums-path"])));

        // Reproducible: a clean clone of the tag, built, stages the same SHA256SUMS, and the release it would make is the one published.
        var clone = Path.Combine(sdk.Work, "clone-" + Guid.NewGuid().ToString("N")[..6], "TinyMistral");
        Git(sdk.Work, $"clone -q --branch v1.0.0 {repository} {clone}");
        sdk.Dotnet(clone, "build", "-c Release -p:ContinuousIntegrationBuild=true").EnsureSuccess();
        var tool = Path.Combine(releaseRunner.Environment["RUNNER_TEMP"], "ertas-tool", "ertas");
        var dryRun = sdk.Run(clone, tool, "github release --lock bin/Release/ertas.lock.json --dry-run --asset evals/TinyMistral.Q4_K_M.verified.json " +
                                          $"--asset evals/TinyMistral.Q8_0.verified.json --repo {FakeGitHubApi.Owner}/{FakeGitHubApi.Repo} --api-url {api.ApiUrl}", 300,
            environment: new Dictionary<string, string> { ["GITHUB_TOKEN"] = Token, ["GITHUB_SERVER_URL"] = releaseRunner.Environment["GITHUB_SERVER_URL"] });
        Assert.True(dryRun.ExitCode == 0, dryRun.Output);
        Assert.Equal(sums, File.ReadAllText(Path.Combine(clone, "bin", "Release", "release", "v1.0.0", "SHA256SUMS")));
        Assert.Contains("byte for byte; nothing to do", dryRun.Output);
        Assert.DoesNotContain(Token, first.Log + failing.Log + released.Log + dryRun.Output);
    }

    [Fact]
    public void GitHubChanged_ListsTheProjectsWhoseInputsAPullRequestTouched_IncludingADatasetOutsideTheProjectFolder()
    {
        var root = Path.Combine(sdk.Work, "models-" + Guid.NewGuid().ToString("N")[..6]);
        foreach (var name in new[] { "Alpha", "Beta" })
        {
            var made = sdk.NewProject(name);
            var target = Path.Combine(root, "models", name);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            Directory.Move(made, target);
        }
        Directory.CreateDirectory(Path.Combine(root, "shared"));
        File.Copy(Path.Combine(root, "models", "Beta", "data", "train.jsonl"), Path.Combine(root, "shared", "facts.jsonl"));
        var beta = Path.Combine(root, "models", "Beta", "Beta.ertasproj");
        File.WriteAllText(beta, File.ReadAllText(beta).Replace("<TrainingData Include=\"data/train.jsonl\" />",
            "<TrainingData Include=\"data/train.jsonl\" />\n    <TrainingData Include=\"../../shared/facts.jsonl\" />", StringComparison.Ordinal));
        Git(root, "init -q -b main");
        Git(root, "add -A");
        Git(root, "commit -q -m base");
        var baseSha = Git(root, "rev-parse HEAD");

        string Changed()
        {
            var run = sdk.Run(root, sdk.ErtasTool, $"github changed --base {baseSha}", 300);
            Assert.True(run.ExitCode == 0, run.Output);
            return run.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Last();
        }

        Assert.Equal("[]", Changed());
        File.AppendAllText(Path.Combine(root, "shared", "facts.jsonl"), File.ReadAllLines(Path.Combine(root, "shared", "facts.jsonl"))[0] + "\n");
        Git(root, "commit -q -am shared-data");
        Assert.Equal("[\"models/Beta/Beta.ertasproj\"]", Changed());
        File.AppendAllText(Path.Combine(root, "models", "Alpha", "README.md"), "\nEdited.\n");
        Git(root, "commit -q -am alpha");
        Assert.Equal("[\"models/Alpha/Alpha.ertasproj\",\"models/Beta/Beta.ertasproj\"]", Changed());
    }

    private ActionRunner Runner(FakeGitHubApi api, string workspace, string eventName, string gitRef, string sha, int run, object payload)
    {
        var temp = Path.Combine(sdk.Work, "runner-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(temp);
        var eventPath = Path.Combine(temp, "event.json");
        File.WriteAllText(eventPath, JsonSerializer.Serialize(payload));
        var runner = new ActionRunner(Path.Combine(sdk.RepoRoot, "action.yml"), sdk);
        runner.Inputs["ertas-version"] = sdk.CliToolVersion;
        runner.Inputs["ertas-source"] = sdk.Feed;
        runner.GitHub["token"] = Token;
        runner.GitHub["api_url"] = api.ApiUrl;
        runner.GitHub["event_name"] = eventName;
        runner.GitHub["ref"] = gitRef;
        runner.GitHub["sha"] = sha;
        runner.GitHub["repository"] = $"{FakeGitHubApi.Owner}/{FakeGitHubApi.Repo}";
        runner.GitHub["workspace"] = workspace;
        foreach (var (name, value) in new Dictionary<string, string>
                 {
                     ["CI"] = "true",
                     ["GITHUB_ACTIONS"] = "true",
                     ["GITHUB_ACTION_PATH"] = sdk.RepoRoot,
                     ["GITHUB_WORKSPACE"] = workspace,
                     ["GITHUB_EVENT_NAME"] = eventName,
                     ["GITHUB_EVENT_PATH"] = eventPath,
                     ["GITHUB_REF"] = gitRef,
                     ["GITHUB_SHA"] = sha,
                     ["GITHUB_REPOSITORY"] = $"{FakeGitHubApi.Owner}/{FakeGitHubApi.Repo}",
                     ["GITHUB_SERVER_URL"] = "https://github.example",
                     ["GITHUB_API_URL"] = api.ApiUrl,
                     ["GITHUB_RUN_ID"] = (1000 + run).ToString(System.Globalization.CultureInfo.InvariantCulture),
                     ["GITHUB_RUN_NUMBER"] = run.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     ["RUNNER_ENVIRONMENT"] = "github-hosted",
                     // Each job gets a clean temporary folder, so the tool is installed anew every run, as on a runner.
                     ["RUNNER_TEMP"] = Path.Combine(temp, "runner-temp"),
                 })
            runner.Environment[name] = value;
        Directory.CreateDirectory(runner.Environment["RUNNER_TEMP"]);
        return runner;
    }

    private string Git(string directory, string arguments) =>
        sdk.Run(directory, "git", $"-c user.name=test -c user.email=test@example.com -c commit.gpgsign=false {arguments}", 120).EnsureSuccess().Output.Trim();
}
