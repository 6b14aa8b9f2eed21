using System.Globalization;
using System.Text;
using Ertas.Core;

namespace Ertas.Training;

/// <summary>
/// The loss curve as a small hand-written SVG: train loss per optimizer step as one polyline (a point per step with a
/// finite loss), eval losses as circles, axes with "nice" ticks (1, 2 or 5 times a power of ten) and a title. Numbers
/// are formatted with the invariant culture and fixed decimals, so the same losses always give the same bytes.
/// </summary>
public static class LossCurveSvg
{
    private const double Width = 640, Height = 360;
    private const double Left = 64, Right = 24, Top = 40, Bottom = 48;

    public static string Render(IReadOnlyList<double> stepLosses, IReadOnlyList<(long Step, double Loss)> evalLosses, string title)
    {
        var steps = Math.Max(stepLosses.Count, evalLosses.Count == 0 ? 1 : (int)evalLosses.Max(e => e.Step));
        var values = stepLosses.Concat(evalLosses.Select(e => e.Loss)).Where(double.IsFinite).ToList();
        var (yMin, yMax) = values.Count == 0 ? (0.0, 1.0) : (Math.Min(0, values.Min()), values.Max());
        if (yMax - yMin < 1e-12) yMax = yMin + 1;
        var yTicks = Ticks(yMin, yMax);
        yMax = Math.Max(yMax, yTicks[^1]);
        var xTicks = Ticks(1, Math.Max(steps, 2)).Where(t => t >= 1 && t == Math.Floor(t)).ToList();
        if (xTicks.Count == 0 || xTicks[0] > 1) xTicks.Insert(0, 1);

        double X(double step) => Left + (step - 1) / Math.Max(steps - 1, 1) * (Width - Left - Right);
        double Y(double loss) => Top + (yMax - loss) / (yMax - yMin) * (Height - Top - Bottom);

        var svg = new StringBuilder();
        svg.Append(Invariant($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width:0}\" height=\"{Height:0}\" viewBox=\"0 0 {Width:0} {Height:0}\" font-family=\"sans-serif\" font-size=\"12\">\n"));
        svg.Append(Invariant($"  <rect x=\"0\" y=\"0\" width=\"{Width:0}\" height=\"{Height:0}\" fill=\"white\"/>\n"));
        svg.Append(Invariant($"  <text x=\"{Width / 2:0}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{Escape(title)}</text>\n"));

        svg.Append("  <g class=\"axes\" stroke=\"#444\" stroke-width=\"1\">\n");
        svg.Append(Invariant($"    <line x1=\"{Left:0.00}\" y1=\"{Height - Bottom:0.00}\" x2=\"{Width - Right:0.00}\" y2=\"{Height - Bottom:0.00}\"/>\n"));
        svg.Append(Invariant($"    <line x1=\"{Left:0.00}\" y1=\"{Top:0.00}\" x2=\"{Left:0.00}\" y2=\"{Height - Bottom:0.00}\"/>\n"));
        foreach (var t in xTicks.Where(t => t <= steps))
            svg.Append(Invariant($"    <line x1=\"{X(t):0.00}\" y1=\"{Height - Bottom:0.00}\" x2=\"{X(t):0.00}\" y2=\"{Height - Bottom + 5:0.00}\"/>\n"));
        foreach (var t in yTicks)
            svg.Append(Invariant($"    <line x1=\"{Left - 5:0.00}\" y1=\"{Y(t):0.00}\" x2=\"{Left:0.00}\" y2=\"{Y(t):0.00}\"/>\n"));
        svg.Append("  </g>\n");

        svg.Append("  <g class=\"tick-labels\" fill=\"#222\">\n");
        foreach (var t in xTicks.Where(t => t <= steps))
            svg.Append(Invariant($"    <text x=\"{X(t):0.00}\" y=\"{Height - Bottom + 18:0.00}\" text-anchor=\"middle\">{t:0}</text>\n"));
        foreach (var t in yTicks)
            svg.Append(Invariant($"    <text x=\"{Left - 8:0.00}\" y=\"{Y(t) + 4:0.00}\" text-anchor=\"end\">{Label(t)}</text>\n"));
        svg.Append(Invariant($"    <text x=\"{(Left + Width - Right) / 2:0}\" y=\"{Height - 8:0}\" text-anchor=\"middle\">optimizer step</text>\n"));
        svg.Append(Invariant($"    <text x=\"16\" y=\"{(Top + Height - Bottom) / 2:0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {(Top + Height - Bottom) / 2:0})\">loss</text>\n"));
        svg.Append("  </g>\n");

        var points = stepLosses.Select((loss, i) => (Step: i + 1, Loss: loss)).Where(p => double.IsFinite(p.Loss))
            .Select(p => Invariant($"{X(p.Step):0.00},{Y(p.Loss):0.00}"));
        svg.Append($"  <polyline class=\"train-loss\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{string.Join(" ", points)}\"/>\n");
        svg.Append("  <g class=\"eval-loss\" fill=\"#d62728\">\n");
        foreach (var (step, loss) in evalLosses.Where(e => double.IsFinite(e.Loss)))
            svg.Append(Invariant($"    <circle cx=\"{X(step):0.00}\" cy=\"{Y(loss):0.00}\" r=\"3.5\"><title>step {step}: eval loss {loss:0.0000}</title></circle>\n"));
        svg.Append("  </g>\n");

        svg.Append("  <g class=\"legend\">\n");
        svg.Append(Invariant($"    <line x1=\"{Width - Right - 150:0}\" y1=\"{Top + 8:0}\" x2=\"{Width - Right - 130:0}\" y2=\"{Top + 8:0}\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n"));
        svg.Append(Invariant($"    <text x=\"{Width - Right - 124:0}\" y=\"{Top + 12:0}\">train loss</text>\n"));
        svg.Append(Invariant($"    <circle cx=\"{Width - Right - 140:0}\" cy=\"{Top + 26:0}\" r=\"3.5\" fill=\"#d62728\"/>\n"));
        svg.Append(Invariant($"    <text x=\"{Width - Right - 124:0}\" y=\"{Top + 30:0}\">eval loss</text>\n"));
        svg.Append("  </g>\n");
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    /// <summary>Renders and writes <paramref name="path"/> atomically (UTF-8, no BOM).</summary>
    public static void Write(string path, IReadOnlyList<double> stepLosses, IReadOnlyList<(long Step, double Loss)> evalLosses, string title) =>
        AtomicFile.WriteAllText(path, Render(stepLosses, evalLosses, title));

    /// <summary>Ticks from a step of 1, 2 or 5 times a power of ten, about five of them, covering [min, max].</summary>
    internal static List<double> Ticks(double min, double max)
    {
        var raw = (max - min) / 5;
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        var step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(m => m * magnitude).First(s => s >= raw);
        var ticks = new List<double>();
        for (var i = Math.Floor(min / step); ; i++)
        {
            var t = i * step;
            if (t < min - step * 1e-9) continue;
            ticks.Add(Math.Round(t, 12));
            if (t >= max - step * 1e-9) break;
        }
        return ticks;
    }

    private static string Label(double value) =>
        value.ToString(Math.Abs(value) >= 100 || value == Math.Floor(value) ? "0" : Math.Abs(value) >= 1 ? "0.0#" : "0.0##", CultureInfo.InvariantCulture);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string Escape(string text) => System.Security.SecurityElement.Escape(text) ?? "";
}
