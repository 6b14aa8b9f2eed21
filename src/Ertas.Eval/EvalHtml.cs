using System.Globalization;
using System.Text;

namespace Ertas.Eval;

/// <summary>
/// report.html: the content of report.md as one self-contained page (inline CSS and SVG, no script, nothing fetched),
/// plus a training loss curve and a bar chart per metric across quantizations. Deterministic: the same report gives
/// the same bytes, so the page can be diffed and cached like the snapshots.
/// </summary>
public static class EvalHtml
{
    /// <summary>Changed cases shown at most; the rest are counted, so a suite-wide drift cannot make a page of megabytes.</summary>
    public const int MaxCases = 500;

    /// <summary>Characters of a case's output shown; the snapshot holds the whole text.</summary>
    public const int MaxOutputCharacters = 2_000;

    /// <summary>Points drawn on the loss curve at most; a long run is thinned evenly, keeping the last point.</summary>
    public const int MaxCurvePoints = 1_000;

    public static string Render(EvalReport report)
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        sb.Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        sb.Append("<title>Eval report: ").Append(H(report.ModelName)).Append("</title>\n");
        sb.Append("<style>\n").Append(Css).Append("</style>\n</head>\n<body>\n<main>\n");
        sb.Append("<h1>Eval report: ").Append(H(report.ModelName)).Append("</h1>\n");
        sb.Append("<p id=\"verdict\" class=\"verdict verdict-").Append(report.VerdictWord).Append("\">")
            .Append(VerdictHtml(report.Verdict)).Append("</p>\n");

        foreach (var q in report.Quants)
            Quantization(sb, q);
        Changes(sb, report);
        Matrix(sb, report);
        Charts(sb, report);
        Footer(sb, report);
        sb.Append("</main>\n</body>\n</html>\n");
        return sb.ToString();
    }

    private static void Quantization(StringBuilder sb, QuantComparison q)
    {
        sb.Append("<section class=\"quant\">\n<h2>").Append(H(q.Quantization)).Append(" <span class=\"file\">(")
            .Append(H(q.Now.File)).Append(")</span></h2>\n");
        if (EvalReport.ScopeNote(q) is { } note)
            sb.Append("<p class=\"note\">").Append(H(note)).Append("</p>\n");
        sb.Append("<table class=\"metrics\">\n<thead><tr><th>metric</th><th>baseline</th><th>now</th><th>delta</th><th>rule</th><th>status</th></tr></thead>\n<tbody>\n");
        foreach (var row in q.Metrics)
        {
            sb.Append("<tr><td><code>").Append(H(row.Metric)).Append("</code></td>")
                .Append("<td class=\"num\">").Append(EvalReport.Num(row.Baseline)).Append("</td>")
                .Append("<td class=\"num\">").Append(EvalReport.Num(row.Now)).Append("</td>")
                .Append("<td class=\"num\">").Append(EvalReport.SignedNum(row.Delta)).Append("</td>")
                .Append("<td>").Append(H(row.Rule?.Describe() ?? "")).Append("</td>")
                .Append("<td class=\"status status-").Append(EvalReport.StatusClass(row)).Append("\">").Append(H(EvalReport.MetricStatus(row))).Append("</td></tr>\n");
        }
        sb.Append("</tbody>\n</table>\n");
        if (q.Failures.Count > 0)
        {
            sb.Append("<ul class=\"failures\">\n");
            foreach (var failure in q.Failures)
                sb.Append("<li>❌ ").Append(H(failure.Message)).Append("</li>\n");
            sb.Append("</ul>\n");
        }
        sb.Append("</section>\n");
    }

    private static void Changes(StringBuilder sb, EvalReport report)
    {
        var changed = report.Quants.Sum(q => q.Changes.Count);
        if (changed == 0)
            return;
        sb.Append("<section class=\"changes\">\n<h2>Changed cases</h2>\n<p class=\"counts\">");
        sb.Append(string.Join(" · ", EvalReport.ChangeOrder
            .Select(k => (Kind: k, Count: report.Quants.Sum(q => q.Changes.Count(c => c.Kind == k))))
            .Where(p => p.Count > 0)
            .Select(p => Inv($"{p.Count} {EvalReport.ChangeWord(p.Kind)}{(p.Kind is ChangeKind.Regression or ChangeKind.Improvement ? "(s)" : "")}"))));
        sb.Append("</p>\n");
        var shown = 0;
        foreach (var q in report.Quants)
            foreach (var kind in EvalReport.ChangeOrder)
                foreach (var change in q.Changes.Where(c => c.Kind == kind))
                {
                    if (shown == MaxCases)
                        goto Truncated;
                    CaseEntry(sb, q.Quantization, change);
                    shown++;
                }
        Truncated:
        if (shown < changed)
            sb.Append(Inv($"<p class=\"more\">… and {changed - shown} more changed case(s), left out to keep this page small; see the received snapshots.</p>\n"));
        sb.Append("</section>\n");
    }

    private static void CaseEntry(StringBuilder sb, string quant, CaseChange change)
    {
        var word = EvalReport.ChangeWord(change.Kind);
        var severity = change.Kind == ChangeKind.Regression && !change.Blocking ? " allowed" : "";
        sb.Append("<details class=\"case case-").Append(word).Append(severity).Append("\"><summary>")
            .Append(EvalReport.ChangeIcon(change)).Append(' ').Append(H(quant)).Append(" · <code>").Append(H(change.Id)).Append("</code> · ")
            .Append(word);
        if (change.Critical)
            sb.Append(" · critical");
        if (change.Now is not null)
            sb.Append(change.Now.Pass ? " · passes" : " · fails");
        sb.Append("</summary>\n<div class=\"case-body\">\n");
        if (change.Baseline is not null)
            Describe(sb, "Baseline", change.Baseline);
        if (change.Now is not null)
        {
            Describe(sb, "Now", change.Now);
            if (!change.Now.Pass && !change.Now.IsMultipleChoice)
                sb.Append("<p class=\"why\">Why: ").Append(H(EvalGate.Why(change.Now))).Append("</p>\n");
        }
        sb.Append("</div>\n</details>\n");
    }

    private static void Describe(StringBuilder sb, string label, CaseResult c)
    {
        sb.Append("<p><b>").Append(label).Append(":</b> ").Append(c.Pass ? "pass" : "fail");
        if (c.IsMultipleChoice)
        {
            sb.Append(", chose ").Append(c.PredictedText is { } chosen ? "<code>" + H(chosen) + "</code>" : "nothing (tie)").Append("</p>\n");
            Choices(sb, c);
            return;
        }
        sb.Append(" (score ").Append(EvalSnapshot.Format(c.Score)).Append(")</p>\n");
        var output = (c.Output ?? "").ReplaceLineEndings("\n");
        if (output.Length > MaxOutputCharacters)
            output = output[..MaxOutputCharacters] + "…";
        sb.Append("<pre>").Append(H(output)).Append("</pre>\n");
    }

    private static void Choices(StringBuilder sb, CaseResult c)
    {
        sb.Append("<table class=\"choices\">\n<thead><tr><th>choice</th><th>logprob</th><th>tokens</th><th></th></tr></thead>\n<tbody>\n");
        for (var i = 0; i < c.Choices!.Count; i++)
        {
            var ch = c.Choices[i];
            var marks = new List<string>();
            if (i == c.Answer) marks.Add("answer");
            if (i == c.Predicted) marks.Add("chosen");
            if (i == c.PredictedNorm) marks.Add("chosen (norm)");
            sb.Append("<tr><td><code>").Append(H(ch.Text)).Append("</code></td><td class=\"num\">").Append(EvalSnapshot.Format(ch.LogProb))
                .Append("</td><td class=\"num\">").Append(Inv($"{ch.Tokens}")).Append("</td><td>").Append(string.Join(", ", marks)).Append("</td></tr>\n");
        }
        sb.Append("</tbody>\n</table>\n");
    }

    private static void Matrix(StringBuilder sb, EvalReport report)
    {
        if (report.Quants.Count <= 1)
            return;
        sb.Append("<section class=\"matrix\">\n<h2>Quantization matrix</h2>\n<table class=\"metrics\">\n");
        sb.Append("<thead><tr><th>quantization</th><th>pass rate</th><th>acc</th><th>mean target_nll</th><th>first token = reference</th></tr></thead>\n<tbody>\n");
        foreach (var row in report.Matrix)
        {
            sb.Append(row.IsReference ? "<tr class=\"reference\">" : "<tr>").Append("<td>").Append(H(row.Quantization))
                .Append(row.IsReference ? " <span class=\"tag\">reference</span>" : "").Append("</td>")
                .Append("<td class=\"num\">").Append(EvalReport.Num(row.PassRate)).Append("</td>")
                .Append("<td class=\"num\">").Append(EvalReport.Num(row.Acc)).Append("</td>")
                .Append("<td class=\"num\">").Append(EvalReport.Num(row.MeanTargetNll)).Append("</td>")
                .Append("<td class=\"num\">").Append(EvalReport.Num(row.FirstTokenAgreement)).Append("</td></tr>\n");
        }
        sb.Append("</tbody>\n</table>\n</section>\n");
    }

    private static void Charts(StringBuilder sb, EvalReport report)
    {
        var curve = report.LossCurve?.Where(p => double.IsFinite(p.Loss)).OrderBy(p => p.Step).ToList() ?? [];
        var metrics = new (string Label, Func<EvalSummary, double?> Value, bool IsRate)[]
        {
            ("pass_rate", s => s.PassRate, true),
            ("acc", s => s.Acc, true),
            ("acc_norm", s => s.AccNorm, true),
            ("mean target_nll (lower is better)", s => s.MeanTargetNll, false),
        };
        var summaries = report.Quants.Select(q => (q.Quantization, Summary: q.Now.Summary)).ToList();
        var present = metrics.Where(m => summaries.Any(s => m.Value(s.Summary) is not null)).ToList();
        if (curve.Count < 2 && present.Count == 0)
            return;
        sb.Append("<section class=\"charts\">\n<h2>Charts</h2>\n");
        if (curve.Count >= 2)
            LossChart(sb, curve);
        if (present.Count > 0)
        {
            sb.Append("<div class=\"bars\">\n");
            foreach (var m in present)
                BarChart(sb, m.Label, summaries.Select(s => (s.Quantization, m.Value(s.Summary))).ToList(), m.IsRate);
            sb.Append("</div>\n");
        }
        sb.Append("</section>\n");
    }

    private static void LossChart(StringBuilder sb, List<LossPoint> curve)
    {
        const double Width = 720, Height = 280, Left = 56, Right = 16, Top = 16, Bottom = 40;
        const double PlotW = Width - Left - Right, PlotH = Height - Top - Bottom;
        var (xLo, xHi, xStep) = Axis(curve[0].Step, curve[^1].Step, 6, integer: true);
        var (yLo, yHi, yStep) = Axis(curve.Min(p => p.Loss), curve.Max(p => p.Loss), 5, integer: false);
        double X(double v) => Left + (v - xLo) / (xHi - xLo) * PlotW;
        double Y(double v) => Top + PlotH - (v - yLo) / (yHi - yLo) * PlotH;

        var last = curve[^1];
        var min = curve.MinBy(p => p.Loss)!;
        sb.Append("<figure class=\"chart\">\n");
        sb.Append(Inv($"<svg class=\"loss\" viewBox=\"0 0 {Width} {Height}\" width=\"{Width}\" height=\"{Height}\" role=\"img\" aria-label=\"Training loss by step\">\n"));
        sb.Append(Inv($"<rect class=\"plot\" x=\"{Left}\" y=\"{Top}\" width=\"{PlotW}\" height=\"{PlotH}\"/>\n"));
        foreach (var t in Ticks(yLo, yHi, yStep))
        {
            sb.Append(Inv($"<line class=\"grid\" x1=\"{Left}\" y1=\"{F(Y(t))}\" x2=\"{Left + PlotW}\" y2=\"{F(Y(t))}\"/>"));
            sb.Append(Inv($"<text class=\"tick\" x=\"{Left - 6}\" y=\"{F(Y(t) + 4)}\" text-anchor=\"end\">{TickLabel(t, yStep)}</text>\n"));
        }
        foreach (var t in Ticks(xLo, xHi, xStep))
        {
            sb.Append(Inv($"<line class=\"grid\" x1=\"{F(X(t))}\" y1=\"{Top}\" x2=\"{F(X(t))}\" y2=\"{Top + PlotH}\"/>"));
            sb.Append(Inv($"<text class=\"tick\" x=\"{F(X(t))}\" y=\"{Top + PlotH + 16}\" text-anchor=\"middle\">{TickLabel(t, xStep)}</text>\n"));
        }
        sb.Append(Inv($"<text class=\"axis\" x=\"{Left + PlotW / 2}\" y=\"{Height - 4}\" text-anchor=\"middle\">step</text>\n"));
        sb.Append(Inv($"<text class=\"axis\" x=\"14\" y=\"{Top + PlotH / 2}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {Top + PlotH / 2})\">loss</text>\n"));
        sb.Append("<polyline class=\"line\" points=\"")
            .Append(string.Join(" ", Thin(curve).Select(p => F(X(p.Step)) + "," + F(Y(p.Loss))))).Append("\"/>\n");
        sb.Append("</svg>\n");
        sb.Append(Inv($"<figcaption>Training loss: {curve.Count} point(s), last {EvalSnapshot.Format(last.Loss)} at step {last.Step}, lowest {EvalSnapshot.Format(min.Loss)} at step {min.Step}.</figcaption>\n"));
        sb.Append("</figure>\n");
    }

    private static IEnumerable<LossPoint> Thin(List<LossPoint> curve)
    {
        if (curve.Count <= MaxCurvePoints)
            return curve;
        var stride = (curve.Count + MaxCurvePoints - 1) / MaxCurvePoints;
        return curve.Where((_, i) => i % stride == 0 || i == curve.Count - 1);
    }

    private static void BarChart(StringBuilder sb, string label, List<(string Quantization, double? Value)> values, bool isRate)
    {
        const double Width = 340, LabelW = 72, ValueW = 52, Row = 24, BarH = 16, Pad = 6;
        const double BarMax = Width - LabelW - ValueW - 8;
        var height = Pad * 2 + Row * values.Count;
        // Rates share one 0..1 scale so charts compare at a glance; other metrics scale to their largest value.
        var top = isRate ? 1.0 : values.Max(v => v.Value ?? 0);
        if (!(top > 0))
            top = 1;
        sb.Append("<figure class=\"chart bar\">\n<figcaption>").Append(H(label)).Append("</figcaption>\n");
        sb.Append(Inv($"<svg viewBox=\"0 0 {Width} {height}\" width=\"{Width}\" height=\"{height}\" role=\"img\" aria-label=\"{H(label)} per quantization\">\n"));
        for (var i = 0; i < values.Count; i++)
        {
            var (quant, value) = values[i];
            var y = Pad + i * Row;
            var w = value is { } v ? Math.Clamp(v / top, 0, 1) * BarMax : 0;
            sb.Append(Inv($"<text class=\"tick\" x=\"{LabelW - 6}\" y=\"{F(y + BarH - 4)}\" text-anchor=\"end\">{H(quant)}</text>"));
            sb.Append(Inv($"<rect class=\"bar\" x=\"{LabelW}\" y=\"{F(y)}\" width=\"{F(w)}\" height=\"{BarH}\"/>"));
            sb.Append(Inv($"<text class=\"value\" x=\"{F(LabelW + w + 4)}\" y=\"{F(y + BarH - 4)}\">{EvalReport.Num(value)}</text>\n"));
        }
        sb.Append("</svg>\n</figure>\n");
    }

    private static void Footer(StringBuilder sb, EvalReport report)
    {
        if (report.Quants.Count == 0)
            return;
        sb.Append("<footer>\n<p>Models and runtime</p>\n<table class=\"runtime\">\n<thead><tr><th>quantization</th><th>sha256</th><th>runtime</th><th>decode</th></tr></thead>\n<tbody>\n");
        foreach (var q in report.Quants)
        {
            sb.Append("<tr><td>").Append(H(q.Quantization)).Append("</td><td><code>").Append(H(EvalReport.Short(q.Now.Sha256))).Append("</code>");
            if (q.Baseline is not null && q.Baseline.Sha256 != q.Now.Sha256)
                sb.Append(" (baseline <code>").Append(H(EvalReport.Short(q.Baseline.Sha256))).Append("</code>)");
            sb.Append("</td><td>")
                .Append(H(string.Join(", ", q.Now.Runtime.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}"))))
                .Append("</td><td>").Append(H(q.Now.Decode.Describe())).Append("</td></tr>\n");
        }
        sb.Append("</tbody>\n</table>\n</footer>\n");
    }

    /// <summary>The verdict line as HTML: encoded, with its markdown <c>**bold**</c> as &lt;strong&gt;.</summary>
    internal static string VerdictHtml(string verdict)
    {
        var parts = verdict.Split("**");
        var sb = new StringBuilder();
        for (var i = 0; i < parts.Length; i++)
        {
            // An odd count of markers leaves the last one unpaired: keep it as text rather than open a tag it never closes.
            var bold = i % 2 == 1 && i < parts.Length - 1;
            if (i % 2 == 1 && !bold)
                sb.Append("**");
            sb.Append(bold ? "<strong>" + H(parts[i]) + "</strong>" : H(parts[i]));
        }
        return sb.ToString();
    }

    /// <summary>An axis from lo to hi widened to round tick steps (1, 2 or 5 times a power of ten), about
    /// <paramref name="ticks"/> of them; a flat series gets a range around its value.</summary>
    internal static (double Lo, double Hi, double Step) Axis(double lo, double hi, int ticks, bool integer)
    {
        if (!(hi > lo))
        {
            var pad = Math.Abs(lo) > 0 ? Math.Abs(lo) * 0.1 : 1;
            (lo, hi) = (lo - pad, hi + pad);
        }
        var raw = (hi - lo) / ticks;
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        var norm = raw / magnitude;
        var step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
        if (integer)
            step = Math.Max(1, Math.Round(step));
        return (Math.Floor(lo / step + 1e-9) * step, Math.Ceiling(hi / step - 1e-9) * step, step);
    }

    private static IEnumerable<double> Ticks(double lo, double hi, double step)
    {
        // Multiplied, not summed, so rounding does not drift past the last tick.
        var count = (int)Math.Round((hi - lo) / step);
        for (var i = 0; i <= count; i++)
            yield return lo + i * step;
    }

    private static string TickLabel(double value, double step)
    {
        var decimals = Math.Clamp(-(int)Math.Floor(Math.Log10(step) + 1e-9), 0, 6);
        var text = value.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return text.StartsWith('-') && text.Trim('-', '0', '.').Length == 0 ? text[1..] : text;
    }


    private static string F(double value)
    {
        var r = Math.Round(value, 2);
        return (r == 0 ? 0 : r).ToString("0.##", CultureInfo.InvariantCulture);
    }

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string H(string text) => System.Net.WebUtility.HtmlEncode(text);

    // Normalised so a checkout with CRLF line endings still renders "\n" only.
    private static readonly string Css = """
        :root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-alt: #f6f8fa; --pass: #1a7f37; --fail: #cf222e; --warn: #9a6700; --none: #0969da; }
        body { margin: 0; color: var(--fg); background: #fff; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
        main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; }
        h1 { font-size: 1.6em; margin: 0 0 12px; }
        h2 { font-size: 1.25em; margin: 32px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
        h2 .file { color: var(--muted); font-weight: normal; font-size: 0.8em; }
        code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 0.9em; }
        pre { background: var(--bg-alt); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
        .verdict { font-size: 1.1em; padding: 12px 16px; border-radius: 6px; border-left: 6px solid; }
        .verdict-pass { border-color: var(--pass); background: #dafbe1; }
        .verdict-fail { border-color: var(--fail); background: #ffebe9; }
        .verdict-none { border-color: var(--none); background: #ddf4ff; }
        .note { color: var(--muted); }
        table { border-collapse: collapse; margin: 8px 0; }
        th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
        th { background: var(--bg-alt); font-weight: 600; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        .status-broken { color: var(--fail); font-weight: 600; }
        .status-ok, .status-better { color: var(--pass); }
        .status-worse { color: var(--warn); }
        .failures { color: var(--fail); padding-left: 20px; list-style: none; }
        .counts { color: var(--muted); }
        details.case { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; padding: 4px 12px; }
        details.case > summary { cursor: pointer; }
        .case-regression { border-left: 4px solid var(--fail) !important; }
        .case-regression.allowed { border-left-color: var(--warn) !important; }
        .case-improvement { border-left: 4px solid var(--pass) !important; }
        .case-new, .case-edited { border-left: 4px solid var(--none) !important; }
        .case-body { padding: 4px 0; }
        .why { color: var(--fail); }
        .more { color: var(--muted); font-style: italic; }
        tr.reference td { background: #fff8c5; }
        .tag { font-size: 0.75em; padding: 1px 6px; border-radius: 10px; background: var(--bg-alt); border: 1px solid var(--line); color: var(--muted); }
        figure { margin: 12px 0; }
        figcaption { color: var(--muted); font-size: 0.9em; }
        .bars { display: flex; flex-wrap: wrap; gap: 8px 32px; }
        .bar figcaption { font-weight: 600; color: var(--fg); }
        svg { display: block; max-width: 100%; height: auto; font-family: inherit; }
        svg .plot { fill: #fff; stroke: var(--line); }
        svg .grid { stroke: #eaeef2; }
        svg .tick, svg .value { font-size: 11px; fill: var(--muted); }
        svg .axis { font-size: 12px; fill: var(--fg); }
        svg .line { fill: none; stroke: var(--none); stroke-width: 2; stroke-linejoin: round; }
        svg .bar { fill: var(--none); }
        footer { margin-top: 40px; color: var(--muted); font-size: 0.85em; }
        footer table { margin: 0; }

        """.ReplaceLineEndings("\n");
}
