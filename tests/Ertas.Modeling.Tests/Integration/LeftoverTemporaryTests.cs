using System.Diagnostics;
using Ertas.Core;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// A writer killed with SIGKILL never reaches its cleanup and leaves <c>.NAME.PID.GUID.tmp</c> behind, up to the size
/// of the output; the next write into that folder removes the temporaries whose process is gone, and only those.
/// </summary>
public sealed class LeftoverTemporaryTests : IDisposable
{
    private readonly TempFolder _work = new("ertas-leftovers-");

    public void Dispose() => _work.Dispose();

    [Fact]
    public void AnErtasKilledWhileWriting_LeavesItsTemporary_AndTheNextErtasWritingThereRemovesIt()
    {
        var output = _work.Combine("base");
        var ertas = Path.Combine(AppContext.BaseDirectory, "ertas");
        // Killed by the kernel at exactly 8 MiB into the weights: a file-size limit ends the process with SIGXFSZ,
        // which like SIGKILL runs no cleanup, and unlike a timed kill it cannot miss on a busy machine.
        using var writer = Process.Start(new ProcessStartInfo("bash",
            ["-c", "ulimit -f 8192; exec \"$0\" base create --preset 100m --out \"$1\"", ertas, output])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        writer.WaitForExit();
        Assert.Equal(128 + 25, writer.ExitCode); // 25 = SIGXFSZ
        var leftover = Assert.Single(Directory.GetFiles(output), f => Path.GetFileName(f).StartsWith('.'));
        Assert.Matches($@"^\.model\.safetensors\.{writer.Id}\.[0-9a-f]{{32}}\.tmp$", Path.GetFileName(leftover));
        Assert.Equal(8L << 20, new FileInfo(leftover).Length);

        var rerun = Cli.Run("base", "create", "--preset", "tiny", "--out", output, "--force");
        Assert.True(rerun.ExitCode == 0, rerun.Error);
        Assert.DoesNotContain(Directory.GetFiles(output), f => Path.GetFileName(f).StartsWith('.'));
    }

    [Fact]
    public void TheSweep_RemovesOnlyTemporariesOfGoneProcesses_NotALiveWritersNorOurOwnNorOtherFiles()
    {
        using var live = Process.Start(new ProcessStartInfo("sleep", "60"))!;
        using var gone = Process.Start(new ProcessStartInfo("sleep", "60"))!;
        gone.Kill();
        gone.WaitForExit();

        string Temporary(string name, int pid) => _work.Combine($".{name}.{pid}.{Guid.NewGuid():N}.tmp");
        var dead = Temporary("model.Q8_0.gguf", gone.Id);
        var running = Temporary("model.Q4_K_M.gguf", live.Id);
        var ours = Temporary("report.md", Environment.ProcessId);
        var foreign = _work.Combine(".editor-swap.tmp");
        var notAPid = _work.Combine($".model.gguf.12ab.{Guid.NewGuid():N}.tmp");
        foreach (var file in new[] { dead, running, ours, foreign, notAPid })
            File.WriteAllText(file, "partial");

        AtomicFile.WriteAllText(_work.Combine("lock.json"), "{}");
        Assert.False(File.Exists(dead));
        Assert.All(new[] { running, ours, foreign, notAPid }, f => Assert.True(File.Exists(f), f));

        live.Kill();
        live.WaitForExit();
        Assert.Equal([running], AtomicFile.SweepOrphans(_work.Path));
        Assert.True(File.Exists(ours));
    }
}
