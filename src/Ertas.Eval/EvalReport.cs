using System.Text;

namespace Ertas.Eval;

/// <summary>One row of the quantization matrix.</summary>
public sealed record QuantMatrixRow(string Quantization, double PassRate, double? Acc, double? MeanTargetNll, double? FirstTokenAgreement, bool IsReference);

/// <summary>A training loss point for the HTML report's curve (metrics.jsonl of the adapter).</summary>
public sealed record LossPoint(int Step, double Loss);

/// <summary>
/// What a build's evals came to, across every quantization it scored: the verdict, per-quantization metrics and
/// changed cases, the quantization matrix. Rendered as report.md (pull-request comments, step summaries) and
/// report.html (a self-contained page).
/// </summary>
public sealed record EvalReport(string ModelName, IReadOnlyList<QuantComparison> Quants, IReadOnlyList<LossPoint>? LossCurve = null)
{

    public bool Failed => Quants.Any(q => q.Failed);
    public bool HasBaseline => Quants.Any(q => q.Baseline is not null);

    public string VerdictWord => Failed ? "fail" : HasBaseline ? "pass" : "none";

    /// <summary>One line: what a reviewer reads first.</summary>
    public string Verdict
    {
        get
        {
            var regressions = Quants.Sum(q => q.Changes.Count(c => c.Kind == ChangeKind.Regression));
            var improvements = Quants.Sum(q => q.Changes.Count(c => c.Kind == ChangeKind.Improvement));
            var cases = Quants.Count == 0 ? 0 : Quants[0].Now.Cases.Count;
            var scope = $"{cases} case(s) on {Quants.Count} quantization(s) ({string.Join(", ", Quants.Select(q => q.Quantization))})";
            if (Failed)
                return $"❌ **Eval gate failed** for {ModelName}: {regressions} regression(s), {Quants.Sum(q => q.Failures.Count)} failed check(s); {scope}.";
            if (!HasBaseline)
                return $"🆕 **No eval baseline yet** for {ModelName}: {scope}; accept the results to make them the baseline.";
            return $"✅ **Eval gate passed** for {ModelName}: {regressions} regression(s) within limits, {improvements} improvement(s); {scope}.";
        }
    }

    public IReadOnlyList<QuantMatrixRow> Matrix
    {
        get
        {
            if (Quants.Count == 0)
                return [];
            var reference = Quants.OrderBy(q => Rank(q.Quantization)).First();
            var firstTokens = reference.Now.Cases.Where(c => c.FirstToken is not null).ToDictionary(c => c.Id, c => c.FirstToken!.Value, StringComparer.Ordinal);
            return Quants.Select(q =>
            {
                var s = q.Now.Summary;
                var generated = q.Now.Cases.Where(c => c.FirstToken is not null && firstTokens.ContainsKey(c.Id)).ToList();
                double? agreement = generated.Count == 0 ? null : (double)generated.Count(c => c.FirstToken == firstTokens[c.Id]) / generated.Count;
                return new QuantMatrixRow(q.Quantization, s.PassRate, s.Acc, s.MeanTargetNll, agreement, ReferenceEquals(q, reference));
            }).ToList();
        }
    }

    /// <summary>Precision, best first (fewer is better): the matrix compares each quantization's first tokens with the
    /// best one's. Bits per weight of the mix's main type; K-quant mixes of one type order _L, _M, _S.</summary>
    public static double Rank(string quantization)
    {
        if (!Ertas.Gguf.Mixes.QuantizationMixes.TryParse(quantization, out var mix))
            return double.MaxValue;
        var info = Ertas.Gguf.GgmlTypes.Info(mix.DefaultType);
        var bits = 8.0 * info.BytesPerBlock / info.BlockSize;
        var size = mix.Name[^1] switch { 'L' => 0.0, 'M' => 0.1, 'S' => 0.2, _ => 0.0 };
        return -bits + size;
    }

    /// <summary>The order changed cases are listed in, by both renderers.</summary>
    public static IReadOnlyList<ChangeKind> ChangeOrder { get; } =
        [ChangeKind.Regression, ChangeKind.Improvement, ChangeKind.New, ChangeKind.Edited, ChangeKind.Removed, ChangeKind.Drift];

    /// <summary>What a quantization's metric table is measured over, when that needs saying.</summary>
    public static string? ScopeNote(QuantComparison q) =>
        q.Baseline is null ? "No baseline: these results become the baseline once accepted."
        : q.SharedCases < q.Now.Cases.Count || q.SharedCases < q.Baseline.Cases.Count
            ? $"Baseline and now compared over the {q.SharedCases} case(s) both hold unchanged."
            : null;

    public static string Num(double? value) => value is { } v ? EvalSnapshot.Format(v) : "–";

    /// <summary>The status column of a metric row, in report.md's words.</summary>
    public static string MetricStatus(MetricRow row) => StatusClass(row) switch
    {
        "broken" => "❌ " + row.Broken,
        "ok" => "✅ ok",
        "better" => "⬆️ better",
        "worse" => "⬇️ worse",
        _ => "",
    };

    public static string StatusClass(MetricRow row) =>
        row.Broken is not null ? "broken"
        : row.Rule is not null ? "ok"
        : row.Delta is { } d && Math.Abs(d) > 1e-9 ? (EvalSummary.LowerIsBetter(row.Metric) ? d < 0 : d > 0) ? "better" : "worse"
        : "none";

    public static string SignedNum(double? value) =>
        value is { } v ? (EvalSnapshot.Round(v) > 0 ? "+" : "") + EvalSnapshot.Format(v) : "–";

    public static string ChangeWord(ChangeKind kind) => kind switch
    {
        ChangeKind.Regression => "regression",
        ChangeKind.Improvement => "improvement",
        ChangeKind.New => "new",
        ChangeKind.Edited => "edited",
        ChangeKind.Removed => "removed",
        _ => "drift",
    };

    public static string ChangeIcon(CaseChange change) => change.Kind switch
    {
        ChangeKind.Regression => change.Blocking ? "❌" : "⚠️",
        ChangeKind.Improvement => "✅",
        ChangeKind.New => "🆕",
        ChangeKind.Edited => "✏️",
        ChangeKind.Removed => "🗑️",
        _ => "〰️",
    };

    /// <summary>The first 12 hex digits of a SHA-256, as the footers show it.</summary>
    public static string Short(string sha) => sha.Length > 12 ? sha[..12] : sha;
}

/// <summary>
/// report.md: a one-line verdict, per quantization a metric table and the changed cases (outputs folded in
/// &lt;details&gt;), the quantization matrix, and a footer with model hashes and the runtime. Always under
/// <see cref="MaxCharacters"/> (a PR comment holds 65,536): cases past the budget are counted, not shown.
/// </summary>
public static class EvalMarkdown
{
    public const int MaxCharacters = 60_000;

    public static string Render(EvalReport report)
    {
        var sb = new StringBuilder();
        sb.Append(report.Verdict).Append("\n\n");
        // The tables and footer are small and bounded by the number of quantizations; the case lists are not.
        var footer = Footer(report);
        foreach (var q in report.Quants)
        {
            sb.Append("## ").Append(q.Quantization).Append(" (").Append(q.Now.File).Append(")\n\n");
            if (EvalReport.ScopeNote(q) is { } note)
                sb.Append(note).Append("\n\n");
            sb.Append("| metric | baseline | now | delta | rule | status |\n|---|---:|---:|---:|---|---|\n");
            foreach (var row in q.Metrics)
            {
                var status = EvalReport.MetricStatus(row);
                sb.Append($"| {row.Metric} | {EvalReport.Num(row.Baseline)} | {EvalReport.Num(row.Now)} | {EvalReport.SignedNum(row.Delta)} | {row.Rule?.Describe() ?? ""} | {status} |\n");
            }
            foreach (var failure in q.Failures)
                sb.Append("\n- ❌ ").Append(Escape(failure.Message));
            sb.Append(q.Failures.Count > 0 ? "\n\n" : "\n");
        }

        var changed = report.Quants.Sum(q => q.Changes.Count);
        if (changed > 0)
        {
            sb.Append("## Changed cases\n\n");
            var budget = MaxCharacters - sb.Length - footer.Length - 2_000;
            var shown = 0;
            var caseText = new StringBuilder();
            foreach (var q in report.Quants)
                foreach (var kind in EvalReport.ChangeOrder)
                    foreach (var change in q.Changes.Where(c => c.Kind == kind))
                    {
                        var entry = CaseEntry(q.Quantization, change);
                        if (caseText.Length + entry.Length > budget)
                            goto Truncated;
                        caseText.Append(entry);
                        shown++;
                    }
            Truncated:
            sb.Append(caseText);
            if (shown < changed)
                sb.Append($"\n… and {changed - shown} more changed case(s), left out to keep this report under {MaxCharacters:N0} characters; see the received snapshots.\n");
            sb.Append('\n');
        }

        if (report.Quants.Count > 1)
        {
            sb.Append("## Quantization matrix\n\n| quantization | pass rate | acc | mean target_nll | first token = reference |\n|---|---:|---:|---:|---:|\n");
            foreach (var row in report.Matrix)
                sb.Append($"| {row.Quantization}{(row.IsReference ? " (reference)" : "")} | {EvalReport.Num(row.PassRate)} | {EvalReport.Num(row.Acc)} | {EvalReport.Num(row.MeanTargetNll)} | {EvalReport.Num(row.FirstTokenAgreement)} |\n");
            sb.Append('\n');
        }
        sb.Append(footer);
        return sb.ToString();
    }

    private static string CaseEntry(string quant, CaseChange change)
    {
        var (icon, word) = (EvalReport.ChangeIcon(change), EvalReport.ChangeWord(change.Kind));
        var sb = new StringBuilder();
        var critical = change.Critical ? " · critical" : "";
        var verdict = change.Now is null ? "" : change.Now.Pass ? " · passes" : " · fails";
        sb.Append($"<details><summary>{icon} {quant} · <code>{Html(change.Id)}</code> · {word}{critical}{verdict}</summary>\n\n");
        if (change.Baseline is not null)
            sb.Append("Baseline: ").Append(Describe(change.Baseline)).Append("\n\n");
        if (change.Now is not null)
        {
            sb.Append("Now: ").Append(Describe(change.Now)).Append("\n\n");
            if (!change.Now.Pass && !change.Now.IsMultipleChoice)
                sb.Append("Why: ").Append(Html(EvalGate.Why(change.Now))).Append("\n\n");
        }
        sb.Append("</details>\n");
        return sb.ToString();
    }

    private static string Describe(CaseResult c)
    {
        if (c.IsMultipleChoice)
        {
            if (c.Choices is not { } ch || c.Predicted is not { } p || p < 0 || p >= ch.Count)
                return $"{(c.Pass ? "pass" : "fail")}, chose nothing (every choice scored the same)";
            var byLength = c.PredictedNorm is { } n && n >= 0 && n < ch.Count && n != p ? $" (by length: <code>{Html(ch[n].Text)}</code>)" : "";
            return $"{(c.Pass ? "pass" : "fail")}, chose <code>{Html(ch[p].Text)}</code>{byLength}";
        }
        var output = c.Output ?? "";
        if (output.Length > 500)
            output = output[..500] + "…";
        return $"{(c.Pass ? "pass" : "fail")} (score {EvalSnapshot.Format(c.Score)})\n\n<pre>{Html(output)}</pre>";
    }

    private static string Footer(EvalReport report)
    {
        var sb = new StringBuilder("<sub>");
        foreach (var q in report.Quants)
        {
            sb.Append($"{q.Quantization}: <code>{EvalReport.Short(q.Now.Sha256)}</code>");
            if (q.Baseline is not null && q.Baseline.Sha256 != q.Now.Sha256)
                sb.Append($" (baseline <code>{EvalReport.Short(q.Baseline.Sha256)}</code>)");
            sb.Append(" · ");
        }
        var first = report.Quants.FirstOrDefault()?.Now;
        if (first is not null)
        {
            sb.Append(string.Join(", ", first.Runtime.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}")));
            sb.Append(" · ").Append(first.Decode.Describe());
        }
        return sb.Append("</sub>\n").ToString();
    }

    private static string Escape(string text) => text.Replace("|", "\\|");

    internal static string Html(string text) => System.Net.WebUtility.HtmlEncode(text);
}
