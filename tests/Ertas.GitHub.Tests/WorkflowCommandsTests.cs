using System.Text;
using System.Text.Json;
using Ertas.Core;

namespace Ertas.GitHub.Tests;

/// <summary>Annotations, outputs and the step summary as the Actions runner reads them; MSBuild's lines read back.</summary>
public sealed class WorkflowCommandsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ertas-workflow-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Annotation_EscapesPercentNewlinesAndPropertySeparators_AsTheRunnerUnescapes()
    {
        var line = WorkflowCommands.Line(new Annotation("error", "50% done\nnext: line", "data/a,b:c.jsonl", 3, 7, "ERTAS6001"));
        Assert.Equal("::error file=data/a%2Cb%3Ac.jsonl,line=3,col=7,title=ERTAS6001::50%25 done%0Anext: line", line);
    }

    [Fact]
    public void Annotate_PastTenErrors_ShowsNineAndOneCountingTheRest_AndListsAllInALogGroup()
    {
        var errors = Enumerable.Range(1, 14).Select(i => new Annotation("error", $"ERTAS6001: bad line {i}", "data/x.jsonl", i, 1, "ERTAS6001")).ToList();
        var warnings = Enumerable.Range(1, 3).Select(i => new Annotation("warning", $"ERTAS6012: duplicate {i}", "data/x.jsonl", i, 1)).ToList();
        var lines = WorkflowCommands.Annotate([.. errors, .. warnings]);

        var errorAnnotations = lines.Where(l => l.StartsWith("::error", StringComparison.Ordinal)).ToList();
        Assert.Equal(WorkflowCommands.AnnotationsPerStep, errorAnnotations.Count);
        Assert.Contains("5 more build errors", errorAnnotations[^1]);
        Assert.Equal(3, lines.Count(l => l.StartsWith("::warning", StringComparison.Ordinal)));
        var group = lines.SkipWhile(l => !l.StartsWith("::group::", StringComparison.Ordinal)).Skip(1).TakeWhile(l => l != "::endgroup::").ToList();
        Assert.Equal(14, group.Count);
        Assert.Equal("data/x.jsonl(14,1): ERTAS6001: bad line 14", group[^1]);
    }

    [Fact]
    public void Outputs_SingleLineAsNameValue_MultiLineAsHeredocWithADelimiterTheValueLacks()
    {
        var file = Path.Combine(_dir, "output");
        WorkflowCommands.WriteOutputs(file, [new("version", "1.0.0-pr.7.3"), new("artifact-paths", "a.gguf\nb.gguf\nreport.md")]);
        var lines = File.ReadAllText(file).Split('\n');
        Assert.Equal("version=1.0.0-pr.7.3", lines[0]);
        Assert.StartsWith("artifact-paths<<ertas_", lines[1]);
        var delimiter = lines[1]["artifact-paths<<".Length..];
        Assert.Equal(["a.gguf", "b.gguf", "report.md", delimiter, ""], lines[2..]);
        Assert.Throws<ArgumentException>(() => WorkflowCommands.WriteOutputs(file, [new("bad name", "x")]));
    }

    [Fact]
    public void Summary_OverOneMebibyte_IsCutAtALineWithANote_AndStaysUnderTheLimit()
    {
        var file = Path.Combine(_dir, "summary");
        File.WriteAllText(file, "# earlier step text\n");
        var row = "| case-ü | 0.9167 | ✅ |\n";
        var big = string.Concat(Enumerable.Repeat(row, 2 * WorkflowCommands.MaxSummaryBytes / Encoding.UTF8.GetByteCount(row)));
        Assert.True(WorkflowCommands.AppendSummary(file, big));
        var text = File.ReadAllText(file);
        Assert.True(new FileInfo(file).Length <= WorkflowCommands.MaxSummaryBytes);
        Assert.StartsWith("# earlier step text\n| case-ü |", text);
        Assert.Contains("The report was cut", text);
        Assert.Contains("| case-ü | 0.9167 | ✅ |\n\n> The report was cut", text); // whole rows only
        Assert.False(WorkflowCommands.AppendSummary(Path.Combine(_dir, "small"), "fits"));
    }

    [Theory]
    [InlineData("/ws/m/data/capitals.jsonl(3,14): error ERTAS6005: missing field 'messages' [/ws/m/M.ertasproj]", "error", "m/data/capitals.jsonl", 3, 14, "ERTAS6005")]
    [InlineData("data/capitals.jsonl(3,14): error ERTAS6005: missing field 'messages' [/ws/m/M.ertasproj]", "error", "m/data/capitals.jsonl", 3, 14, "ERTAS6005")]
    [InlineData("  /ws/m/M.ertasproj(12,5): warning ERTAS8010: LoraRank 300 is unusually large [/ws/m/M.ertasproj]", "warning", "m/M.ertasproj", 12, 5, "ERTAS8010")]
    [InlineData("MSBUILD : error MSB1009: Project file does not exist.", "error", null, 0, 0, "MSB1009")]
    [InlineData("ertas : error ERTAS9202: Q8_0: pass rate 0.9167 below EvalMinPassRate 1 [/ws/m/M.ertasproj]", "error", "m/M.ertasproj", 0, 0, "ERTAS9202")]
    [InlineData("/ws/m/M.ertasproj(4,3,4,20): error ERTAS8001: bad [/ws/m/M.ertasproj]", "error", "m/M.ertasproj", 4, 3, "ERTAS8001")]
    public void MsBuildLine_BecomesAnAnnotationOnTheWorkspaceRelativeFile(string line, string severity, string? file, int lineNumber, int column, string code)
    {
        var a = MsBuildDiagnostics.TryParse(line, "/ws");
        Assert.NotNull(a);
        Assert.Equal((severity, file, lineNumber, column, code), (a.Severity, a.File, a.Line, a.Column, a.Title));
        Assert.StartsWith(code + ": ", a.Message);
        Assert.DoesNotContain("[/ws", a.Message);
    }

    [Fact]
    public void MsBuildLog_EachDiagnosticOnce_ThoughTheLoggerRepeatsThemInItsSummary_AndOrdinaryLinesIgnored()
    {
        string[] log =
        [
            "  Determining projects to restore...",
            "/ws/M.ertasproj(3,5): error ERTAS8003: BatchSize must be positive [/ws/M.ertasproj]",
            "Build FAILED.",
            "/ws/M.ertasproj(3,5): error ERTAS8003: BatchSize must be positive [/ws/M.ertasproj]",
            "    0 Warning(s)",
            "    1 Error(s)",
        ];
        var parsed = MsBuildDiagnostics.Parse(log, "/ws");
        Assert.Equal("M.ertasproj", Assert.Single(parsed).File);
    }

    [Fact]
    public void Context_ReadsThePullRequestFromTheEventPayload_AndKnowsAForkAndATagPush()
    {
        var eventPath = Path.Combine(_dir, "event.json");
        File.WriteAllText(eventPath, JsonSerializer.Serialize(new
        {
            number = 12,
            pull_request = new
            {
                number = 12,
                @base = new { sha = "aaa111", @ref = "main" },
                head = new { sha = "bbb222", repo = new { full_name = "someone/models" } },
            },
        }));
        var env = new Dictionary<string, string>
        {
            ["GITHUB_ACTIONS"] = "true",
            ["GITHUB_EVENT_NAME"] = "pull_request",
            ["GITHUB_EVENT_PATH"] = eventPath,
            ["GITHUB_REPOSITORY"] = "octo/models",
            ["GITHUB_RUN_ID"] = "99",
            ["GITHUB_RUN_NUMBER"] = "5",
            ["RUNNER_ENVIRONMENT"] = "self-hosted",
            ["GITHUB_SERVER_URL"] = "https://ghe.example",
        };
        var context = ActionsContext.Read(env.GetValueOrDefault);
        Assert.True(context.IsActions && context.IsSelfHosted);
        Assert.Equal(new PullRequestEvent(12, "aaa111", "bbb222", "main", "someone/models", null), context.PullRequest);
        Assert.False(context.PullRequest!.IsFrom("octo/models"));
        Assert.Equal(5, context.RunNumber);
        Assert.Equal("https://ghe.example/octo/models/actions/runs/99", context.RunUrl);
        Assert.Null(context.PushedTag);

        var tag = ActionsContext.Read(new Dictionary<string, string> { ["GITHUB_EVENT_NAME"] = "push", ["GITHUB_REF"] = "refs/tags/Chat-v1.2.0" }.GetValueOrDefault);
        Assert.Equal("Chat-v1.2.0", tag.PushedTag);
        Assert.Null(tag.PullRequest);
        Assert.Equal(ErrorCode.InvalidArgument, Assert.Throws<ErtasException>(() => ActionsContext.SplitRepository("octo")).Code);
    }
}
