namespace Ertas.Eval.Tests;

/// <summary>
/// Reports built in code for the renderers' tests: every kind of change, both kinds of case and a broken rule, so
/// a snapshot of report.md or report.html covers each branch of the rendering.
/// </summary>
internal static class SampleReports
{
    public const string ModelName = "support-bot";

    /// <summary>Model text that must come out encoded in every rendering.</summary>
    public const string HostileOutput = "The capital is Lyon <script>alert(1)</script> & \"more\"";

    /// <summary>
    /// Q8_0 and Q4_K_M against their baselines. Both: a critical regression (blocking), an improvement, drift, a new,
    /// an edited and a removed case. Q4_K_M also regresses a multiple-choice case, allowed by MaxNewFailures=1, and
    /// drifts another (same pick, different length-normalised pick), breaking the acc_norm max_drop rule. Every
    /// case id appears in at least one change. Carries a 50-point loss curve.
    /// </summary>
    public static EvalReport TwoQuantizations()
    {
        var options = new GateOptions(
            MaxNewFailures: 1,
            MinPassRate: 0.25,
            Rules: [new EvalRule("acc_norm", MaxDrop: 0.02), new EvalRule("pass_rate", Min: 0.25), new EvalRule("target_nll", MaxIncrease: 0.5)]);
        var quants = new[] { ("Q8_0", 'a', 0), ("Q4_K_M", 'b', 1) }
            .Select(q => EvalGate.Compare(Baseline(q.Item1, q.Item2), Now(q.Item1, q.Item2, q.Item3), options))
            .ToList();
        var curve = Enumerable.Range(1, 50)
            .Select(i => new LossPoint(i * 10, Math.Round(2.4 * Math.Exp(-i / 12.0) + 0.45 + 0.05 * Math.Sin(i * 1.7), 4)))
            .ToList();
        return new EvalReport(ModelName, quants, curve);
    }

    private static EvalSnapshot Baseline(string quant, char shaDigit) => Snapshot(quant, new string(shaDigit, 64),
    [
        Generated("capital-france", pass: true, "Paris", nll: 0.21, firstToken: 100, critical: true),
        Generated("math-add", pass: false, "5", nll: 1.9, firstToken: 20),
        Generated("greeting", pass: true, "Hello there!", nll: 0.8, firstToken: 30),
        Generated("summary-short", pass: true, "A short summary.", nll: 1.1, firstToken: 40),
        Generated("old-case", pass: true, "Retired answer", nll: 0.5, firstToken: 50),
        Choice("mc-planet", ["Venus", "Mars", "Jupiter"], answer: 1, predicted: 1, predictedNorm: 1),
        Choice("mc-color", ["red", "blue"], answer: 0, predicted: 0, predictedNorm: 0),
    ]);

    /// <summary>The run now; the sha differs from the baseline's (a re-quantized file), and the smaller quant's
    /// first tokens and multiple-choice pick drift from the reference's.</summary>
    private static EvalSnapshot Now(string quant, char shaDigit, int loss) => Snapshot(quant, new string((char)(shaDigit + 2), 64),
    [
        Generated("capital-france", pass: false, HostileOutput, nll: 0.9 + loss * 0.3, firstToken: 100 + loss, critical: true,
            asserts: [new AssertResult("contains", false, 0, Detail: "\"Paris\" not found")]),
        Generated("math-add", pass: true, "4", nll: 0.4, firstToken: 20),
        Generated("greeting", pass: true, "Hello! How can I help you today?", nll: 0.85 + loss * 0.1, firstToken: 30),
        Generated("summary-short", pass: true, "A short summary, edited.", nll: 1.0, firstToken: 40, hash: "h-summary-short-v2"),
        Generated("new-case", pass: true, "Brand new answer\nover two lines", nll: 0.7, firstToken: 60 + loss),
        Choice("mc-planet", ["Venus", "Mars", "Jupiter"], answer: 1, predicted: 1 + loss, predictedNorm: 1 + loss),
        Choice("mc-color", ["red", "blue"], answer: 0, predicted: 0, predictedNorm: loss),
    ]);

    private static EvalSnapshot Snapshot(string quant, string sha256, IReadOnlyList<CaseResult> cases) => new()
    {
        Model = ModelName,
        Quantization = quant,
        File = $"{ModelName}.{quant}.gguf",
        Sha256 = sha256,
        Runtime = new Dictionary<string, string> { ["llama.cpp"] = "b5002", ["LLamaSharp"] = "0.30.0" },
        Decode = new DecodeSettings(ContextSize: 4096, BatchSize: 512, Threads: 8, MaxTokens: 256),
        SuiteHash = "suite-0001",
        Cases = cases,
    };

    private static CaseResult Generated(string id, bool pass, string output, double nll, int firstToken, bool critical = false,
        string? hash = null, IReadOnlyList<AssertResult>? asserts = null) => new()
    {
        Id = id,
        Hash = hash ?? "h-" + id,
        Tags = critical ? [EvalTags.Critical] : [],
        Pass = pass,
        Score = pass ? 1 : 0,
        Output = output,
        Stopped = "eos",
        FirstToken = firstToken,
        Asserts = asserts ?? [new AssertResult("contains", pass, pass ? 1 : 0, Detail: pass ? null : "expected text not found")],
        TargetNll = nll,
    };

    private static CaseResult Choice(string id, IReadOnlyList<string> choices, int answer, int predicted, int predictedNorm) => new()
    {
        Id = id,
        Hash = "h-" + id,
        Pass = predicted == answer,
        Score = predicted == answer ? 1 : 0,
        Choices = choices.Select((text, i) => new ChoiceScore(text, i == predicted ? -1.25 : -3.5 - i, text.Length)).ToList(),
        Answer = answer,
        Predicted = predicted,
        PredictedNorm = predictedNorm,
    };
}
