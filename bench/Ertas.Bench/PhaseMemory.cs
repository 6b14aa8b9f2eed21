using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ertas.Modeling.Native;

namespace Ertas.Bench;

/// <summary>One part of a training step: its time and this process's resident memory through it, in MB.</summary>
/// <param name="CachedMb">Freed tensor blocks <see cref="TensorBlockCache"/> held at the phase's end (0 without it).</param>
/// <param name="BlocksPeakMb">The most bytes of large tensor blocks, live plus cached, mapped at once during the phase.</param>
public sealed record StepPhase(string Name, double Seconds, double StartRssMb, double MaxRssMb, double EndRssMb, double PeakAfterMb, bool SetPeak,
    double CachedMb = 0, double BlocksPeakMb = 0);

/// <summary>
/// Where a step's memory peak comes from: the trainer names each part of the step as it starts
/// (<see cref="Ertas.Training.TrainingRunSettings.Phase"/>); at every change the kernel's high-water mark (VmHWM) is
/// read, so a phase during which it rose is the one that set the peak, exactly. No sampler thread: a thread that
/// allocates while TorchSharp is inside a native call lets the GC finalize the temporary Scalar that call is reading
/// (TorchSharp 0.107's <c>Tensor.add(Tensor)</c> makes one), which aborted a 7B step once.
/// </summary>
public sealed class PhaseMemory : IDisposable
{
    private readonly object _gate = new();
    private readonly List<StepPhase> _phases = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private string _name;
    private double _start, _startRss, _maxRss, _peakBefore;

    public PhaseMemory(string first)
    {
        _name = first;
        (_startRss, _peakBefore) = TrainingWorker.Memory();
        _maxRss = _startRss;
    }

    public IReadOnlyList<StepPhase> Phases
    {
        get { lock (_gate) return [.. _phases]; }
    }

    public void Enter(string name)
    {
        var (rss, peak) = TrainingWorker.Memory();
        lock (_gate)
        {
            var now = _clock.Elapsed.TotalSeconds;
            var blocks = TensorBlockCache.Current;
            _phases.Add(new StepPhase(_name, now - _start, _startRss, Math.Max(_maxRss, rss), rss, peak, peak > _peakBefore + 1,
                (blocks?.CachedBytes ?? 0) / 1048576.0, (blocks?.PeakMappedBytes ?? 0) / 1048576.0));
            TensorBlockCache.ResetPeak();
            (_name, _start, _startRss, _maxRss, _peakBefore) = (name, now, rss, rss, peak);
        }
    }

    public void Dispose()
    {
    }

    /// <summary>The phases as a Markdown table, repeated phases of a step kept in order.</summary>
    public static void AppendTable(StringBuilder md, IReadOnlyList<StepPhase> phases)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine("| phase | s | RSS at start MB | higher of start and end MB | RSS at end MB | peak so far MB | tensor blocks: most mapped MB | of them cached at end MB |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var p in phases)
            md.AppendLine(inv, $"| {(p.SetPeak ? $"**{p.Name}**" : p.Name)} | {p.Seconds:F1} | {p.StartRssMb:F0} | {p.MaxRssMb:F0} | {p.EndRssMb:F0} | {(p.SetPeak ? $"**{p.PeakAfterMb:F0}** (rose here)" : p.PeakAfterMb.ToString("F0", inv))} | {p.BlocksPeakMb:F0} | {p.CachedMb:F0} |");
    }
}
