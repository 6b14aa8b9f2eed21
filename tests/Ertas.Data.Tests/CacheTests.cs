using Ertas.Core;

namespace Ertas.Data.Tests;

public sealed class CacheTests
{
    private static readonly string[] Lines =
    [
        TestData.ChatLine(("user", "Hi"), ("assistant", "Hello")),
        TestData.ChatLine(("user", "Bye"), ("assistant", "Goodbye")),
        TestData.ChatLine(("user", "Hi"), ("assistant", "Hello")),
    ];

    private static PreparedDataset Prepare(ScratchFolder scratch, string dataPath, PreparationOptions? options = null, byte[]? tokenizerBytes = null,
        IProgressSink? progress = null) =>
        DatasetPreparer.Prepare([dataPath], TestData.TinyTokenizer, tokenizerBytes, options ?? TestData.Options(64), scratch.File("cache"),
            progress ?? NullProgressSink.Instance);

    [Fact]
    public void ASecondPreparation_WithTheSameInputs_LoadsTheCache_WithTheSameRows()
    {
        using var scratch = new ScratchFolder();
        var path = scratch.WriteLines("data.jsonl", Lines);

        var first = Prepare(scratch, path);
        var second = Prepare(scratch, path);

        Assert.False(first.LoadedFromCache);
        Assert.True(second.LoadedFromCache);
        Assert.Equal(first.CachePath, second.CachePath);
        Assert.Equal(first.Train.InputIds.ToArray(), second.Train.InputIds.ToArray());
        Assert.Equal(first.Train.Labels.ToArray(), second.Train.Labels.ToArray());
        Assert.Equal(first.Train.PositionIds.ToArray(), second.Train.PositionIds.ToArray());
        Assert.Equal(first.Train.SegmentIds.ToArray(), second.Train.SegmentIds.ToArray());
        Assert.Equal(first.Warnings, second.Warnings);
    }

    [Fact]
    public void RenamingTheDataFile_StillHits_AndWarningsNameTheNewFile()
    {
        using var scratch = new ScratchFolder();
        var path = scratch.WriteLines("data.jsonl", Lines);
        Prepare(scratch, path);
        var renamed = scratch.File("renamed.jsonl");
        File.Move(path, renamed);
        File.SetLastWriteTimeUtc(renamed, DateTime.UtcNow.AddDays(1));

        var again = Prepare(scratch, renamed);

        Assert.True(again.LoadedFromCache);
        var warning = Assert.Single(again.Warnings);
        Assert.Equal((renamed, 3, ErrorCode.DatasetDuplicateExample), (warning.File, warning.Line, warning.Code));
    }

    [Fact]
    public void ChangingOneByteOfData_Misses()
    {
        using var scratch = new ScratchFolder();
        var path = scratch.WriteLines("data.jsonl", Lines);
        var first = Prepare(scratch, path);
        var bytes = File.ReadAllBytes(path);
        bytes[Array.IndexOf(bytes, (byte)'G')] = (byte)'g';
        File.WriteAllBytes(path, bytes);

        var second = Prepare(scratch, path);

        Assert.False(second.LoadedFromCache);
        Assert.NotEqual(first.CachePath, second.CachePath);
    }

    [Fact]
    public void ChangingAnySetting_Misses()
    {
        using var scratch = new ScratchFolder();
        var path = scratch.WriteLines("data.jsonl", Lines);
        var baseline = TestData.Options(64);
        Prepare(scratch, path, baseline);
        PreparationOptions[] changed =
        [
            baseline with { SequenceLength = 65 },
            baseline with { Seed = baseline.Seed + 1 },
            baseline with { TrainOnPrompt = true },
            baseline with { Packing = PackingMode.Sequential },
            baseline with { Shuffle = false },
            baseline with { EvalCount = 1 },
            baseline with { DuplicatePolicy = DuplicatePolicy.Drop },
            baseline with { LengthPolicy = LengthPolicy.Drop },
            baseline with { Format = DatasetFormat.Chat },
        ];

        Assert.All(changed, options => Assert.False(Prepare(scratch, path, options).LoadedFromCache));
        Assert.True(Prepare(scratch, path, baseline).LoadedFromCache);
    }

    [Fact]
    public void ChangingTheTokenizerBytes_Misses()
    {
        using var scratch = new ScratchFolder();
        var path = scratch.WriteLines("data.jsonl", Lines);
        var modelBytes = TestData.TinyTokenizer.Model.ToBytes();
        Prepare(scratch, path, tokenizerBytes: modelBytes);
        var other = (byte[])modelBytes.Clone();
        other[^1] ^= 1;

        Assert.True(Prepare(scratch, path, tokenizerBytes: modelBytes).LoadedFromCache);
        Assert.False(Prepare(scratch, path, tokenizerBytes: other).LoadedFromCache);
    }

    [Fact]
    public void ACorruptCacheFile_IsIgnoredWithANote_AndRewritten()
    {
        using var scratch = new ScratchFolder();
        var path = scratch.WriteLines("data.jsonl", Lines);
        var first = Prepare(scratch, path);
        var good = File.ReadAllBytes(first.CachePath);
        File.WriteAllBytes(first.CachePath, good[..(good.Length - 10)]);
        var sink = new RecordingSink();

        var second = Prepare(scratch, path, progress: sink);

        Assert.False(second.LoadedFromCache);
        Assert.Contains(sink.Lines, l => l.StartsWith("dataset: ignoring cache", StringComparison.Ordinal));
        Assert.Equal(good, File.ReadAllBytes(first.CachePath));
        Assert.True(Prepare(scratch, path).LoadedFromCache);
    }

    [Fact]
    public void TheCacheFile_StartsWithItsVersionedHeader()
    {
        using var scratch = new ScratchFolder();
        var dataset = Prepare(scratch, scratch.WriteLines("data.jsonl", Lines));

        var bytes = File.ReadAllBytes(dataset.CachePath);
        Assert.Equal("ERTASDS\0"u8.ToArray(), bytes[..8]);
        Assert.Equal(DatasetCache.FormatVersion, BitConverter.ToInt32(bytes, 8));
        Assert.Equal(Convert.FromHexString(dataset.CacheKey), bytes[12..44]);
        Assert.Equal(64, BitConverter.ToInt32(bytes, 44));
        Assert.Equal("ENDS"u8.ToArray(), bytes[^4..]);
        Assert.Empty(Directory.EnumerateFiles(scratch.File("cache"), "*.tmp"));
    }
}
