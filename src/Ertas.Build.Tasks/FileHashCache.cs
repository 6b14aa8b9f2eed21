using System.Security.Cryptography;
using System.Text.Json;
using Ertas.Core;

namespace Ertas.Build.Tasks;

/// <summary>
/// SHA-256 of files, remembered by (full path, size, last write time) in a JSON file under obj/, so that a no-op build
/// does not re-read a 14 GB base model. A touched file whose bytes did not change is re-hashed and gives the same hash:
/// keys depend on contents only, timestamps only decide what must be re-read.
/// </summary>
public sealed class FileHashCache
{
    private sealed record Entry(long Size, long Ticks, string Sha256);

    private readonly string _cacheFile;
    private readonly Dictionary<string, Entry> _entries;
    private bool _dirty;

    private FileHashCache(string cacheFile, Dictionary<string, Entry> entries)
    {
        _cacheFile = cacheFile;
        _entries = entries;
    }

    public static FileHashCache Open(string cacheFile)
    {
        Dictionary<string, Entry>? entries = null;
        try
        {
            if (File.Exists(cacheFile))
                entries = JsonSerializer.Deserialize<Dictionary<string, Entry>>(File.ReadAllBytes(cacheFile));
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            // A damaged cache only costs re-hashing.
        }
        return new FileHashCache(cacheFile, entries ?? new Dictionary<string, Entry>(StringComparer.Ordinal));
    }

    public string Sha256(string path, CancellationToken cancellationToken = default)
    {
        var full = Path.GetFullPath(path);
        var info = new FileInfo(full);
        if (!info.Exists)
            throw new ErtasException(ErrorCode.FileNotFound, "input file does not exist", full);
        if (_entries.TryGetValue(full, out var entry) && entry.Size == info.Length && entry.Ticks == info.LastWriteTimeUtc.Ticks)
            return entry.Sha256;
        string hash;
        using (var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan))
            hash = Convert.ToHexStringLower(SHA256.HashDataAsync(stream, cancellationToken).AsTask().GetAwaiter().GetResult());
        _entries[full] = new Entry(info.Length, info.LastWriteTimeUtc.Ticks, hash);
        _dirty = true;
        return hash;
    }

    public void Save()
    {
        if (!_dirty)
            return;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(_cacheFile))!);
        var ordered = new SortedDictionary<string, Entry>(_entries, StringComparer.Ordinal);
        AtomicFile.Write(_cacheFile, stream => JsonSerializer.Serialize(stream, ordered));
        _dirty = false;
    }
}
