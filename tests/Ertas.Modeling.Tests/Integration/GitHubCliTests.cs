using System.Text.Json;
using Ertas.Cli;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// <c>ertas github</c>'s checks that come before any build or request: the action's inputs, the events it refuses,
/// the versions it prints and the builds it never releases. The environment is the runner's, given per test.
/// </summary>
public sealed class GitHubCliTests : IDisposable
{
    private readonly TempFolder _work = new("ertas-github-cli-");

    public void Dispose() => _work.Dispose();

    private static (int Code, string Out, string Error) Run(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr, CancellationToken.None, environment.GetValueOrDefault);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private string PullRequestEvent(string headRepository)
    {
        var path = Path.Combine(_work.Path, "event.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            number = 3,
            pull_request = new { number = 3, @base = new { sha = "a1", @ref = "main" }, head = new { sha = "b2", repo = new { full_name = headRepository } } },
        }));
        return path;
    }

    [Theory]
    [InlineData("--mode", "nightly", "input 'mode' must be auto, pr, release or build, got 'nightly'")]
    [InlineData("--device", "gpu", "input 'device' must be cpu or cuda, got 'gpu'")]
    [InlineData("--comment", "always", "input 'comment' must be upsert or off, got 'always'")]
    [InlineData("--on-existing", "replace", "input 'on-existing' must be fail, skip or update, got 'replace'")]
    [InlineData("--dry-run", "yes", "input 'dry-run' must be true or false, got 'yes'")]
    [InlineData("--cache", "on", "input 'cache' must be true or false, got 'on'")]
    [InlineData("--upload-artifact", "1", "input 'upload-artifact' must be true or false, got '1'")]
    [InlineData("--configuration", "Release;Foo=1", "input 'configuration' must be a configuration name such as Release, got 'Release;Foo=1'")]
    public void GitHubRun_AnInvalidInput_IsOneErrorNamingTheInputAndItsValues(string option, string value, string message)
    {
        var (code, _, error) = Run(new Dictionary<string, string>(), "github", "run", option, value);
        Assert.Equal(1, code);
        Assert.Equal($"ertas: error ERTAS1130: {message}", error.Trim());
    }

    [Fact]
    public void GitHubRun_RefusesPullRequestTarget_AndAForkOnASelfHostedRunner_UnlessAllowed()
    {
        var target = Run(new Dictionary<string, string> { ["GITHUB_EVENT_NAME"] = "pull_request_target", ["GITHUB_EVENT_PATH"] = PullRequestEvent("octo/models") },
            "github", "run");
        Assert.Contains("error ERTAS1131: refusing a pull_request_target event", target.Error);

        var fork = new Dictionary<string, string>
        {
            ["GITHUB_EVENT_NAME"] = "pull_request",
            ["GITHUB_EVENT_PATH"] = PullRequestEvent("stranger/models"),
            ["GITHUB_REPOSITORY"] = "octo/models",
            ["RUNNER_ENVIRONMENT"] = "self-hosted",
            ["GITHUB_WORKSPACE"] = _work.Path,
        };
        var refused = Run(fork, "github", "run");
        Assert.Contains("error ERTAS1131: refusing to build pull request #3 from the fork stranger/models on a self-hosted runner", refused.Error);

        // Allowed, it gets past the guard to the next check: there is no project in this folder.
        var allowed = Run(fork, "github", "run", "--allow-untrusted", "true");
        Assert.Contains("error ERTAS1132: no .ertasproj", allowed.Error);
        // The same fork on a hosted (disposable) runner is not refused.
        var hosted = Run(new Dictionary<string, string>(fork) { ["RUNNER_ENVIRONMENT"] = "github-hosted" }, "github", "run");
        Assert.Contains("error ERTAS1132", hosted.Error);
    }

    [Fact]
    public void GitHubVersion_IsTheLocksVersion_OrThePullRequestPrerelease_FromTheEventAndRunNumber()
    {
        var lockPath = WriteLock("1.4.0");
        Assert.Equal("1.4.0", Run(new Dictionary<string, string>(), "github", "version", "--lock", lockPath).Out.Trim());
        Assert.Equal("1.4.0-pr.12.7", Run(new Dictionary<string, string>(), "github", "version", "--lock", lockPath, "--pr", "12", "--run", "7").Out.Trim());
        var fromEvent = Run(new Dictionary<string, string>
        {
            ["GITHUB_EVENT_NAME"] = "pull_request",
            ["GITHUB_EVENT_PATH"] = PullRequestEvent("octo/models"),
            ["GITHUB_RUN_NUMBER"] = "41",
        }, "github", "version", "--lock", lockPath);
        Assert.Equal("1.4.0-pr.3.41", fromEvent.Out.Trim());
        Assert.Contains("error ERTAS1002: --run goes with --pr", Run(new Dictionary<string, string>(), "github", "version", "--lock", lockPath, "--run", "7").Error);
    }

    [Fact]
    public void GitHubRelease_NeverReleasesAPullRequestBuild_AndNeedsATagForItsVersion()
    {
        var pr = Run(new Dictionary<string, string> { ["GITHUB_TOKEN"] = "t" }, "github", "release", "--lock", WriteLock("1.4.0-pr.3.41"), "--repo", "octo/models");
        Assert.Contains("error ERTAS1133: 1.4.0-pr.3.41 is a pull request's build, which is never released", pr.Error);
        var tag = Run(new Dictionary<string, string> { ["GITHUB_TOKEN"] = "t" }, "github", "release", "--lock", WriteLock("1.4.0"), "--tag", "v1.5.0", "--repo", "octo/models");
        Assert.Contains("error ERTAS1133: the tag 'v1.5.0' does not name this build's version 1.4.0", tag.Error);
    }

    private string WriteLock(string version)
    {
        var directory = Path.Combine(_work.Path, "bin-" + version);
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, "ertas.lock.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["lockVersion"] = 1,
            ["model"] = "Capitals",
            ["version"] = version,
            ["engineVersion"] = "0.1.0",
            ["sdkVersion"] = "0.1.0",
            ["seed"] = 42,
            ["trainKey"] = new string('c', 64),
            ["settings"] = new Dictionary<string, string> { ["Seed"] = "42" },
            ["inputs"] = Array.Empty<object>(),
            ["outputs"] = Array.Empty<object>(),
        }));
        return path;
    }
}
