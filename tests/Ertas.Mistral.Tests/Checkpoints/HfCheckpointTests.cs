using System.Text.Json;
using Ertas.Core;
using Ertas.Mistral.Checkpoints;

namespace Ertas.Mistral.Tests.Checkpoints;

public class HfCheckpointTests
{
    /// <summary>A 2-layer Mistral with every dimension distinct, so a swapped shape cannot pass by accident.</summary>
    private static readonly MistralConfig Tiny = new()
    {
        HiddenSize = 8,
        IntermediateSize = 24,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        VocabSize = 40,
        MaxPositionEmbeddings = 64,
    };

    /// <summary>Deterministic values per tensor: matrices in BF16, norms in F32, embeddings in F16 (a real mix).</summary>
    private static float[] ValuesOf(string name, long count)
    {
        var seed = name.Aggregate(17, (h, c) => h * 31 + c);
        var random = new Random(seed);
        return Enumerable.Range(0, (int)count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static DType DTypeOf(string name, long[] shape) =>
        shape.Length == 1 ? DType.F32 : name.Contains("embed") ? DType.F16 : DType.BF16;

    private static SafeTensorEntry EntryFor(string name, long[] shape, DType? dtype = null)
    {
        var type = dtype ?? DTypeOf(name, shape);
        var values = ValuesOf(name, shape.Aggregate(1L, (a, b) => a * b));
        return new SafeTensorEntry(name, type, shape, bytes =>
        {
            switch (type)
            {
                case DType.F32: FloatConversions.SingleToSingleBytes(values, bytes); break;
                case DType.F16: FloatConversions.SingleToHalfBytes(values, bytes); break;
                case DType.BF16: FloatConversions.SingleToBFloat16Bytes(values, bytes); break;
            }
        });
    }

    private static List<SafeTensorEntry> TinyEntries(MistralConfig? config = null) =>
        (config ?? Tiny).ExpectedTensors().Select(t => EntryFor(t.Name, t.Shape)).ToList();

    private static float[] StoredValues(SafeTensorEntry entry)
    {
        var bytes = new byte[entry.ByteLength];
        entry.Fill(bytes);
        var result = new float[entry.ByteLength / entry.DType.Size()];
        switch (entry.DType)
        {
            case DType.F32: FloatConversions.SingleBytesToSingle(bytes, result); break;
            case DType.F16: FloatConversions.HalfBytesToSingle(bytes, result); break;
            case DType.BF16: FloatConversions.BFloat16BytesToSingle(bytes, result); break;
        }
        return result;
    }

    private static string[] FileNames(string folder, string pattern = "*") =>
        Directory.EnumerateFiles(folder, pattern).Select(p => Path.GetFileName(p)).Order(StringComparer.Ordinal).ToArray();

    private static void AssertReadsBack(HfCheckpoint checkpoint, List<SafeTensorEntry> entries)
    {
        Assert.Equal(Tiny.ExpectedTensors().Select(t => t.Name), checkpoint.TensorNames);
        foreach (var entry in entries)
        {
            Assert.Equal(entry.Shape, checkpoint.GetShape(entry.Name));
            Assert.Equal(entry.DType, checkpoint.GetDType(entry.Name));
            var values = new float[entry.Shape.Aggregate(1L, (a, b) => a * b)];
            checkpoint.ReadFloat32(entry.Name, values);
            Assert.Equal(StoredValues(entry), values);
            var raw = new byte[entry.ByteLength];
            checkpoint.CopyRaw(entry.Name, raw);
            var expectedRaw = new byte[entry.ByteLength];
            entry.Fill(expectedRaw);
            Assert.Equal(expectedRaw, raw);
        }
    }

    [Fact]
    public void WriteThenOpen_SingleFile_ReadsEveryTensorBackInHfOrder()
    {
        using var dir = new TempDirectory();
        var entries = TinyEntries();
        HfCheckpointWriter.Write(dir.Path, Tiny, entries);

        Assert.Equal(["config.json", "model.safetensors"], FileNames(dir.Path));
        using var checkpoint = HfCheckpoint.Open(dir.Path);
        Assert.Equal(Tiny, checkpoint.Config with { Architectures = Tiny.Architectures });
        Assert.Equal(dir.Path, checkpoint.Folder);
        Assert.Null(checkpoint.TokenizerPath);
        Assert.Single(checkpoint.WeightFiles);
        AssertReadsBack(checkpoint, entries);
        using var shard = SafeTensorsFile.Open(dir.File("model.safetensors"));
        Assert.Equal("pt", shard.Metadata["format"]);
    }

    [Fact]
    public void WriteThenOpen_Sharded_WritesHfShardNamesAndIndexAndReadsTheSameTensors()
    {
        using var dir = new TempDirectory();
        var entries = TinyEntries();
        HfCheckpointWriter.Write(dir.Path, Tiny, entries, maxShardBytes: 1000);

        var shards = FileNames(dir.Path, "model-*.safetensors");
        Assert.True(shards.Length > 2, $"expected several shards, got {shards.Length}");
        Assert.Equal(Enumerable.Range(1, shards.Length).Select(i => $"model-{i:D5}-of-{shards.Length:D5}.safetensors"), shards);
        Assert.False(File.Exists(dir.File("model.safetensors")));

        using (var index = JsonDocument.Parse(File.ReadAllText(dir.File("model.safetensors.index.json"))))
        {
            Assert.Equal(entries.Sum(e => e.ByteLength), index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
            var map = index.RootElement.GetProperty("weight_map").EnumerateObject().ToList();
            Assert.Equal(map.Select(p => p.Name).Order(StringComparer.Ordinal), map.Select(p => p.Name));
            Assert.Equal(entries.Select(e => e.Name).Order(StringComparer.Ordinal), map.Select(p => p.Name));
        }
        foreach (var shard in shards)
        {
            using var file = SafeTensorsFile.Open(dir.File(shard));
            // A shard holds more than one tensor only while they fit; a lone tensor may exceed the limit.
            Assert.True(file.Tensors.Count == 1 || file.Tensors.Values.Sum(t => t.ByteLength) <= 1000);
        }

        using var checkpoint = HfCheckpoint.Open(dir.Path);
        Assert.Equal(shards.Length, checkpoint.WeightFiles.Count);
        AssertReadsBack(checkpoint, entries);
    }

    [Fact]
    public void Write_SameInputsTwice_GivesByteIdenticalFolders()
    {
        using var first = new TempDirectory();
        using var second = new TempDirectory();
        HfCheckpointWriter.Write(first.Path, Tiny, TinyEntries(), maxShardBytes: 1500);
        HfCheckpointWriter.Write(second.Path, Tiny, TinyEntries(), maxShardBytes: 1500);
        var names = FileNames(first.Path);
        Assert.Equal(names, FileNames(second.Path));
        foreach (var name in names)
            Assert.Equal(File.ReadAllBytes(first.File(name)), File.ReadAllBytes(second.File(name)));
    }

    [Fact]
    public void Write_SingleFileOverEarlierShardedSave_RemovesTheStaleIndexAndShards()
    {
        using var dir = new TempDirectory();
        HfCheckpointWriter.Write(dir.Path, Tiny, TinyEntries(), maxShardBytes: 1000);
        File.WriteAllText(dir.File("README.md"), "kept");
        HfCheckpointWriter.Write(dir.Path, Tiny, TinyEntries());
        Assert.Equal(["README.md", "config.json", "model.safetensors"], FileNames(dir.Path));
        using var checkpoint = HfCheckpoint.Open(dir.Path);
        Assert.Single(checkpoint.WeightFiles);
    }

    [Fact]
    public void Open_FolderWithTokenizerModel_ExposesItsPath()
    {
        using var dir = new TempDirectory();
        HfCheckpointWriter.Write(dir.Path, Tiny, TinyEntries());
        File.WriteAllBytes(dir.File("tokenizer.model"), [0x0A, 0x00]);
        using var checkpoint = HfCheckpoint.Open(dir.Path);
        Assert.Equal(dir.File("tokenizer.model"), checkpoint.TokenizerPath);
    }

    [Fact]
    public void Open_CheckpointWithRotaryInvFreqBuffers_IgnoresThem()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("config.json"), Tiny.ToJson());
        var entries = TinyEntries();
        entries.Add(EntryFor("model.layers.0.self_attn.rotary_emb.inv_freq", [1], DType.F32));
        SafeTensorsWriter.Write(dir.File("model.safetensors"), entries);
        using var checkpoint = HfCheckpoint.Open(dir.Path);
        Assert.DoesNotContain("model.layers.0.self_attn.rotary_emb.inv_freq", checkpoint.TensorNames);
    }

    // ---- bad folders: each gives its own code, a message naming the tensors/files, and the path ----

    private static ErtasException OpenFails(string folder, ErrorCode code, params string[] messageParts)
    {
        var error = Assert.Throws<ErtasException>(() => HfCheckpoint.Open(folder).Dispose());
        Assert.True(code == error.Code, $"expected {code}, got {error.Code}: {error.Message}");
        foreach (var part in messageParts)
            Assert.Contains(part, error.Message);
        Assert.NotNull(error.File);
        return error;
    }

    /// <summary>A folder with a valid config.json for <see cref="Tiny"/> and the given tensors in model.safetensors.</summary>
    private static void WriteUnchecked(TempDirectory dir, IReadOnlyList<SafeTensorEntry> entries)
    {
        File.WriteAllText(dir.File("config.json"), Tiny.ToJson());
        SafeTensorsWriter.Write(dir.File("model.safetensors"), entries);
    }

    [Fact]
    public void Open_MissingFolderOrConfigOrWeights_SaysWhichIsMissing()
    {
        using var dir = new TempDirectory();
        OpenFails(dir.File("nope"), ErrorCode.DirectoryNotFound, "does not exist");
        OpenFails(dir.Path, ErrorCode.ConfigMissing, "no config.json");
        File.WriteAllText(dir.File("config.json"), Tiny.ToJson());
        OpenFails(dir.Path, ErrorCode.CheckpointNoWeights, "model.safetensors", "model.safetensors.index.json");
        File.WriteAllBytes(dir.File("pytorch_model.bin"), [0]);
        OpenFails(dir.Path, ErrorCode.CheckpointNoWeights, ".bin");
    }

    [Fact]
    public void Open_MissingTensors_ListsThemAndAnyUnexpectedOnes()
    {
        using var dir = new TempDirectory();
        var entries = TinyEntries().Where(e => !e.Name.StartsWith("model.layers.1.", StringComparison.Ordinal) && e.Name != "lm_head.weight").ToList();
        entries.Add(EntryFor("output.weight", [40, 8]));
        WriteUnchecked(dir, entries);
        var error = OpenFails(dir.Path, ErrorCode.CheckpointMissingTensor,
            "lacks 10 tensor(s)", "'model.layers.1.input_layernorm.weight'", "'lm_head.weight'", "'output.weight'");
        Assert.Equal(dir.Path, error.File);
    }

    [Fact]
    public void Open_UnexpectedTensor_NamesIt()
    {
        using var dir = new TempDirectory();
        var entries = TinyEntries();
        entries.Add(EntryFor("model.layers.2.mlp.up_proj.weight", [24, 8]));
        WriteUnchecked(dir, entries);
        OpenFails(dir.Path, ErrorCode.CheckpointUnexpectedTensor, "'model.layers.2.mlp.up_proj.weight'", "does not imply");
    }

    [Fact]
    public void Open_ShapeMismatch_GivesBothShapes()
    {
        using var dir = new TempDirectory();
        var entries = TinyEntries().Select(e => e.Name == "model.layers.0.self_attn.k_proj.weight" ? EntryFor(e.Name, [16, 8]) : e).ToList();
        WriteUnchecked(dir, entries);
        OpenFails(dir.Path, ErrorCode.CheckpointShapeMismatch, "'model.layers.0.self_attn.k_proj.weight' should be [4, 8] per config.json but is [16, 8]");
    }

    [Fact]
    public void Open_CorruptShard_ReportsTheSafetensorsErrorWithTheShardPath()
    {
        using var dir = new TempDirectory();
        HfCheckpointWriter.Write(dir.Path, Tiny, TinyEntries());
        var path = dir.File("model.safetensors");
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..^10]);
        var error = OpenFails(dir.Path, ErrorCode.SafetensorsTruncated, "truncated");
        Assert.Equal(path, error.File);
    }

    /// <summary>A valid sharded checkpoint, then <paramref name="mangle"/> edits its files.</summary>
    private static TempDirectory Sharded(Action<TempDirectory, JsonDocument> mangle)
    {
        var dir = new TempDirectory();
        HfCheckpointWriter.Write(dir.Path, Tiny, TinyEntries(), maxShardBytes: 1000);
        using var index = JsonDocument.Parse(File.ReadAllText(dir.File("model.safetensors.index.json")));
        mangle(dir, index);
        return dir;
    }

    private static string IndexWith(JsonDocument index, Func<string, string, (string, string)?> edit)
    {
        var map = new Dictionary<string, string>();
        foreach (var p in index.RootElement.GetProperty("weight_map").EnumerateObject())
            if (edit(p.Name, p.Value.GetString()!) is { } kept)
                map[kept.Item1] = kept.Item2;
        return JsonSerializer.Serialize(new { metadata = new { total_size = 1 }, weight_map = map });
    }

    [Fact]
    public void Open_IndexThatIsNotJsonOrHasNoWeightMap_IsIndexInvalid()
    {
        using (var dir = Sharded((d, _) => File.WriteAllText(d.File("model.safetensors.index.json"), "{\"weight_map\": {")))
            OpenFails(dir.Path, ErrorCode.SafetensorsIndexInvalid, "not valid JSON");
        using (var dir = Sharded((d, _) => File.WriteAllText(d.File("model.safetensors.index.json"), "{\"metadata\": {}}")))
            OpenFails(dir.Path, ErrorCode.SafetensorsIndexInvalid, "weight_map");
        using (var dir = Sharded((d, _) => File.WriteAllText(d.File("model.safetensors.index.json"), "{\"weight_map\": {\"a\": 3}}")))
            OpenFails(dir.Path, ErrorCode.SafetensorsIndexInvalid, "'a' must name a shard file");
        using (var dir = Sharded((d, i) => File.WriteAllText(d.File("model.safetensors.index.json"),
                   IndexWith(i, (n, s) => (n, n == "model.norm.weight" ? "../" + s : s)))))
            OpenFails(dir.Path, ErrorCode.SafetensorsIndexInvalid, "not a file name inside the checkpoint folder");
    }

    [Fact]
    public void Open_IndexNamingAMissingShard_NamesTheShard()
    {
        using var dir = Sharded((d, _) => File.Delete(d.File("model-00002-of-" + Directory.EnumerateFiles(d.Path, "model-00001-of-*").Single()[^17..])));
        OpenFails(dir.Path, ErrorCode.CheckpointShardMissing, "model-00002-of-", "which is not in the folder");
    }

    [Fact]
    public void Open_IndexListingATensorItsShardLacks_IsMissingTensor()
    {
        using var dir = Sharded((d, i) => File.WriteAllText(d.File("model.safetensors.index.json"),
            IndexWith(i, (n, s) => (n, s)).Replace("}}", ",\"model.extra.weight\":\"" + Path.GetFileName(Directory.EnumerateFiles(d.Path, "model-00001-*").Single()) + "\"}}")));
        OpenFails(dir.Path, ErrorCode.CheckpointMissingTensor, "'model.extra.weight'", "does not hold it");
    }

    [Fact]
    public void Open_TensorStoredInTwoShards_IsDuplicate()
    {
        using var dir = Sharded((d, _) =>
        {
            // Re-save the first shard with an extra copy of a tensor that lives in another shard.
            var first = Directory.EnumerateFiles(d.Path, "model-00001-*").Single();
            List<SafeTensorEntry> entries;
            using (var file = SafeTensorsFile.Open(first))
                entries = file.TensorNames.Select(n => EntryFor(n, file.Tensors[n].Shape, file.Tensors[n].DType)).ToList();
            entries.Add(EntryFor("model.norm.weight", [8]));
            SafeTensorsWriter.Write(first, entries);
        });
        OpenFails(dir.Path, ErrorCode.CheckpointDuplicateTensor, "'model.norm.weight'", "both");
    }

    [Fact]
    public void Open_ShardHoldingATensorTheIndexOmits_IsIndexInvalid()
    {
        using var dir = Sharded((d, i) => File.WriteAllText(d.File("model.safetensors.index.json"),
            IndexWith(i, (n, s) => n == "model.norm.weight" ? null : (n, s))));
        OpenFails(dir.Path, ErrorCode.SafetensorsIndexInvalid, "'model.norm.weight'", "does not list");
    }

    [Fact]
    public void Write_TensorsNotMatchingTheConfig_IsRefusedAndWritesNothing()
    {
        using var dir = new TempDirectory();
        var target = dir.File("out");
        var entries = TinyEntries().Where(e => e.Name != "model.norm.weight").ToList();
        var error = Assert.Throws<ErtasException>(() => HfCheckpointWriter.Write(target, Tiny, entries));
        Assert.Equal(ErrorCode.CheckpointMissingTensor, error.Code);
        Assert.Contains("'model.norm.weight'", error.Message);
        Assert.False(Directory.Exists(target));

        var wrongShape = TinyEntries().Select(e => e.Name == "model.norm.weight" ? EntryFor(e.Name, [9]) : e).ToList();
        Assert.Equal(ErrorCode.CheckpointShapeMismatch, Assert.Throws<ErtasException>(() => HfCheckpointWriter.Write(target, Tiny, wrongShape)).Code);
        var duplicated = TinyEntries().Append(EntryFor("model.norm.weight", [8])).ToList();
        Assert.Equal(ErrorCode.CheckpointDuplicateTensor, Assert.Throws<ErtasException>(() => HfCheckpointWriter.Write(target, Tiny, duplicated)).Code);
        Assert.False(Directory.Exists(target));
    }

    [Fact]
    public void Mistral7BShapes_AreWhatTheReaderDemands()
    {
        // The reader validates against ExpectedTensors; pin the 7B's count and a few shapes so a config change shows.
        var tensors = MistralConfig.Mistral7B.ExpectedTensors().ToDictionary(t => t.Name, t => t.Shape);
        Assert.Equal(2 + 32 * 9 + 1, tensors.Count);
        Assert.Equal([32000L, 4096], tensors["model.embed_tokens.weight"]);
        Assert.Equal([1024L, 4096], tensors["model.layers.31.self_attn.k_proj.weight"]);
        Assert.Equal([4096L, 14336], tensors["model.layers.0.mlp.down_proj.weight"]);
        Assert.Equal(7_241_732_096L, tensors.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)));
    }
}
