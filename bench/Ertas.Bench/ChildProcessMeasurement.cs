using System.Diagnostics;
using System.Globalization;

namespace Ertas.Bench;

/// <summary>One line the child wrote to stderr, with the time since it started.</summary>
public sealed record TimedLine(double Seconds, string Text);

/// <summary>
/// What one child run cost. <see cref="PeakRssKb"/> is the kernel's own high-water mark (ru_maxrss through
/// /usr/bin/time -f %M, which counts every page, anonymous and file-backed, at the moment RSS peaked); the
/// sampled maxima split RSS into anonymous memory (what the process allocated) and file-backed pages (memory-mapped
/// files it touched), sampled from /proc/PID/status every ~20 ms.
/// </summary>
public sealed record ChildRun(
    string Description,
    int ExitCode,
    double WallSeconds,
    long PeakRssKb,
    string PeakRssSource,
    long MaxRssAnonKb,
    long MaxRssFileKb,
    double UserSeconds,
    double SystemSeconds,
    IReadOnlyList<TimedLine> StderrLines)
{
    public double PeakRssMb => PeakRssKb / 1024.0;
    public double MaxRssAnonMb => MaxRssAnonKb / 1024.0;
    public double MaxRssFileMb => MaxRssFileKb / 1024.0;

    /// <summary>Seconds from start to the first stderr line that contains <paramref name="marker"/>, or null.</summary>
    public double? SecondsAt(string marker) => StderrLines.FirstOrDefault(l => l.Text.Contains(marker, StringComparison.Ordinal))?.Seconds;
}

/// <summary>Runs a command as a child process and measures its wall time and peak memory.</summary>
public static class ChildProcessMeasurement
{
    private const string TimeBinary = "/usr/bin/time";
    private static readonly TimeSpan SampleInterval = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(5);

    public static ChildRun Run(string description, string fileName, IReadOnlyList<string> arguments, TextWriter log)
    {
        var useTime = File.Exists(TimeBinary);
        var timeReport = Path.Combine(Path.GetTempPath(), $"ertas-bench-time-{Environment.ProcessId}-{Guid.NewGuid():N}.txt");
        var start = new ProcessStartInfo(useTime ? TimeBinary : fileName)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (useTime)
        {
            // %M: max resident set size in KB, %U/%S: CPU seconds in user and kernel mode.
            foreach (var a in new[] { "-f", "%M %U %S", "-o", timeReport, fileName })
                start.ArgumentList.Add(a);
        }
        foreach (var a in arguments)
            start.ArgumentList.Add(a);

        log.WriteLine($"[{description}] {fileName} {string.Join(' ', arguments)}");
        var lines = new List<TimedLine>();
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
        var lastProgress = TimeSpan.Zero;
        string? pendingLine = null;
        var sampler = new RssSampler();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (lines)
            {
                lines.Add(new TimedLine(clock.Elapsed.TotalSeconds, e.Data));
                pendingLine = e.Data;
            }
        };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (lines) lines.Add(new TimedLine(clock.Elapsed.TotalSeconds, "stdout: " + e.Data));
        };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();

        var measuredPid = useTime ? 0 : process.Id;
        while (!process.WaitForExit(SampleInterval))
        {
            // /usr/bin/time forks the real command; sample that child, not time itself.
            if (measuredPid == 0)
                measuredPid = FirstChild(process.Id);
            if (measuredPid != 0)
                sampler.Sample(measuredPid);
            if (clock.Elapsed - lastProgress >= ProgressInterval)
            {
                lastProgress = clock.Elapsed;
                string? line;
                lock (lines) { line = pendingLine; pendingLine = null; }
                log.WriteLine($"  [{description} {clock.Elapsed.TotalSeconds,6:F1} s, RSS anon {sampler.LastAnonKb / 1024.0:F0} MB, file {sampler.LastFileKb / 1024.0:F0} MB] {line ?? ""}");
            }
        }
        process.WaitForExit(); // drains the redirected streams
        var wall = clock.Elapsed.TotalSeconds;

        long peakKb = sampler.MaxHwmKb;
        var source = "sampled VmHWM";
        double user = double.NaN, system = double.NaN;
        if (useTime && File.Exists(timeReport))
        {
            // time writes "Command exited with non-zero status N" before the format line on failure.
            var fields = File.ReadAllLines(timeReport).Last(l => l.Length > 0).Split(' ');
            peakKb = long.Parse(fields[0], CultureInfo.InvariantCulture);
            user = double.Parse(fields[1], CultureInfo.InvariantCulture);
            system = double.Parse(fields[2], CultureInfo.InvariantCulture);
            source = "/usr/bin/time %M";
            File.Delete(timeReport);
        }
        var run = new ChildRun(description, process.ExitCode, wall, peakKb, source, sampler.MaxAnonKb, sampler.MaxFileKb, user, system, lines.ToArray());
        log.WriteLine($"[{description}] exit {run.ExitCode}, {wall:F1} s wall, peak RSS {run.PeakRssMb:F0} MB ({source}), " +
                      $"max anon {run.MaxRssAnonMb:F0} MB, max file-backed {run.MaxRssFileMb:F0} MB, CPU user {user:F1} s sys {system:F1} s");
        if (run.ExitCode != 0)
        {
            foreach (var line in lines.TakeLast(80))
                log.WriteLine("    " + line.Text);
            throw new InvalidOperationException($"{description} failed with exit code {run.ExitCode}");
        }
        return run;
    }

    private static int FirstChild(int pid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/task/{pid}/children").Trim();
            return text.Length == 0 ? 0 : int.Parse(text.Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }

    /// <summary>Maxima of the /proc/PID/status memory lines over the run.</summary>
    private sealed class RssSampler
    {
        public long MaxHwmKb { get; private set; }
        public long MaxAnonKb { get; private set; }
        public long MaxFileKb { get; private set; }
        public long LastAnonKb { get; private set; }
        public long LastFileKb { get; private set; }

        public void Sample(int pid)
        {
            string[] status;
            try { status = File.ReadAllLines($"/proc/{pid}/status"); }
            catch (IOException) { return; } // exited between the check and the read
            catch (UnauthorizedAccessException) { return; }
            foreach (var line in status)
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) MaxHwmKb = Math.Max(MaxHwmKb, Kb(line));
                else if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) { LastAnonKb = Kb(line); MaxAnonKb = Math.Max(MaxAnonKb, LastAnonKb); }
                else if (line.StartsWith("RssFile:", StringComparison.Ordinal)) { LastFileKb = Kb(line); MaxFileKb = Math.Max(MaxFileKb, LastFileKb); }
            }
        }

        private static long Kb(string line) =>
            long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }
}
