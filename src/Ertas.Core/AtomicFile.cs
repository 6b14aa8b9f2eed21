namespace Ertas.Core;

/// <summary>
/// Writes go to a temporary sibling and are renamed into place only after a successful flush, so an
/// interrupted or failed run never leaves a file that a later build would trust.
/// </summary>
public static class AtomicFile
{
    /// <summary>Runs <paramref name="write"/> against a temp file beside <paramref name="path"/>, then renames it.</summary>
    public static void Write(string path, Action<FileStream> write)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        SweepOrphans(dir);
        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}{TemporarySuffix}");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="bytes"/> only when the file does not already hold exactly them, so its timestamp moves
    /// only with its contents (MSBuild's Inputs/Outputs compare timestamps). True when it wrote.
    /// </summary>
    public static bool WriteIfChanged(string path, ReadOnlySpan<byte> bytes)
    {
        if (File.Exists(path) && File.ReadAllBytes(path).AsSpan().SequenceEqual(bytes))
            return false;
        WriteAllBytes(path, bytes);
        return true;
    }

    /// <inheritdoc cref="WriteIfChanged(string, ReadOnlySpan{byte})"/>
    public static bool WriteAllTextIfChanged(string path, string text) => WriteIfChanged(path, new System.Text.UTF8Encoding(false).GetBytes(text));

    /// <summary>Temporary files a killed writer left beside <paramref name="path"/> (a kill skips the cleanup above).</summary>
    public static IEnumerable<string> LeftoverTemporaries(string path)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        return Directory.Exists(dir) ? Directory.EnumerateFiles(dir, $".{Path.GetFileName(full)}.*{TemporarySuffix}") : [];
    }

    private const string TemporarySuffix = ".tmp";

    /// <summary>
    /// Deletes the temporary files in <paramref name="directory"/> whose writing process is gone: a SIGKILL (or a
    /// power cut) skips the cleanup in <see cref="Write"/> and leaves up to a whole output's size behind. Files of a
    /// live process (this one's other writers, or a concurrent build) are left alone; so is anything not named as
    /// <see cref="Write"/> names its temporaries. Returns the files deleted.
    /// </summary>
    public static IReadOnlyList<string> SweepOrphans(string directory)
    {
        if (!Directory.Exists(directory))
            return [];
        var removed = new List<string>();
        foreach (var file in Directory.EnumerateFiles(directory, "." + "*" + TemporarySuffix))
        {
            if (WriterOf(Path.GetFileName(file)) is not { } pid || pid == Environment.ProcessId || IsRunning(pid))
                continue;
            TryDelete(file);
            if (!File.Exists(file))
                removed.Add(file);
        }
        return removed;
    }

    /// <summary>The process id in <c>.NAME.PID.GUID.tmp</c>; null for any other name.</summary>
    private static int? WriterOf(string name)
    {
        var parts = name[..^TemporarySuffix.Length].Split('.');
        if (parts.Length < 4 || parts[0].Length != 0)
            return null;
        var guid = parts[^1];
        var pid = parts[^2];
        return guid.Length == 32 && guid.All(char.IsAsciiHexDigit)
               && int.TryParse(pid, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id) && id > 0
            ? id
            : null;
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true); w.Write(text); });

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
