using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ertas.Modeling.Native;
using Ertas.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling.Tests.Modeling;

public sealed class TensorBlockCacheTests
{
    private const long MiB = 1 << 20;

    private static TensorBlockCache.Statistics Installed()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64,
            "the tensor block cache hooks glibc's libc10 on Linux x64 only");
        TorchSharpNativeFix.EnsureTorchLoaded();
        Assert.Null(TensorBlockCache.TryInstall()); // loading torch installed it already; a second call is a no-op
        return TensorBlockCache.Current ?? throw new InvalidOperationException("installed but no statistics");
    }

    private static unsafe nint DataPointer(Tensor tensor) => (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(tensor.bytes));

    private static string LoadedLibc10()
    {
        var line = File.ReadLines("/proc/self/maps").FirstOrDefault(l => l.EndsWith("/libc10.so", StringComparison.Ordinal));
        Skip.If(line is null, "libc10.so is not loaded");
        return line![line!.IndexOf('/')..];
    }

    [SkippableFact]
    public void RelocationSlotsFoundInLibc10MatchReadelfsDynamicRelocations()
    {
        Installed();
        var path = LoadedLibc10();
        var readelf = ExternalTool.FindOnPath("readelf");
        Skip.If(readelf is null, "readelf (binutils) is not on PATH to judge the ELF reader");
        var (code, output) = ExternalTool.Run(readelf!, Path.GetTempPath(), 60, ["-rW", path]);
        Assert.Equal(0, code);
        // "000000119e50  00bd00000006 R_X86_64_GLOB_DAT      0000000000000000 free@GLIBC_2.2.5 + 0"
        var expected = output.Split('\n')
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length >= 5 && f[2] is "R_X86_64_GLOB_DAT" or "R_X86_64_JUMP_SLOT" or "R_X86_64_JUMP_SLO")
            .Select(f => new RelocationSlot(f[4].Split('@')[0], ulong.Parse(f[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture), f[2] != "R_X86_64_GLOB_DAT"))
            .Where(s => s.Symbol is "posix_memalign" or "free")
            .ToList();
        Assert.Contains(expected, s => s.Symbol == "posix_memalign");
        Assert.Equal(expected, ElfRelocations.FindSlots(File.ReadAllBytes(path), ["posix_memalign", "free"]));
    }

    [SkippableFact]
    public void AFreedTensorsBlockIsHandedToTheNextTensorOfTheSameSize()
    {
        var before = Installed();
        nint first;
        using (var a = empty(4 * MiB / 4, ScalarType.Float32)) first = DataPointer(a);
        using var b = empty(4 * MiB / 4, ScalarType.Float32);
        Assert.Equal(first, DataPointer(b));
        Assert.Equal(0, first % (2 * MiB)); // huge-page aligned
        Assert.True(TensorBlockCache.Current!.Value.Hits > before.Hits);
        var counted = TensorBlockCache.Current!.Value;
        using var small = empty(1024, ScalarType.Float32); // below the threshold: glibc's heap, not the cache
        Assert.Equal(counted.Hits + counted.Misses, TensorBlockCache.Current!.Value.Hits + TensorBlockCache.Current!.Value.Misses);
    }

    [SkippableFact]
    public void OutputMetadataAllocationsGetFreshMappingsAndReuseResumesAfterTheEnd()
    {
        Installed();
        nint freed;
        using (var a = empty(5 * MiB, ScalarType.Byte)) freed = DataPointer(a);
        Tensor metadata;
        TensorBlockCache.BeginOutputMetadata();
        try
        {
            metadata = empty(5 * MiB, ScalarType.Byte); // what TorchSharp's apply() allocates and never writes
        }
        finally
        {
            TensorBlockCache.EndOutputMetadata();
        }
        using (metadata)
        {
            Assert.NotEqual(freed, DataPointer(metadata)); // the resident block stays cached
            using var next = empty(5 * MiB, ScalarType.Byte);
            Assert.Equal(freed, DataPointer(next));
        }
    }

    [SkippableFact]
    public void LivePlusCachedBytesNeverExceedTheMostBytesLiveAtOnce()
    {
        Installed();
        TensorBlockCache.Trim();
        TensorBlockCache.ResetPeak();
        var start = TensorBlockCache.Current!.Value;
        long mostLive = start.LiveBytes;
        // Sizes change between "layers" as a step's shapes do: each round holds some tensors, frees others, and the
        // next round asks for sizes the cache holds only partly.
        long[] sizes = [3 * MiB, 5 * MiB, 3 * MiB + 4096, 8 * MiB, 2 * MiB, 13 * MiB];
        var held = new List<Tensor>();
        var random = new Random(7);
        for (var round = 0; round < 40; round++)
        {
            var batch = Enumerable.Range(0, 4).Select(_ => empty(sizes[random.Next(sizes.Length)], ScalarType.Byte)).ToList();
            mostLive = Math.Max(mostLive, TensorBlockCache.Current!.Value.LiveBytes);
            foreach (var t in batch)
                if (random.Next(3) == 0) held.Add(t); else t.Dispose();
            if (held.Count > 6)
            {
                foreach (var t in held.Take(4)) t.Dispose();
                held.RemoveRange(0, 4);
            }
        }
        var end = TensorBlockCache.Current!.Value;
        foreach (var t in held) t.Dispose();
        Assert.True(end.Hits > start.Hits, "some blocks were reused");
        Assert.True(end.SplitHits > start.SplitHits, "some larger blocks were cut down to size");
        Assert.True(end.TakenApart > start.TakenApart && end.MovedBytes > start.MovedBytes, "some misses were built from cached blocks' pages");
        Assert.Equal(start.FailedMoves, end.FailedMoves); // every piece moved lay inside one kernel mapping
        Assert.InRange(end.PeakMappedBytes, 0, mostLive);
    }

    [SkippableFact]
    public void AMissOfANewSizeGetsTheFreedBlocksPagesMovedUnderItNotFreshZeroedPages()
    {
        Installed();
        TensorBlockCache.Trim();
        using (var old = empty(4 * MiB, ScalarType.Byte)) old.fill_(0x5A);
        var before = TensorBlockCache.Current!.Value;
        using var next = empty(9 * MiB, ScalarType.Byte); // no cached block of this size or up to twice it
        var after = TensorBlockCache.Current!.Value;
        Assert.Equal(before.Misses + 1, after.Misses);
        // Its two huge pages went to the first 2 MB offsets and its header page became the new header page.
        Assert.Equal(before.MovedBytes + 4 * MiB + 4096, after.MovedBytes);
        Assert.Equal(0, after.CachedBytes);
        // Fresh pages would read as zeros: the moved ones still hold what the freed tensor wrote.
        Assert.Equal(4 * MiB, next.narrow(0, 0, 4 * MiB).eq(0x5A).sum().ToInt64());
        Assert.Equal(0, next.narrow(0, 4 * MiB, 5 * MiB).ne(0).sum().ToInt64());
    }

    [SkippableFact]
    public void ABlockCutDownGivesBackThePagesOfTheHugePageItCutAndKeepsTheWholeOnesAfter()
    {
        Installed();
        TensorBlockCache.Trim();
        nint freed;
        using (var big = empty(6 * MiB, ScalarType.Byte)) freed = DataPointer(big);
        var before = TensorBlockCache.Current!.Value;
        using var cut = empty(3 * MiB, ScalarType.Byte); // up to twice its size: the 6 MB block cut down
        var after = TensorBlockCache.Current!.Value;
        Assert.Equal(freed, DataPointer(cut));
        Assert.Equal(before.SplitHits + 1, after.SplitHits);
        // Moving [3, 4) MB later would split the huge page the live tensor uses: it is unmapped, [4, 6) stays cached.
        Assert.False(IsMapped(freed + (nint)(3 * MiB)));
        Assert.True(IsMapped(freed + (nint)(4 * MiB)));
        Assert.Equal(2 * MiB, after.CachedBytes);
        Assert.Equal(1, after.LoosePieces);
    }

    [SkippableFact]
    public void AfterUninstallGlibcFreesBlocksTheCacheHandedOutAndTorchKeepsWorking()
    {
        Installed();
        TensorBlockCache.Trim();
        empty(3 * MiB, ScalarType.Byte).Dispose();
        var moved = TensorBlockCache.Current!.Value.MovedBytes;
        var live = empty(7 * MiB, ScalarType.Byte); // built from the 3 MB block's pages and fresh ones: several kernel mappings
        Assert.True(TensorBlockCache.Current!.Value.MovedBytes > moved);
        var block = DataPointer(live);
        Assert.True(IsMapped(block) && IsMapped(block + (nint)(7 * MiB) - 1));
        TensorBlockCache.Uninstall();
        try
        {
            Assert.Null(TensorBlockCache.Current);
            live.Dispose(); // glibc's free: the block carries glibc's mmapped-chunk header, so it is unmapped
            Assert.False(AnyMapped(block - 4096, block + (nint)(7 * MiB))); // every piece of it
            using var plain = ones(6 * MiB, ScalarType.Byte);
            Assert.Equal(6 * MiB, plain.sum().ToInt64());
        }
        finally
        {
            Assert.Null(TensorBlockCache.TryInstall());
        }
        Assert.NotNull(TensorBlockCache.Current);
    }

    private static bool AnyMapped(nint start, nint end) =>
        File.ReadLines("/proc/self/maps").Select(MapsLine.Parse).Any(m => m.Start < (ulong)end && m.End > (ulong)start);

    private static bool IsMapped(nint address) =>
        File.ReadLines("/proc/self/maps").Any(line => MapsLine.Parse(line).Contains((ulong)address));
}
