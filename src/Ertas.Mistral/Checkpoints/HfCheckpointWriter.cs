using System.Text.Json;
using Ertas.Core;

namespace Ertas.Mistral.Checkpoints;

/// <summary>
/// Writes a Hugging Face checkpoint folder that <see cref="HfCheckpoint"/> and transformers both load:
/// <c>model.safetensors</c>, or <c>model-0000i-of-0000n.safetensors</c> shards plus
/// <c>model.safetensors.index.json</c> when the tensors exceed one shard, then <c>config.json</c>.
/// Streams one tensor at a time; every file is written atomically. The tensor set must match the config exactly,
/// so nothing this writes is later refused by the reader.
/// </summary>
public static class HfCheckpointWriter
{
    /// <summary>transformers refuses safetensors files whose metadata lacks a known "format".</summary>
    private static readonly IReadOnlyDictionary<string, string> ShardMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    public static void Write(string folder, MistralConfig config, IEnumerable<SafeTensorEntry> tensors, long maxShardBytes = long.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var full = Path.GetFullPath(folder);
        config.Validate(Path.Combine(full, CheckpointLayout.ConfigFileName));
        var entries = tensors.ToList();
        var duplicate = entries.GroupBy(e => e.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ErtasException(ErrorCode.CheckpointDuplicateTensor, $"tensor '{duplicate.Key}' is given twice", full);
        CheckpointLayout.Verify(config, entries.ToDictionary(e => e.Name, e => e.Shape, StringComparer.Ordinal), full);

        Directory.CreateDirectory(full);
        var shards = PlanShards(entries, maxShardBytes);
        var written = new HashSet<string>(StringComparer.Ordinal);
        if (shards.Count == 1)
        {
            SafeTensorsWriter.Write(Path.Combine(full, CheckpointLayout.SingleFileName), shards[0], ShardMetadata);
            written.Add(CheckpointLayout.SingleFileName);
        }
        else
        {
            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (var i = 0; i < shards.Count; i++)
            {
                var name = CheckpointLayout.ShardFileName(i + 1, shards.Count);
                SafeTensorsWriter.Write(Path.Combine(full, name), shards[i], ShardMetadata);
                written.Add(name);
                foreach (var entry in shards[i])
                    weightMap.Add(entry.Name, name);
            }
            // The index goes last: its presence is what makes a reader look for the shards.
            AtomicFile.WriteAllText(Path.Combine(full, CheckpointLayout.IndexFileName), IndexJson(entries.Sum(e => e.ByteLength), weightMap));
            written.Add(CheckpointLayout.IndexFileName);
        }
        RemoveStaleWeights(full, written);
        AtomicFile.WriteAllText(Path.Combine(full, CheckpointLayout.ConfigFileName), config.ToJson() + "\n");
    }

    /// <summary>Greedy, in entry order, like transformers: a new shard starts when the next tensor would overflow.</summary>
    private static List<List<SafeTensorEntry>> PlanShards(List<SafeTensorEntry> entries, long maxShardBytes)
    {
        var shards = new List<List<SafeTensorEntry>> { new() };
        long size = 0;
        foreach (var entry in entries)
        {
            if (shards[^1].Count > 0 && size + entry.ByteLength > maxShardBytes)
            {
                shards.Add([]);
                size = 0;
            }
            shards[^1].Add(entry);
            size += entry.ByteLength;
        }
        return shards;
    }

    private static string IndexJson(long totalSize, SortedDictionary<string, string> weightMap)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, shard) in weightMap)
                json.WriteString(name, shard);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    /// <summary>
    /// A previous save with a different shard count would otherwise leave an index or shards that make the folder
    /// ambiguous (an old index wins over a new single file). Only names this writer itself produces are removed.
    /// </summary>
    private static void RemoveStaleWeights(string folder, HashSet<string> written)
    {
        var candidates = Directory.EnumerateFiles(folder, "model-*-of-*.safetensors")
            .Append(Path.Combine(folder, CheckpointLayout.SingleFileName))
            .Append(Path.Combine(folder, CheckpointLayout.IndexFileName));
        foreach (var path in candidates)
        {
            var name = Path.GetFileName(path);
            if (!written.Contains(name) && File.Exists(path))
                File.Delete(path);
        }
    }
}
