using System.Globalization;
using System.Xml.Linq;

namespace Ertas.Training.Tests;

public sealed class LossCurveSvgTests
{
    private static readonly double[] Losses = [.. Enumerable.Range(0, 50).Select(i => 3.2 * Math.Exp(-i / 12.0) + 0.15)];
    private static readonly (long, double)[] EvalLosses = [(10, 1.9), (20, 1.1), (50, 0.4)];

    [Fact]
    public void Render_IsWellFormedSvg_WithOnePolylinePointPerStep_EvalPoints_TitleAndLabelledTicks()
    {
        var svg = XDocument.Parse(LossCurveSvg.Render(Losses, EvalLosses, "Training loss (50 steps)"));
        XNamespace ns = "http://www.w3.org/2000/svg";

        Assert.Equal(ns + "svg", svg.Root!.Name);
        var points = svg.Descendants(ns + "polyline").Single().Attribute("points")!.Value.Split(' ');
        Assert.Equal(50, points.Length);
        var xs = points.Select(p => double.Parse(p.Split(',')[0], CultureInfo.InvariantCulture)).ToList();
        var ys = points.Select(p => double.Parse(p.Split(',')[1], CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(xs.Order(), xs);                     // steps left to right
        Assert.True(ys[^1] > ys[0]);                      // falling loss: lower on the page is a larger y
        Assert.Equal(3, svg.Descendants(ns + "g").Single(g => (string?)g.Attribute("class") == "eval-loss").Elements(ns + "circle").Count());
        var texts = svg.Descendants(ns + "text").Select(t => t.Value).ToList();
        Assert.Contains("Training loss (50 steps)", texts);
        var labels = svg.Descendants(ns + "g").Single(g => (string?)g.Attribute("class") == "tick-labels").Elements(ns + "text").Select(t => t.Value).ToList();
        Assert.Contains("1", labels);
        Assert.Contains("50", labels);
        Assert.Contains("0", labels);
        Assert.True(labels.Count >= 8, string.Join(" | ", labels));
    }

    [Fact]
    public void Render_SameLossesTwice_GivesTheSameBytes_WhateverTheCurrentCulture()
    {
        var invariant = LossCurveSvg.Render(Losses, EvalLosses, "loss");
        var previous = CultureInfo.CurrentCulture;
        try
        {
            // A decimal comma, as de-DE has (built by hand: the tests may run in globalization-invariant mode).
            var comma = (CultureInfo)CultureInfo.InvariantCulture.Clone();
            comma.NumberFormat.NumberDecimalSeparator = ",";
            comma.NumberFormat.NumberGroupSeparator = ".";
            CultureInfo.CurrentCulture = comma;
            Assert.Equal("1,5", 1.5.ToString());
            Assert.Equal(invariant, LossCurveSvg.Render(Losses, EvalLosses, "loss"));
        }
        finally
        {
            CultureInfo.CurrentCulture = previous;
        }
        var folder = Path.Combine(Path.GetTempPath(), "ertas-svg-" + Guid.NewGuid().ToString("N"));
        try
        {
            LossCurveSvg.Write(Path.Combine(folder, "a.svg"), Losses, EvalLosses, "loss");
            LossCurveSvg.Write(Path.Combine(folder, "b.svg"), Losses, EvalLosses, "loss");
            Assert.Equal(File.ReadAllBytes(Path.Combine(folder, "a.svg")), File.ReadAllBytes(Path.Combine(folder, "b.svg")));
            Assert.Equal(System.Text.Encoding.UTF8.GetBytes(invariant), File.ReadAllBytes(Path.Combine(folder, "a.svg")));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(1000)]
    public void Render_AnyRunLength_AndNaNSteps_StaysValid(int steps)
    {
        var losses = Enumerable.Range(0, steps).Select(i => i == 0 && steps > 1 ? double.NaN : 2.0 / (i + 1)).ToArray();
        var svg = XDocument.Parse(LossCurveSvg.Render(losses, [], "a <run> & more"));
        var points = svg.Descendants().Single(e => e.Name.LocalName == "polyline").Attribute("points")!.Value;
        Assert.Equal(losses.Count(double.IsFinite), points.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.DoesNotContain("NaN", points);
        Assert.Contains(svg.Descendants().Where(e => e.Name.LocalName == "text"), t => t.Value == "a <run> & more");
    }
}
