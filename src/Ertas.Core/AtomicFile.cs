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
