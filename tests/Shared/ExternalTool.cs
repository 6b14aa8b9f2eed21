using System.Diagnostics;
using System.Text;

namespace Ertas.TestSupport;

/// <summary>Tools outside .NET that tests run as judges (node scripts, npm): found on PATH, run to completion.</summary>
public static class ExternalTool
{
    /// <summary>The first <paramref name="name"/> on PATH, or null.</summary>
    public static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);

    /// <summary>Runs <paramref name="file"/> and returns its exit code with stdout then stderr (UTF-8, trimmed); kills it and
    /// throws <see cref="TimeoutException"/> after <paramref name="timeoutSeconds"/>.</summary>
    public static (int Exit, string Output) Run(string file, string workingDirectory, int timeoutSeconds, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
            start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(file)} timed out after {timeoutSeconds} s");
        }
        return (process.ExitCode, (stdout.Result + stderr.Result).Trim());
    }
}
