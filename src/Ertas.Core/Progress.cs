using System.Diagnostics;

namespace Ertas.Core;

/// <summary>Long work reports here: the CLI prints it, the MSBuild task streams it into the build log.</summary>
public interface IProgressSink
{
    void Report(string line);

    /// <summary>
    /// One unit of counted work done (a training step, a tensor, an eval case), <paramref name="line"/> describing it
    /// with its rate and ETA. A terminal draws these as one live line; logs, pipes and CI get the line itself.
    /// </summary>
    void Advance(string line, long done, long total) => Report(line);
}

public sealed class TextProgressSink(TextWriter writer) : IProgressSink
{
    public void Report(string line) => writer.WriteLine(line);
}

/// <summary>
/// The live form for an interactive terminal: <see cref="IProgressSink.Advance"/> redraws one line in place (a bar,
/// the percentage, then the step's own line with its rate and ETA, cut to the terminal's width) instead of
/// scrolling a line per step; a plain <see cref="Report"/> line ends the live line first, and the last step keeps it.
/// </summary>
public sealed class TerminalProgressSink(TextWriter writer, int width) : IProgressSink
{
    private const int BarWidth = 20;
    private bool _live;

    public void Report(string line)
    {
        EndLiveLine();
        writer.WriteLine(line);
    }

    public void Advance(string line, long done, long total)
    {
        var fraction = total > 0 ? Math.Clamp((double)done / total, 0, 1) : 1;
        var filled = (int)Math.Round(fraction * BarWidth);
        var text = $"[{new string('#', filled)}{new string('.', BarWidth - filled)}] {fraction * 100,5:F1}% {line}";
        var room = Math.Max(width - 1, 20);
        text = text.Length > room ? text[..(room - 1)] + "…" : text.PadRight(room);
        writer.Write('\r');
        writer.Write(text);
        _live = true;
        if (done >= total)
            EndLiveLine();
        writer.Flush();
    }

    private void EndLiveLine()
    {
        if (!_live) return;
        writer.WriteLine();
        _live = false;
    }
}

public static class ProgressSinks
{
    /// <summary>
    /// The live line when <paramref name="writer"/> is the process's own stderr and that is a terminal outside CI;
    /// otherwise a line per step, which is what logs, pipes, CI and the MSBuild tasks (a child's redirected stderr) need.
    /// </summary>
    public static IProgressSink For(TextWriter writer)
    {
        var terminal = ReferenceEquals(writer, Console.Error) && !Console.IsErrorRedirected
            && !ContinuousIntegration.IsDetected()
            && Environment.GetEnvironmentVariable("TERM") is not "dumb";
        if (!terminal)
            return new TextProgressSink(writer);
        int width;
        try { width = Console.WindowWidth; }
        catch (IOException) { width = 100; }
        return new TerminalProgressSink(writer, width > 0 ? width : 100);
    }
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

/// <summary>Whether this process runs on a CI service: CI=true (GitHub Actions, GitLab, most runners) or TF_BUILD
/// (Azure Pipelines). CI never accepts eval baselines and never gets the live progress line.</summary>
public static class ContinuousIntegration
{
    public static bool IsDetected() =>
        Environment.GetEnvironmentVariable("CI") is { } ci && (ci.Equals("true", StringComparison.OrdinalIgnoreCase) || ci == "1")
        || string.Equals(Environment.GetEnvironmentVariable("TF_BUILD"), "true", StringComparison.OrdinalIgnoreCase);
}
