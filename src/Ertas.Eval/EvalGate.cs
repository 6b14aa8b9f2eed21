using System.Globalization;
using Ertas.Core;
using Ertas.Data;

namespace Ertas.Eval;

/// <summary>
/// A limit on a summary metric between the baseline and now: <c>&lt;EvalRule Include="acc_norm" MaxDrop="0.02" /&gt;</c>.
/// Drops and increases are compared over the cases both snapshots share unchanged, so adding a hard case never
/// counts as a regression.
/// </summary>
public sealed record EvalRule(string Metric, double? MaxDrop = null, double? MaxIncrease = null, double? Min = null, double? Max = null)
{
    /// <summary>Parses <c>acc_norm:max_drop=0.02,min=0.5</c> (the engine's <c>--rule</c>).</summary>
    public static EvalRule Parse(string text)
    {
        var colon = text.IndexOf(':');
        var metric = (colon < 0 ? text : text[..colon]).Trim();
        if (!EvalSummary.MetricNames.Contains(metric))
            throw new ErtasException(ErrorCode.EvalInvalidRule,
                $"unknown eval metric \"{metric}\" in rule \"{text}\"; valid metrics: {string.Join(", ", EvalSummary.MetricNames)}");
        var rule = new EvalRule(metric);
        if (colon < 0)
            throw new ErtasException(ErrorCode.EvalInvalidRule, $"rule \"{text}\" sets no limit; give max_drop, max_increase, min or max");
        foreach (var part in text[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = part.IndexOf('=');
            var key = eq < 0 ? part : part[..eq].Trim().ToLowerInvariant().Replace("-", "_");
            if (eq < 0 || !double.TryParse(part[(eq + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value) || value < 0)
                throw new ErtasException(ErrorCode.EvalInvalidRule, $"rule \"{text}\": \"{part}\" must be name=number (a number of 0 or more)");
            rule = key switch
            {
                "max_drop" or "maxdrop" => rule with { MaxDrop = value },
                "max_increase" or "maxincrease" => rule with { MaxIncrease = value },
                "min" => rule with { Min = value },
                "max" => rule with { Max = value },
                _ => throw new ErtasException(ErrorCode.EvalInvalidRule, $"rule \"{text}\": unknown limit \"{key}\"; use max_drop, max_increase, min or max"),
            };
        }
        return rule;
    }

    public string Describe()
    {
        var parts = new List<string>();
        if (MaxDrop is { } d) parts.Add($"drop <= {EvalSnapshot.Format(d)}");
        if (MaxIncrease is { } i) parts.Add($"rise <= {EvalSnapshot.Format(i)}");
        if (Min is { } mn) parts.Add($">= {EvalSnapshot.Format(mn)}");
        if (Max is { } mx) parts.Add($"<= {EvalSnapshot.Format(mx)}");
        return string.Join(", ", parts);
    }

    /// <summary>The broken limit in words, or null when the values keep the rule.</summary>
    public string? Check(double? baseline, double? now)
    {
        const double Tolerance = 1e-9;
        if (now is not { } n)
            return null;
        if (Min is { } min && n < min - Tolerance) return $"{Metric} is {EvalSnapshot.Format(n)}, below the minimum {EvalSnapshot.Format(min)}";
        if (Max is { } max && n > max + Tolerance) return $"{Metric} is {EvalSnapshot.Format(n)}, above the maximum {EvalSnapshot.Format(max)}";
        if (baseline is not { } b)
            return null;
        if (MaxDrop is { } drop && b - n > drop + Tolerance)
            return $"{Metric} dropped by {EvalSnapshot.Format(b - n)} ({EvalSnapshot.Format(b)} -> {EvalSnapshot.Format(n)}), more than the {EvalSnapshot.Format(drop)} allowed";
        if (MaxIncrease is { } rise && n - b > rise + Tolerance)
            return $"{Metric} rose by {EvalSnapshot.Format(n - b)} ({EvalSnapshot.Format(b)} -> {EvalSnapshot.Format(n)}), more than the {EvalSnapshot.Format(rise)} allowed";
        return null;
    }
}

public sealed record GateOptions(int MaxNewFailures = 0, double MinPassRate = 0, IReadOnlyList<EvalRule>? Rules = null, bool Ci = false)
{
    public IReadOnlyList<EvalRule> RuleList => Rules ?? [];
}

/// <summary>One check of the gate that failed: regressions (ERTAS9201), the pass-rate floor (9202) or a rule (9203).</summary>
public sealed record GateFailure(ErrorCode Code, string Message)
{
    public override string ToString() => Message;
}

public enum ChangeKind
{
    Regression,
    Improvement,
    New,
    Edited,
    Removed,
    Drift,
}

/// <summary>A case that differs between the baseline and now. <see cref="Blocking"/>: it fails the build.</summary>
public sealed record CaseChange(ChangeKind Kind, string Id, CaseResult? Baseline, CaseResult? Now, bool Blocking = false)
{
    public bool Critical => (Now ?? Baseline)!.IsCritical;
}

public sealed record MetricRow(string Metric, double? Baseline, double? Now, EvalRule? Rule, string? Broken)
{
    public double? Delta => Baseline is { } b && Now is { } n ? n - b : null;
}

/// <summary>One quantization's outcome: the snapshot now, the baseline it was compared with, and what changed.</summary>
public sealed record QuantComparison
{
    public required EvalSnapshot Now { get; init; }
    public EvalSnapshot? Baseline { get; init; }
    public required IReadOnlyList<MetricRow> Metrics { get; init; }
    public required IReadOnlyList<CaseChange> Changes { get; init; }
    public required IReadOnlyList<GateFailure> Failures { get; init; }
    /// <summary>Cases both snapshots hold with the same content: what the metric rows are computed over.</summary>
    public int SharedCases { get; init; }
    public bool Failed => Failures.Count > 0;
    public string Quantization => Now.Quantization;
}

/// <summary>
/// The regression gate: compares a snapshot with its baseline. A case that passed and fails now (same id and content)
/// is a regression: always blocking when tagged critical, otherwise blocking once there are more than MaxNewFailures.
/// New and edited cases never fail; removed ones are listed; changed output with the same verdict is drift.
/// </summary>
public static class EvalGate
{
    public static QuantComparison Compare(EvalSnapshot? baseline, EvalSnapshot now, GateOptions options)
    {
        var failures = new List<GateFailure>();
        var changes = new List<CaseChange>();
        var before = baseline?.Cases.ToDictionary(c => c.Id, StringComparer.Ordinal) ?? [];
        var shared = new List<(CaseResult Baseline, CaseResult Now)>();
        foreach (var c in now.Cases.OrderBy(c => c.Id, StringComparer.Ordinal))
        {
            if (baseline is null)
                continue;
            if (!before.TryGetValue(c.Id, out var b))
                changes.Add(new CaseChange(ChangeKind.New, c.Id, null, c));
            else if (b.Hash != c.Hash)
                changes.Add(new CaseChange(ChangeKind.Edited, c.Id, b, c));
            else
            {
                shared.Add((b, c));
                if (b.Pass && !c.Pass)
                    changes.Add(new CaseChange(ChangeKind.Regression, c.Id, b, c));
                else if (!b.Pass && c.Pass)
                    changes.Add(new CaseChange(ChangeKind.Improvement, c.Id, b, c));
                else if (b.Output != c.Output || b.Predicted != c.Predicted || b.PredictedNorm != c.PredictedNorm)
                    changes.Add(new CaseChange(ChangeKind.Drift, c.Id, b, c));
            }
        }
        if (baseline is not null)
        {
            var ids = now.Cases.Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
            changes.AddRange(baseline.Cases.Where(c => !ids.Contains(c.Id)).OrderBy(c => c.Id, StringComparer.Ordinal)
                .Select(c => new CaseChange(ChangeKind.Removed, c.Id, c, null)));
        }

        // Regressions: critical ones always block; the others once they exceed the allowance.
        var regressions = changes.Where(c => c.Kind == ChangeKind.Regression).ToList();
        var ordinary = regressions.Count(c => !c.Critical);
        var overAllowance = ordinary > options.MaxNewFailures;
        for (var i = 0; i < changes.Count; i++)
            if (changes[i].Kind == ChangeKind.Regression && (changes[i].Critical || overAllowance))
                changes[i] = changes[i] with { Blocking = true };
        var blocking = changes.Count(c => c.Blocking);
        if (blocking > 0)
            failures.Add(new GateFailure(ErrorCode.EvalRegression, overAllowance
                ? $"{regressions.Count} case(s) passed in the baseline and fail now: {ordinary} ordinary, more than EvalMaxNewFailures={options.MaxNewFailures} allows, and {regressions.Count - ordinary} critical"
                : $"{blocking} critical case(s) passed in the baseline and fail now"));

        var summary = now.Summary;
        if (summary.PassRate < options.MinPassRate - 1e-9)
            failures.Add(new GateFailure(ErrorCode.EvalPassRateBelowFloor,
                $"pass rate {EvalSnapshot.Format(summary.PassRate)} is below EvalMinPassRate {EvalSnapshot.Format(options.MinPassRate)}"));

        var sharedBefore = EvalSummary.Of(shared.Select(s => s.Baseline).ToList());
        var sharedNow = EvalSummary.Of(shared.Select(s => s.Now).ToList());
        var rows = new List<MetricRow>();
        foreach (var metric in EvalSummary.MetricNames)
        {
            var b = baseline is null || shared.Count == 0 ? null : sharedBefore.Metric(metric);
            var n = baseline is null ? summary.Metric(metric) : shared.Count == 0 ? null : sharedNow.Metric(metric);
            var rules = options.RuleList.Where(r => r.Metric == metric).ToList();
            if (b is null && n is null && rules.Count == 0)
                continue;
            if (rules.Count == 0)
                rows.Add(new MetricRow(metric, b, n, null, null));
            foreach (var rule in rules)
            {
                // Absolute limits read the whole suite; drops and rises the cases both snapshots share unchanged.
                var broken = rule.Check(null, summary.Metric(metric))
                             ?? (baseline is null ? null : (rule with { Min = null, Max = null }).Check(b, n));
                rows.Add(new MetricRow(metric, b, n, rule, broken));
                if (broken is not null)
                    failures.Add(new GateFailure(ErrorCode.EvalRuleBroken, $"EvalRule {metric}: {broken}"));
            }
        }
        return new QuantComparison
        {
            Now = now,
            Baseline = baseline,
            Metrics = rows,
            Changes = changes,
            Failures = failures,
            SharedCases = shared.Count,
        };
    }

    /// <summary>MSBuild diagnostics for a comparison: errors for blocking regressions (at the case's suite line),
    /// warnings for allowed regressions and drift.</summary>
    public static IEnumerable<DatasetDiagnostic> Diagnostics(QuantComparison comparison, IReadOnlyDictionary<string, EvalCase> cases, string projectFile)
    {
        var quant = comparison.Quantization;
        foreach (var change in comparison.Changes)
        {
            if (!cases.TryGetValue(change.Id, out var c))
                continue;
            switch (change.Kind)
            {
                case ChangeKind.Regression:
                    yield return new DatasetDiagnostic(change.Blocking ? DiagnosticSeverity.Error : DiagnosticSeverity.Warning,
                        ErrorCode.EvalRegression, c.File, c.Line, 0,
                        $"{quant}: case \"{c.Id}\"{(change.Critical ? " (critical)" : "")} passed in the baseline and fails now: {Why(change.Now!)}" +
                        (change.Blocking ? "" : " (allowed by EvalMaxNewFailures)"));
                    break;
                case ChangeKind.Drift:
                    yield return new DatasetDiagnostic(DiagnosticSeverity.Warning, ErrorCode.EvalDrift, c.File, c.Line, 0,
                        $"{quant}: case \"{c.Id}\" still {(change.Now!.Pass ? "passes" : "fails")} but its output changed: " +
                        $"{Quote(change.Baseline!)} -> {Quote(change.Now!)}");
                    break;
            }
        }
        // Regressions were reported at their cases' lines above; the other checks belong to the project.
        foreach (var failure in comparison.Failures.Where(f => f.Code != ErrorCode.EvalRegression))
            yield return new DatasetDiagnostic(DiagnosticSeverity.Error, failure.Code, projectFile, 0, 0, $"{quant}: {failure.Message}");
    }

    /// <summary>Why a case fails, in one line: the failed asserts' details, or the chosen choice.</summary>
    public static string Why(CaseResult c)
    {
        if (c.IsMultipleChoice)
            return c.PredictedText is { } chosen
                ? $"chose \"{chosen}\", the answer is \"{c.AnswerText}\""
                : "every choice scored the same";
        var details = c.Asserts?.Where(a => !a.Pass).Select(a => a.Detail ?? a.Type).ToList() ?? [];
        return $"output {Quote(c)}" + (details.Count > 0 ? $" ({string.Join("; ", details)})" : "");
    }

    private static string Quote(CaseResult c)
    {
        if (c.IsMultipleChoice)
            return c.PredictedText is { } chosen ? $"\"{chosen}\"" : "(tie)";
        var text = (c.Output ?? "").ReplaceLineEndings(" ");
        return "\"" + (text.Length <= 80 ? text : text[..77] + "...") + "\"";
    }
}
