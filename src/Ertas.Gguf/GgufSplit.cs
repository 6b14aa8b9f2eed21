using System.Text.RegularExpressions;
using Ertas.Core;

namespace Ertas.Gguf;

/// <summary>
/// llama.cpp's split GGUF (what <c>llama-gguf-split</c> writes): <c>NAME-00001-of-0000N.gguf</c>, each shard a complete
/// GGUF holding consecutive tensors, the first with all the metadata, every one with <c>split.no</c> (0-based),
/// <c>split.count</c> and <c>split.tensors.count</c> (all shards). llama.cpp loads the set from its first shard. Split
/// exists because GitHub refuses release assets over 2 GiB and a 7B Q4_K_M is 4.4 GB; merge gives the original bytes
/// back (for files our writer wrote), which Ollama needs, since it cannot import split GGUFs.
/// </summary>
public static partial class GgufSplit
{
    /// <summary>Under GitHub's 2 GiB asset limit with room for the first shard's metadata.</summary>
    public const long DefaultMaxShardBytes = 2_000_000_000;

    public static string ShardPath(string prefix, int index, int count) => $"{prefix}-{index + 1:D5}-of-{count:D5}.gguf";

    /// <summary>Splits <paramref name="input"/> into shards whose tensor data stays under <paramref name="maxShardBytes"/>
    /// (a larger single tensor gets a shard of its own); returns the shard paths in order.</summary>
    public static IReadOnlyList<string> Split(string input, string outputPrefix, long maxShardBytes = DefaultMaxShardBytes,
        bool overwrite = false, IProgressSink? progress = null, CancellationToken ct = default)
    {
        if (maxShardBytes <= 0)
            throw new ErtasException(ErrorCode.InvalidArgument, $"the shard size must be positive, got {maxShardBytes}");
        using var reader = new GgufReader(input);
        if (reader.ContainsKey(Keys.Split.Count))
            throw new ErtasException(ErrorCode.InvalidArgument, "this GGUF is already a shard of a split model; merge it first", input);
        var shards = new List<List<GgufTensorInfo>> { new() };
        long used = 0;
        foreach (var tensor in reader.Tensors)
        {
            var bytes = GgufWriter.AlignUp(tensor.ByteSize, reader.Alignment);
            if (shards[^1].Count > 0 && used + bytes > maxShardBytes)
            {
                shards.Add([]);
                used = 0;
            }
            shards[^1].Add(tensor);
            used += bytes;
        }
        if (shards.Count > ushort.MaxValue)
            throw new ErtasException(ErrorCode.InvalidArgument, $"{shards.Count} shards is more than the format's {ushort.MaxValue}");
        var paths = new List<string>();
        for (var i = 0; i < shards.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var path = ShardPath(outputPrefix, i, shards.Count);
            if (File.Exists(path) && !overwrite)
                throw new ErtasException(ErrorCode.OutputExists, $"'{path}' exists; pass --force to overwrite it", path);
            AtomicFile.Write(path, stream =>
            {
                var writer = new GgufWriter(stream);
                // The original metadata first, in its order, so a merge can give it back as it was; the split keys after.
                foreach (var kv in reader.Metadata)
                    if (i == 0 || kv.Key == Keys.General.Alignment)
                        writer.AddKeyValue(kv);
                writer.AddUInt16(Keys.Split.No, (ushort)i);
                writer.AddUInt16(Keys.Split.Count, (ushort)shards.Count);
                writer.AddInt32(Keys.Split.TensorsCount, reader.Tensors.Count);
                foreach (var t in shards[i])
                    writer.AddTensorInfo(t.Name, t.Type, t.Shape);
                writer.WriteMetadata();
                writer.WriteTensorInfos();
                foreach (var t in shards[i])
                    writer.WriteTensorData(t.Name, reader.GetTensorBytes(t));
                writer.Finish();
            });
            progress?.Advance($"split: wrote {path} ({shards[i].Count} tensors, {new FileInfo(path).Length / 1e6:F1} MB)", i + 1, shards.Count);
            paths.Add(path);
        }
        return paths;
    }

    /// <summary>The shards of the split model whose first shard is <paramref name="firstShard"/>, checked complete.</summary>
    public static IReadOnlyList<string> Shards(string firstShard)
    {
        var match = ShardName().Match(Path.GetFileName(firstShard));
        if (!match.Success || match.Groups["no"].Value != "00001")
            throw new ErtasException(ErrorCode.InvalidArgument,
                "give the first shard of a split GGUF, named NAME-00001-of-0000N.gguf", firstShard);
        var count = int.Parse(match.Groups["count"].Value, System.Globalization.CultureInfo.InvariantCulture);
        var prefix = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(firstShard))!, match.Groups["prefix"].Value);
        var paths = Enumerable.Range(0, count).Select(i => ShardPath(prefix, i, count)).ToList();
        foreach (var path in paths)
            if (!File.Exists(path))
                throw new ErtasException(ErrorCode.FileNotFound, $"shard {Path.GetFileName(path)} of {count} is missing", path);
        return paths;
    }

    /// <summary>Joins the shards back into one GGUF: the first shard's metadata without the split keys, every tensor in order.</summary>
    public static void Merge(string firstShard, string output, bool overwrite = false, IProgressSink? progress = null, CancellationToken ct = default)
    {
        if (File.Exists(output) && !overwrite)
            throw new ErtasException(ErrorCode.OutputExists, $"'{output}' exists; pass --force to overwrite it", output);
        var paths = Shards(firstShard);
        var readers = new List<GgufReader>();
        try
        {
            foreach (var path in paths)
                readers.Add(new GgufReader(path));
            for (var i = 0; i < readers.Count; i++)
            {
                var r = readers[i];
                if (!r.ContainsKey(Keys.Split.No) || r.GetUInt16(Keys.Split.No) != i || r.GetUInt16(Keys.Split.Count) != readers.Count)
                    throw new ErtasException(ErrorCode.GgufCorrupt, $"shard {i + 1} of {readers.Count} does not say it is (split.no / split.count)", r.Path);
            }
            var total = readers[0].GetInt32(Keys.Split.TensorsCount);
            var found = readers.Sum(r => r.Tensors.Count);
            if (found != total)
                throw new ErtasException(ErrorCode.GgufCorrupt, $"the shards hold {found} tensors but split.tensors.count says {total}", firstShard);
            AtomicFile.Write(output, stream =>
            {
                var writer = new GgufWriter(stream);
                foreach (var kv in readers[0].Metadata)
                    if (!kv.Key.StartsWith("split.", StringComparison.Ordinal))
                        writer.AddKeyValue(kv);
                foreach (var r in readers)
                    foreach (var t in r.Tensors)
                        writer.AddTensorInfo(t.Name, t.Type, t.Shape);
                writer.WriteMetadata();
                writer.WriteTensorInfos();
                for (var i = 0; i < readers.Count; i++)
                {
                    ct.ThrowIfCancellationRequested();
                    foreach (var t in readers[i].Tensors)
                        writer.WriteTensorData(t.Name, readers[i].GetTensorBytes(t));
                    progress?.Advance($"merge: shard {i + 1}/{readers.Count} ({readers[i].Tensors.Count} tensors)", i + 1, readers.Count);
                }
                writer.Finish();
            });
        }
        finally
        {
            foreach (var r in readers)
                r.Dispose();
        }
    }

    [GeneratedRegex(@"^(?<prefix>.+)-(?<no>\d{5})-of-(?<count>\d{5})\.gguf$")]
    private static partial Regex ShardName();
}
