using System.Diagnostics;

namespace Ertas.Core;

/// <summary>Long work reports here: the CLI prints it, the MSBuild task streams it into the build log.</summary>
public interface IProgressSink
{
    void Report(string line);
}

public sealed class TextProgressSink(TextWriter writer) : IProgressSink
{
    public void Report(string line) => writer.WriteLine(line);
}

public sealed class NullProgressSink : IProgressSink
{
    public static readonly NullProgressSink Instance = new();
    public void Report(string line) { }
}

/// <summary>Counts work units (bytes, tensors, tokens) and formats "i/n, rate, ETA" lines.</summary>
public sealed class ProgressMeter(long total)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public long Total { get; } = total;
    public TimeSpan Elapsed => _clock.Elapsed;

    public string Describe(long done, string unit = "B")
    {
        var seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        var rate = done / seconds;
        var eta = rate > 0 && Total > done ? TimeSpan.FromSeconds((Total - done) / rate) : TimeSpan.Zero;
        var pct = Total > 0 ? 100.0 * done / Total : 100.0;
        return $"{pct,5:F1}% {FormatRate(rate, unit)} ETA {eta:hh\\:mm\\:ss}";
    }

    private static string FormatRate(double perSecond, string unit) => perSecond switch
    {
        >= 1e9 => $"{perSecond / 1e9:F2} G{unit}/s",
        >= 1e6 => $"{perSecond / 1e6:F2} M{unit}/s",
        >= 1e3 => $"{perSecond / 1e3:F2} k{unit}/s",
        _ => $"{perSecond:F1} {unit}/s",
    };
}
