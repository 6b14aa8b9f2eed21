using Ertas.Core;
using Ertas.Data;
using Ertas.Eval;

namespace Ertas.Eval.Tests;

public sealed class EvalGateTests
{
    private static CaseResult Case(string id, bool pass, string output = "out", string hash = "h", bool critical = false, double? nll = null) => new()
    {
        Id = id, Hash = id + hash, Pass = pass, Score = pass ? 1 : 0, Output = output, Stopped = "eos", FirstToken = 5,
        Tags = critical ? [EvalTags.Critical] : [], TargetNll = nll,
        Asserts = [new AssertResult("contains", pass, pass ? 1 : 0, null, pass ? null : "expected to contain \"x\"")],
    };

    private static CaseResult Choice(string id, int predicted, int predictedNorm, int answer = 0) => new()
    {
        Id = id, Hash = id + "h", Pass = predicted == answer, Score = predicted == answer ? 1 : 0,
        Choices = [new ChoiceScore("yes", -1, 1), new ChoiceScore("no", -2, 1)], Answer = answer, Predicted = predicted, PredictedNorm = predictedNorm,
    };

    private static EvalSnapshot Snapshot(params CaseResult[] cases) => new()
    {
        Model = "m", Quantization = "Q8_0", File = "m-1.0.0.Q8_0.gguf", Sha256 = new string('a', 64),
        Runtime = new Dictionary<string, string> { ["ertas"] = "0.1.0", ["llamasharp"] = "0.30.0" },
        Decode = new DecodeSettings(128, 128, 2, 16), SuiteHash = "s", Cases = cases,
    };

    [Fact]
    public void ACriticalRegression_AlwaysBlocks_EvenWhenNewFailuresAreAllowed()
    {
        var result = EvalGate.Compare(Snapshot(Case("a", true, critical: true)), Snapshot(Case("a", false, critical: true)), new GateOptions(MaxNewFailures: 5));
        var change = Assert.Single(result.Changes);
        Assert.Equal((ChangeKind.Regression, true), (change.Kind, change.Blocking));
        Assert.True(result.Failed);
    }

    [Fact]
    public void OrdinaryRegressions_BlockOnlyPastEvalMaxNewFailures_AndThenAllOfThemAreErrors()
    {
        var baseline = Snapshot(Case("a", true), Case("b", true), Case("c", true));
        var now = Snapshot(Case("a", false), Case("b", false), Case("c", true));
        var within = EvalGate.Compare(baseline, now, new GateOptions(MaxNewFailures: 2));
        Assert.False(within.Failed);
        Assert.All(within.Changes, c => Assert.False(c.Blocking));
        var over = EvalGate.Compare(baseline, now, new GateOptions(MaxNewFailures: 1));
        Assert.True(over.Failed);
        Assert.Equal(["a", "b"], over.Changes.Where(c => c.Blocking).Select(c => c.Id));
    }

    [Fact]
    public void NewAndEditedCases_NeverFail_RemovedOnesAreListed_AndImprovementsCount()
    {
        var baseline = Snapshot(Case("edited", true), Case("gone", true), Case("better", false));
        var now = Snapshot(Case("edited", false, hash: "changed"), Case("new", false), Case("better", true));
        var result = EvalGate.Compare(baseline, now, new GateOptions());
        Assert.False(result.Failed);
        Assert.Equal(
            [(ChangeKind.Improvement, "better"), (ChangeKind.Edited, "edited"), (ChangeKind.New, "new"), (ChangeKind.Removed, "gone")],
            result.Changes.Select(c => (c.Kind, c.Id)));
        Assert.Equal(1, result.SharedCases);
    }

    [Fact]
    public void ChangedOutputWithTheSameVerdict_IsDrift_AWarningAtTheCasesLine()
    {
        var baseline = Snapshot(Case("a", true, "Paris."), Choice("pick", 0, 0));
        var now = Snapshot(Case("a", true, "Paris!"), Choice("pick", 0, 1));
        var result = EvalGate.Compare(baseline, now, new GateOptions());
        Assert.Equal([ChangeKind.Drift, ChangeKind.Drift], result.Changes.Select(c => c.Kind));
        var cases = new Dictionary<string, EvalCase>
        {
            ["a"] = new() { Id = "a", File = "evals/s.jsonl", Line = 7, Hash = "ah" },
            ["pick"] = new() { Id = "pick", File = "evals/s.jsonl", Line = 9, Hash = "pickh" },
        };
        var diagnostics = EvalGate.Diagnostics(result, cases, "m.ertasproj").ToList();
        Assert.All(diagnostics, d => Assert.Equal((DiagnosticSeverity.Warning, ErrorCode.EvalDrift), (d.Severity, d.Code)));
        Assert.Equal("evals/s.jsonl(7,1): warning ERTAS9205: Q8_0: case \"a\" still passes but its output changed: \"Paris.\" -> \"Paris!\"",
            diagnostics[0].ToDiagnostic());
    }

    [Fact]
    public void ARegressionError_NamesTheCaseAtItsSuiteLine_WithTheOutputAndWhyItFails()
    {
        var result = EvalGate.Compare(Snapshot(Case("capital", true, "Paris")), Snapshot(Case("capital", false, "Lyon")), new GateOptions());
        var cases = new Dictionary<string, EvalCase> { ["capital"] = new() { Id = "capital", File = "evals/capitals.jsonl", Line = 3, Hash = "capitalh" } };
        var error = Assert.Single(EvalGate.Diagnostics(result, cases, "m.ertasproj"));
        Assert.Equal("evals/capitals.jsonl(3,1): error ERTAS9201: Q8_0: case \"capital\" passed in the baseline and fails now: output \"Lyon\" (expected to contain \"x\")",
            error.ToDiagnostic());
    }

    [Fact]
    public void EvalMinPassRate_IsAnAbsoluteFloor_ReportedAtTheProjectFile()
    {
        var now = Snapshot(Case("a", true), Case("b", false), Case("c", false), Case("d", false));
        var result = EvalGate.Compare(null, now, new GateOptions(MinPassRate: 0.5));
        Assert.True(result.Failed);
        var error = Assert.Single(EvalGate.Diagnostics(result, new Dictionary<string, EvalCase>(), "m.ertasproj"));
        Assert.Equal("m.ertasproj: error ERTAS9202: Q8_0: pass rate 0.25 is below EvalMinPassRate 0.5", error.ToDiagnostic());
        Assert.False(EvalGate.Compare(null, now, new GateOptions(MinPassRate: 0.25)).Failed);
    }

    [Fact]
    public void Rules_CompareTheSharedUnchangedCases_SoAddingAHardCaseIsNoDrop()
    {
        var baseline = Snapshot(Choice("p1", 0, 0), Choice("p2", 0, 0), Case("g", true, nll: 1.0));
        var now = Snapshot(Choice("p1", 0, 0), Choice("p2", 0, 0), Choice("hard-new", 1, 1), Case("g", true, nll: 1.25));
        var rules = new[] { EvalRule.Parse("acc_norm:max_drop=0.02"), EvalRule.Parse("target_nll:max_increase=0.1") };
        var result = EvalGate.Compare(baseline, now, new GateOptions(Rules: rules));
        var accNorm = result.Metrics.Single(m => m.Metric == "acc_norm");
        Assert.Equal((1.0, 1.0, null), (accNorm.Baseline, accNorm.Now, accNorm.Broken));
        var nll = result.Metrics.Single(m => m.Metric == "target_nll");
        Assert.Equal("target_nll rose by 0.25 (1 -> 1.25), more than the 0.1 allowed", nll.Broken);
        Assert.True(result.Failed);
        var error = Assert.Single(EvalGate.Diagnostics(result, new Dictionary<string, EvalCase>(), "m.ertasproj"));
        Assert.Equal(ErrorCode.EvalRuleBroken, error.Code);
    }

    [Fact]
    public void ARulesMinimum_ReadsTheWholeSuite_WhileItsDropReadsTheSharedCases()
    {
        // Shared: p1 (right). New: p2, p3 (wrong). acc over the whole suite is 1/3; over the shared cases 1.
        var baseline = Snapshot(Choice("p1", 0, 0));
        var now = Snapshot(Choice("p1", 0, 0), Choice("p2", 1, 1), Choice("p3", 1, 1));
        Assert.False(EvalGate.Compare(baseline, now, new GateOptions(Rules: [EvalRule.Parse("acc:min=0.3,max_drop=0")])).Failed);
        var broken = EvalGate.Compare(baseline, now, new GateOptions(Rules: [EvalRule.Parse("acc:min=0.5")]));
        Assert.Equal("acc is 0.3333, below the minimum 0.5", broken.Metrics.Single(m => m.Metric == "acc").Broken);
    }

    [Fact]
    public void RuleText_ParsesEveryLimit_AndRejectsUnknownMetricsAndLimits()
    {
        Assert.Equal(new EvalRule("acc", MaxDrop: 0.1, Min: 0.5), EvalRule.Parse("acc:max_drop=0.1,min=0.5"));
        Assert.Equal(new EvalRule("target_nll", MaxIncrease: 0.2, Max: 3), EvalRule.Parse("target_nll:max-increase=0.2,max=3"));
        Assert.Equal(ErrorCode.EvalInvalidRule, Assert.Throws<ErtasException>(() => EvalRule.Parse("accuracy:min=1")).Code);
        Assert.Contains("unknown limit", Assert.Throws<ErtasException>(() => EvalRule.Parse("acc:most=1")).Message);
        Assert.Contains("sets no limit", Assert.Throws<ErtasException>(() => EvalRule.Parse("acc")).Message);
    }
}
