namespace Ertas.Eval.Tests;

/// <summary>Edges of the snapshot/gate life cycle found in review: first runs that break a floor, CRLF checkouts,
/// accepting the right files only.</summary>
public sealed partial class EvalCommandTests
{
    [Fact]
    public void AFirstRunBelowEvalMinPassRate_FailsWithERTAS9202_AndWritesNoBaseline()
    {
        using var project = new EvalProject(models, Suite);
        var run = project.Eval("--min-pass-rate", "1", "--project", "my.ertasproj");
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("eval-verdict=fail", run.Out.Trim());
        Assert.Contains(run.ErrorLines, l => l.StartsWith("my.ertasproj: error ERTAS9202: Q8_0: pass rate 0.6667 is below EvalMinPassRate 1", StringComparison.Ordinal));
        Assert.False(File.Exists(project.Verified));
        Assert.True(File.Exists(project.Received));
    }

    [Fact]
    public void ARuleMinimum_ReadsTheWholeSuite_EvenWithoutABaseline()
    {
        using var project = new EvalProject(models, Suite);
        var run = project.Eval("--rule", "pass_rate:min=0.9", "--project", "my.ertasproj");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(run.ErrorLines, l => l.Contains("error ERTAS9203: Q8_0: EvalRule pass_rate: pass_rate is 0.6667, below the minimum 0.9", StringComparison.Ordinal));
        Assert.Equal(0, project.Eval("--rule", "pass_rate:min=0.5").ExitCode);
    }

    [Fact]
    public void ABaselineCheckedOutWithCrlfLineEnds_StillMatches_AndNoReceivedFileIsWritten()
    {
        using var project = new EvalProject(models, Suite);
        Assert.Equal(0, project.Eval().ExitCode);
        File.WriteAllText(project.Verified, File.ReadAllText(project.Verified).ReplaceLineEndings("\r\n"));
        var again = project.Eval();
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.False(File.Exists(project.Received));
    }

    [Fact]
    public void Accept_TakesOnlyNameDotQuantExactly_AndAQuantizationThatMatchesNothingIsAnError()
    {
        using var project = new EvalProject(models, Suite);
        var mine = Path.Combine(project.Snapshots, "Tiny.Q8_0.received.json");
        var other = Path.Combine(project.Snapshots, "Tiny.Chat.Q8_0.received.json");
        File.WriteAllText(mine, "{}");
        File.WriteAllText(other, "{}");
        var typo = EvalCli.Run("eval", "accept", project.Snapshots, "--name", "Tiny", "--quantization", "Q4KM");
        Assert.Equal(2, typo.ExitCode);
        Assert.Contains("error ERTAS1001: no received snapshot for Q4KM", typo.Error);
        Assert.Equal(0, EvalCli.Run("eval", "accept", project.Snapshots, "--name", "Tiny").ExitCode);
        Assert.True(File.Exists(Path.Combine(project.Snapshots, "Tiny.Q8_0.verified.json")));
        Assert.True(File.Exists(other)); // another model's (Tiny.Chat) results stay where they are
    }
}
