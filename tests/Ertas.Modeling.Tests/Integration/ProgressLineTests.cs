using Ertas.Core;

namespace Ertas.Modeling.Tests.Integration;

public sealed class ProgressLineTests
{
    [Fact]
    public void OnATerminal_StepsRedrawOneLine_APlainLineEndsIt_AndTheLastStepIsKept()
    {
        var output = new StringWriter();
        var sink = new TerminalProgressSink(output, width: 60);
        sink.Advance("step 1/4 loss 2.000", 1, 4);
        sink.Advance("step 2/4 loss 1.500", 2, 4);
        sink.Report("train: checkpoint step-2");
        sink.Advance("step 3/4 loss 1.000", 3, 4);
        sink.Advance("step 4/4 loss 0.500", 4, 4);
        var text = output.ToString();
        var lines = text.Split('\n');
        // Two redraws on the first line, the plain line on its own, then the last two steps on one line that ends.
        Assert.Equal(4, lines.Length);
        Assert.Equal(2, lines[0].Count(c => c == '\r'));
        Assert.EndsWith("[##########..........]  50.0% step 2/4 loss 1.500", lines[0].TrimEnd());
        Assert.Equal("train: checkpoint step-2", lines[1].TrimEnd());
        Assert.EndsWith("[####################] 100.0% step 4/4 loss 0.500", lines[2].TrimEnd());
        Assert.Equal("", lines[3]);
        Assert.All(lines[0].Split('\r').Skip(1), drawn => Assert.Equal(59, drawn.Length)); // padded to clear the last draw
    }

    [Fact]
    public void OnATerminal_ALineWiderThanTheTerminal_IsCut()
    {
        var output = new StringWriter();
        new TerminalProgressSink(output, width: 40).Advance(new string('x', 200), 1, 2);
        var drawn = output.ToString().TrimStart('\r');
        Assert.Equal(39, drawn.Length);
        Assert.EndsWith("…", drawn);
    }

    [Fact]
    public void AnythingButTheProcessesOwnTerminal_GetsALinePerStep()
    {
        var output = new StringWriter();
        var sink = ProgressSinks.For(output);
        Assert.IsType<TextProgressSink>(sink);
        sink.Advance("step 1/2", 1, 2);
        sink.Advance("step 2/2", 2, 2);
        Assert.Equal("step 1/2\nstep 2/2\n", output.ToString().ReplaceLineEndings("\n"));
    }
}
