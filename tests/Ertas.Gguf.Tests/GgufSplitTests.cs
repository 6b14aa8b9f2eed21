using Ertas.Core;
using Ertas.TestSupport;

namespace Ertas.Gguf.Tests;

public sealed class GgufSplitTests
{
    private static string TinyF32(TempDir dir)
    {
        var path = dir.File("tiny.gguf");
        var config = TinyModel.Config;
        GgufExporter.Export(config, TinyModel.Weights(config, seed: 3), TinyModel.Vocabulary(), path, GgmlType.F32, new GgufExportOptions { ModelName = "tiny" });
        return path;
    }

    [Fact]
    public void Split_WritesShardsWithTheSplitKeys_AndMergeGivesTheOriginalBytesBack()
    {
        using var dir = new TempDir();
        var original = TinyF32(dir);
        using (var reader = new GgufReader(original))
        {
            var largest = reader.Tensors.Max(t => t.ByteSize);
            var shards = GgufSplit.Split(original, dir.File("tiny"), maxShardBytes: largest);
            Assert.True(shards.Count >= 3, $"{shards.Count} shards");
            Assert.Equal(GgufSplit.ShardPath(dir.File("tiny"), 0, shards.Count), shards[0]);
            Assert.EndsWith($"tiny-00001-of-{shards.Count:D5}.gguf", shards[0]);
            var tensors = 0;
            for (var i = 0; i < shards.Count; i++)
            {
                using var shard = new GgufReader(shards[i]);
                Assert.Equal((ushort)i, shard.GetUInt16("split.no"));
                Assert.Equal((ushort)shards.Count, shard.GetUInt16("split.count"));
                Assert.Equal(reader.Tensors.Count, shard.GetInt32("split.tensors.count"));
                Assert.Equal(i == 0, shard.ContainsKey("general.architecture")); // the metadata lives in the first shard
                tensors += shard.Tensors.Count;
            }
            Assert.Equal(reader.Tensors.Count, tensors);
        }
        var merged = dir.File("merged.gguf");
        GgufSplit.Merge(GgufSplit.ShardPath(dir.File("tiny"), 0, Directory.GetFiles(dir.Path, "tiny-*-of-*.gguf").Length), merged);
        Assert.Equal(File.ReadAllBytes(original), File.ReadAllBytes(merged));
    }

    [Fact]
    public void LlamaCpp_LoadsTheSplitModelFromItsFirstShard_AndGeneratesTheSameIds()
    {
        using var dir = new TempDir();
        var original = TinyF32(dir);
        long largest;
        using (var reader = new GgufReader(original))
            largest = reader.Tensors.Max(t => t.ByteSize);
        var shards = GgufSplit.Split(original, dir.File("split"), maxShardBytes: largest * 2);
        Assert.True(shards.Count >= 3);
        int[] prompt = [1, 20, 30, 40, 50];
        using var whole = LlamaCppModel.Load(original, contextSize: 64);
        using var split = LlamaCppModel.Load(shards[0], contextSize: 64);
        var (expected, expectedLogits) = whole.Greedy(prompt, 8, stopId: null);
        var (actual, actualLogits) = split.Greedy(prompt, 8, stopId: null);
        Assert.Equal(expected, actual);
        Assert.Equal(expectedLogits[^1], actualLogits[^1]);
    }

    [Fact]
    public void Merge_OfAnIncompleteSet_NamesTheMissingShard()
    {
        using var dir = new TempDir();
        var original = TinyF32(dir);
        long largest;
        using (var reader = new GgufReader(original))
            largest = reader.Tensors.Max(t => t.ByteSize);
        var shards = GgufSplit.Split(original, dir.File("tiny"), maxShardBytes: largest * 3);
        File.Delete(shards[^1]);
        var e = Assert.Throws<ErtasException>(() => GgufSplit.Merge(shards[0], dir.File("merged.gguf")));
        Assert.Equal(ErrorCode.FileNotFound, e.Code);
        Assert.Contains($"shard {Path.GetFileName(shards[^1])} of {shards.Count} is missing", e.Message);
        Assert.Equal(ErrorCode.InvalidArgument, Assert.Throws<ErtasException>(() => GgufSplit.Merge(shards[1], dir.File("x.gguf"))).Code);
    }
}
