using System.Diagnostics;
using Ertas.Core;

namespace Ertas.Cli.Commands;

/// <summary>The result of a child process: its exit code and every line it wrote (stdout and stderr, in order).</summary>
internal sealed record ChildResult(int ExitCode, IReadOnlyList<string> Lines)
{
    public string Text => string.Join('\n', Lines);
}

/// <summary>dotnet and git as child processes, their output echoed as it comes (a long build is a live log).</summary>
internal static class ChildProcess
{
    public static ChildResult Run(string fileName, IEnumerable<string> arguments, string workingDirectory, TextWriter? echo,
        CancellationToken ct, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var info = StartInfo(fileName, arguments, workingDirectory);
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
            info.Environment[name] = value;

        var lines = new List<string>();
        var gate = new Lock();
        void Take(string? line)
        {
            if (line is null)
                return;
            lock (gate)
            {
                lines.Add(line);
                echo?.WriteLine(line);
            }
        }

        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            throw new ErtasException(ErrorCode.FileNotFound, $"could not start '{fileName}': {e.Message}; is it installed and on PATH?");
        }

        using (process)
        {
            process.OutputDataReceived += (_, e) => Take(e.Data);
            process.ErrorDataReceived += (_, e) => Take(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            using (ct.Register(() => { try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } }))
                process.WaitForExit();
            ct.ThrowIfCancellationRequested();
            lock (gate)
                return new ChildResult(process.ExitCode, [.. lines]);
        }
    }

    /// <summary>A command's standard output exactly (a file's bytes from git show, JSON from msbuild), or null with
    /// <paramref name="error"/> set when it fails.</summary>
    public static string? Capture(string fileName, IEnumerable<string> arguments, string workingDirectory, CancellationToken ct, out string error)
    {
        var info = StartInfo(fileName, arguments, workingDirectory);
        using var process = Process.Start(info) ?? throw new ErtasException(ErrorCode.FileNotFound, $"could not start '{fileName}'");
        var stderr = process.StandardError.ReadToEndAsync(ct);
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        using (ct.Register(() => { try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } }))
            process.WaitForExit();
        ct.ThrowIfCancellationRequested();
        error = stderr.Result.Trim();
        return process.ExitCode == 0 ? stdout.Result : null;
    }

    private static ProcessStartInfo StartInfo(string fileName, IEnumerable<string> arguments, string workingDirectory)
    {
        var info = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
            info.ArgumentList.Add(argument);
        return info;
    }

    /// <summary>git's standard output, failing with git's own words when it fails.</summary>
    public static string Git(string repository, CancellationToken ct, params string[] arguments) =>
        Capture("git", arguments, repository, ct, out var error)
        ?? throw new ErtasException(ErrorCode.InvalidArgument, $"git {string.Join(' ', arguments)} failed: {error}");
}
