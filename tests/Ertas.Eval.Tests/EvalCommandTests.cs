using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Ertas.Eval.Tests;

/// <summary>
/// <c>ertas eval</c>, <c>eval accept</c> and <c>eval compare</c> end to end, in-process, on the tiny Q8_0 GGUF in a
/// project-like folder (a suite, a snapshot folder, an output folder). The model is untrained: its outputs are
/// deterministic garbage, so a case's verdict is known from its assert alone (not_contains of a string the output
/// never holds passes, an exact answer fails).
/// </summary>
[Collection(EvalModelsCollection.Name)]
public sealed partial class EvalCommandTests(EvalModels models)
{
    private const string Name = "tiny";

    private static readonly string[] Suite =
    [
        """{"id":"greeting","messages":[{"role":"user","content":"Say hello."}],"assert":[{"type":"not_contains","value":"zzqx"}]}""",
        """{"id":"colour","messages":[{"role":"user","content":"Pick a colour."}],"choices":["red","green","blue"],"answer":1}""",
        """{"id":"capital","prompt":"The capital of France is ","ideal":"Paris"}""",
    ];

    [Fact]
    public void FirstRunWithoutABaseline_WritesTheVerifiedSnapshot_ExitsZero_AndPrintsVerdictNone()
    {
        using var project = new EvalProject(models, Suite);
        var run = project.Eval();
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Equal("eval-verdict=none", run.Out.Trim());
        Assert.False(File.Exists(project.Received));
        var snapshot = EvalSnapshot.Read(project.Verified);
        Assert.Equal((Name, "Q8_0", "tiny-1.0.0.Q8_0.gguf"), (snapshot.Model, snapshot.Quantization, snapshot.File));
        Assert.Equal(["capital", "colour", "greeting"], snapshot.Cases.Select(c => c.Id));
        Assert.True(snapshot.Cases.Single(c => c.Id == "greeting").Pass);
        Assert.False(snapshot.Cases.Single(c => c.Id == "capital").Pass);
        Assert.Contains(run.ErrorLines, l => l.Contains("no baseline yet; wrote " + project.Verified, StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(project.Out, "report.md")));
        Assert.True(File.Exists(Path.Combine(project.Out, "report.html")));
    }

    [Fact]
    public void RerunsFromTheCacheAndFromScratch_GiveByteIdenticalSnapshots_AndWriteNoReceivedFile()
    {
        using var project = new EvalProject(models, Suite);
        Assert.Equal(0, project.Eval().ExitCode);
        var baseline = File.ReadAllBytes(project.Verified);

        var cached = project.Eval();
        Assert.True(cached.ExitCode == 0, cached.Error);
        Assert.Equal("eval-verdict=pass", cached.Out.Trim());
        Assert.Equal(3, Cached(cached));
        Assert.Equal(baseline, File.ReadAllBytes(project.Verified));
        Assert.False(File.Exists(project.Received));

        // Without the cache every case is scored again, each in a fresh llama.cpp context: the same bytes prove the
        // scoring itself deterministic, not just the cache.
        Directory.Delete(Path.Combine(project.Out, "cache"), recursive: true);
        var fresh = project.Eval();
        Assert.True(fresh.ExitCode == 0, fresh.Error);
        Assert.Equal(0, Cached(fresh));
        Assert.Equal(baseline, File.ReadAllBytes(project.Verified));
        Assert.False(File.Exists(project.Received));
    }

    [Fact]
    public void EditingOneCase_ScoresOnlyThatCase_AndWritesAReceivedFileWithoutFailing()
    {
        using var project = new EvalProject(models, Suite);
        Assert.Equal(0, project.Eval().ExitCode);
        var verified = File.ReadAllBytes(project.Verified);

        project.WriteSuite(Suite[0], Suite[1], Suite[2].Replace("France", "Italy", StringComparison.Ordinal));
        var run = project.Eval();
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Equal("eval-verdict=pass", run.Out.Trim());
        Assert.Equal(2, Cached(run));
        Assert.Contains(run.ErrorLines, l => l.Contains("1 edited", StringComparison.Ordinal) && l.Contains(project.Received, StringComparison.Ordinal));
        Assert.Equal(verified, File.ReadAllBytes(project.Verified));
        var received = EvalSnapshot.Read(project.Received);
        var before = EvalSnapshot.Read(project.Verified);
        Assert.Equal(
            before.Cases.Where(c => c.Id != "capital").Select(c => c.Hash),
            received.Cases.Where(c => c.Id != "capital").Select(c => c.Hash));
        Assert.NotEqual(before.Cases.Single(c => c.Id == "capital").Hash, received.Cases.Single(c => c.Id == "capital").Hash);
    }

    [Fact]
    public void ASuiteWithErrors_ExitsOneWithEachErrorAtItsLineAndColumn_AndScoresAndWritesNothing()
    {
        string[] lines =
        [
            Suite[0],
            """{"id":"typo","prompt":"Hi","assert":[{"type":"containz","value":"x"}]}""",
            """{"id":"pattern","prompt":"Hi","assert":[{"type":"regex","value":"(unclosed"}]}""",
            """{"id":"greeting","prompt":"Hi","ideal":"there"}""",
            """{"id":"range","prompt":"Hi","choices":["x","y"],"answer":2}""",
        ];
        using var project = new EvalProject(models, lines);
        var run = project.Eval();
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Out);
        var expected = new[]
        {
            (Line: 2, Column: lines[1].IndexOf("\"containz\"", StringComparison.Ordinal) + 1, Code: "ERTAS9006"),
            (Line: 3, Column: lines[2].IndexOf("\"(unclosed\"", StringComparison.Ordinal) + 1, Code: "ERTAS9007"),
            (Line: 4, Column: lines[3].IndexOf("\"greeting\"", StringComparison.Ordinal) + 1, Code: "ERTAS9008"),
            (Line: 5, Column: lines[4].IndexOf(":2}", StringComparison.Ordinal) + 2, Code: "ERTAS9009"),
        };
        Assert.Equal(expected, CaseErrors(run, project.Suite));
        Assert.Contains($"{project.Suite}: error ERTAS9020: 4 error(s); the eval suites have errors; nothing was scored", run.ErrorLines);
        Assert.Empty(Directory.EnumerateFileSystemEntries(project.Snapshots));
        Assert.False(Directory.Exists(project.Out));

        // A case too long for --context is found only once the suite reads cleanly (it needs the model's tokenizer);
        // it too stops the run before anything is scored.
        project.WriteSuite(Suite[0], $$"""{"id":"long","prompt":"{{string.Join(' ', Enumerable.Repeat("bread", 300))}}","ideal":"x"}""");
        run = project.Eval();
        Assert.Equal(1, run.ExitCode);
        var tooLong = Assert.Single(CaseErrors(run, project.Suite));
        Assert.Equal((2, 1, "ERTAS9010"), tooLong);
        Assert.Contains(run.ErrorLines, l => l.Contains("ERTAS9010", StringComparison.Ordinal) && l.Contains("the eval context holds 256", StringComparison.Ordinal));
        Assert.Empty(Directory.EnumerateFileSystemEntries(project.Snapshots));
        Assert.False(Directory.Exists(Path.Combine(project.Out, "cache")) && Directory.EnumerateFiles(Path.Combine(project.Out, "cache")).Any());
    }

    [Fact]
    public void ACaseWhoseChoicesTokenizeIdentically_FailsTheRunWithERTAS9101AtItsLine_EveryRun_SinceATieIsNeverCached()
    {
        // "deep red" and "deep▁red" are the same SentencePiece pieces (spaces are written as U+2581).
        using var project = new EvalProject(models,
            [Suite[0], """{"id":"tie","messages":[{"role":"user","content":"Pick one."}],"choices":["deep red","deep▁red"],"answer":0}"""]);
        foreach (var expectedCached in new[] { 0, 1 })
        {
            var run = project.Eval();
            Assert.Equal(1, run.ExitCode);
            Assert.Equal([(2, 1, "ERTAS9101")], CaseErrors(run, project.Suite));
            Assert.Equal(expectedCached, Cached(run));
        }
    }

    [Fact]
    public void CiWithoutABaseline_ExitsOneWithERTAS9204_AndWritesOnlyTheReceivedFile()
    {
        using var project = new EvalProject(models, Suite);
        var run = project.Eval("--ci");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(run.ErrorLines, l => l.Contains(": error ERTAS9204: Q8_0: no eval baseline", StringComparison.Ordinal));
        Assert.False(File.Exists(project.Verified));
        Assert.True(File.Exists(project.Received));
        Assert.Equal([project.Received], Directory.GetFiles(project.Snapshots));
        Assert.Equal(3, EvalSnapshot.Read(project.Received).Cases.Count);
    }

    [Fact]
    public void ACriticalCaseThatPassedInTheBaselineAndFailsNow_ExitsOneWithERTAS9201AtItsLine_UntilTheResultsAreAccepted()
    {
        string[] lines =
        [
            Suite[0],
            """{"id":"paris","tags":["critical"],"messages":[{"role":"user","content":"What is the capital of France?"}],"assert":[{"type":"contains","value":"Paris"}]}""",
        ];
        using var project = new EvalProject(models, lines);
        Assert.Equal(0, project.Eval().ExitCode);
        // The same case (same content hash) passing in the baseline: what a model that got worse would leave behind.
        Assert.False(EvalSnapshot.Read(project.Verified).Cases.Single(c => c.Id == "paris").Pass);
        var passing = PassingInstead(EvalSnapshot.Read(project.Verified), "paris", EvalSuiteReader.CaseHash(JsonNode.Parse(lines[1])!));
        File.WriteAllText(project.Verified, passing.ToJson());

        var run = project.Eval();
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("eval-verdict=fail", run.Out.Trim());
        var error = Assert.Single(run.ErrorLines, l => l.Contains("error ERTAS", StringComparison.Ordinal));
        Assert.StartsWith($"{project.Suite}(2,1): error ERTAS9201: Q8_0: case \"paris\" (critical) passed in the baseline and fails now", error);
        Assert.True(File.Exists(project.Received));
        var receivedBytes = File.ReadAllBytes(project.Received);
        var report = File.ReadAllText(Path.Combine(project.Out, "report.md"));
        Assert.StartsWith("❌ **Eval gate failed** for tiny: 1 regression(s)", report);
        Assert.Contains("Q8_0 · <code>paris</code> · regression · critical · fails", report);

        var accept = EvalCli.Run("eval", "accept", project.Snapshots, "--name", Name);
        Assert.True(accept.ExitCode == 0, accept.Error);
        Assert.Equal([$"eval accept: {project.Verified}"], accept.ErrorLines);
        Assert.False(File.Exists(project.Received));
        Assert.Equal(receivedBytes, File.ReadAllBytes(project.Verified));

        var after = project.Eval();
        Assert.True(after.ExitCode == 0, after.Error);
        Assert.Equal("eval-verdict=pass", after.Out.Trim());
        Assert.False(File.Exists(project.Received));
    }

    [Fact]
    public void Compare_PrintsTheMarkdownReportStartingWithTheVerdict_AndWritesTheHtmlReportToAFile()
    {
        using var project = new EvalProject(models, Suite);
        Assert.Equal(0, project.Eval().ExitCode);
        var now = EvalSnapshot.Read(project.Verified);
        var greeting = now.Cases.Single(c => c.Id == "greeting");
        Assert.True(greeting.Pass);
        var baselineFile = project.Write("base.json", PassingInstead(now, "capital", now.Cases.Single(c => c.Id == "capital").Hash).ToJson());

        var markdown = EvalCli.Run("eval", "compare", baselineFile, project.Verified, "--format", "md");
        Assert.True(markdown.ExitCode == 0, markdown.Error);
        Assert.StartsWith("❌ **Eval gate failed** for tiny: 1 regression(s), 1 failed check(s); 3 case(s) on 1 quantization(s) (Q8_0).\n", markdown.Out);
        Assert.Contains("<code>capital</code> · regression", markdown.Out);

        var html = project.Combine("report.html");
        var written = EvalCli.Run("eval", "compare", baselineFile, project.Verified, "--format", "html", "--out", html);
        Assert.True(written.ExitCode == 0, written.Error);
        Assert.Equal("", written.Out);
        var text = File.ReadAllText(html);
        Assert.StartsWith("<!DOCTYPE html>", text);
        Assert.Contains("<code>capital</code> · regression", text);
        Assert.EndsWith("</html>\n", text);
    }

    /// <summary>The snapshot with case <paramref name="id"/> (whose content hash must be <paramref name="hash"/>)
    /// passing: a hand-made baseline, so a regression needs no second model.</summary>
    private static EvalSnapshot PassingInstead(EvalSnapshot snapshot, string id, string hash)
    {
        var c = snapshot.Cases.Single(x => x.Id == id);
        Assert.Equal(hash, c.Hash);
        var passing = c with
        {
            Pass = true,
            Score = 1,
            Output = "Paris",
            Asserts = c.Asserts!.Select(a => a with { Pass = true, Score = 1, Detail = null }).ToList(),
        };
        return snapshot with { Cases = snapshot.Cases.Select(x => x.Id == id ? passing : x).ToList() };
    }

    /// <summary>"(N cached)" of the run's closing line for Q8_0.</summary>
    private static int Cached(EvalCliResult run)
    {
        var line = Assert.Single(run.ErrorLines, l => l.StartsWith("eval Q8_0: ", StringComparison.Ordinal) && l.Contains(" passed in ", StringComparison.Ordinal));
        return int.Parse(CachedCount().Match(line).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Every <c>SUITE(line,col): error ERTASnnnn:</c> line, in order.</summary>
    private static (int Line, int Column, string Code)[] CaseErrors(EvalCliResult run, string suite)
    {
        var pattern = new Regex("^" + Regex.Escape(suite) + @"\((\d+),(\d+)\): error (ERTAS\d{4}): ");
        return run.ErrorLines.Select(l => pattern.Match(l)).Where(m => m.Success)
            .Select(m => (int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
                int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), m.Groups[3].Value))
            .ToArray();
    }

    [GeneratedRegex(@"\((\d+) cached\)$")]
    private static partial Regex CachedCount();

    /// <summary>A project-like folder: suites/suite.jsonl, the committed snapshot folder evals/ and the build output
    /// obj/ertas/evals (report and cache).</summary>
    private sealed class EvalProject : IDisposable
    {
        private readonly TempDirectory _folder = new();
        private readonly EvalModels _models;

        public EvalProject(EvalModels models, IReadOnlyList<string> lines)
        {
            _models = models;
            Suite = _folder.Combine("suites", "suite.jsonl");
            Snapshots = _folder.Combine("evals");
            Out = _folder.Combine("obj", "ertas", "evals");
            Directory.CreateDirectory(Path.GetDirectoryName(Suite)!);
            Directory.CreateDirectory(Snapshots);
            WriteSuite([.. lines]);
        }

        public string Suite { get; }
        public string Snapshots { get; }
        public string Out { get; }
        public string Verified => Path.Combine(Snapshots, $"{Name}.Q8_0.verified.json");
        public string Received => Path.Combine(Snapshots, $"{Name}.Q8_0.received.json");

        public string Combine(params string[] parts) => _folder.Combine(parts);

        public string Write(string name, string text) => _folder.Write(name, text);

        public void WriteSuite(params string[] lines) => File.WriteAllText(Suite, string.Join("\n", lines) + "\n");

        public EvalCliResult Eval(params string[] extra) => EvalCli.RunLocally(
        [
            "eval", "--model", _models.Q8_0, "--suite", Suite, "--name", Name, "--snapshots", Snapshots, "--out", Out,
            "--threads", "2", "--context", "256", "--max-tokens", "8", .. extra,
        ]);

        public void Dispose() => _folder.Dispose();
    }
}
