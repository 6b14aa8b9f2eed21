using System.Runtime.Versioning;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling.Tests.Modeling;

public sealed class TorchSharpNativeFixTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("ertas-nativefix-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    /// <summary>The package's original library, read only: the tests copy it and never write here.</summary>
    private static string PackageOriginal()
    {
        var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(cache))
            cache = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var path = Path.Combine(cache, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", TorchSharpNativeFix.LibraryFileName);
        Skip.IfNot(File.Exists(path), $"TorchSharp 0.107.0's linux-x64 {TorchSharpNativeFix.LibraryFileName} is not in the NuGet cache ({path})");
        return path;
    }

    [SkippableFact]
    [SupportedOSPlatform("linux")]
    public void PatchingTheRealLibrarySetsOnlyTheWeakBitOfTheGlibcxx3432NeedAndIsIdempotent()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "file modes and this library are Linux things");
        var original = File.ReadAllBytes(PackageOriginal());
        var before = ElfVersionNeeds.Read(original);
        var need = Assert.Single(before, n => n.Version == TorchSharpNativeFix.MissingVersion);
        Assert.Equal("libstdc++.so.6", need.File);
        Assert.False(need.IsWeak);

        var copy = Path.Combine(_temp, TorchSharpNativeFix.LibraryFileName);
        File.WriteAllBytes(copy, original);
        var mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead;
        File.SetUnixFileMode(copy, mode);
        var stamp = new DateTime(2026, 5, 7, 12, 0, 0, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(copy, stamp);

        Assert.Equal(WeakenOutcome.Patched, TorchSharpNativeFix.PatchFile(copy));
        var patched = File.ReadAllBytes(copy);
        Assert.Equal(original.Length, patched.Length);
        var differing = Enumerable.Range(0, original.Length).Where(i => original[i] != patched[i]).ToList();
        Assert.NotEmpty(differing);
        Assert.All(differing, i => Assert.InRange(i, need.FlagsOffset, need.FlagsOffset + 1)); // one u16: vna_flags
        Assert.Equal(need.Flags | ElfVersionNeeds.VerFlagWeak, BitConverter.ToUInt16(patched, (int)need.FlagsOffset));

        var after = ElfVersionNeeds.Read(patched);
        Assert.Equal(before.Select(n => n with { Flags = n.Version == need.Version ? (ushort)(n.Flags | 2) : n.Flags }), after);
        Assert.Equal(mode, File.GetUnixFileMode(copy));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(copy)); // so MSBuild's incremental copy keeps the patched file

        Assert.Equal(WeakenOutcome.AlreadyWeak, TorchSharpNativeFix.PatchFile(copy));
        Assert.Equal(patched, File.ReadAllBytes(copy));
        Assert.Empty(Directory.GetFiles(_temp, "*.tmp", SearchOption.AllDirectories)); // no temp file left behind
    }

    [SkippableFact]
    public void EnsurePatchesTheFlatAndTheRuntimesLayoutAndLogsOnlyWhenItPatched()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the fix is a no-op off Linux");
        var original = PackageOriginal();
        var flat = Path.Combine(_temp, TorchSharpNativeFix.LibraryFileName);
        var nested = Path.Combine(_temp, "runtimes", "linux-x64", "native", TorchSharpNativeFix.LibraryFileName);
        Directory.CreateDirectory(Path.GetDirectoryName(nested)!);
        File.Copy(original, flat);
        File.Copy(original, nested);

        var log = new StringWriter();
        Assert.Equal([flat, nested], TorchSharpNativeFix.EnsureIn(_temp, log));
        Assert.Equal(
            $"ertas: made GLIBCXX_3.4.32 a weak version need in {flat} so libtorch loads on this libstdc++{Environment.NewLine}" +
            $"ertas: made GLIBCXX_3.4.32 a weak version need in {nested} so libtorch loads on this libstdc++{Environment.NewLine}",
            log.ToString());

        var second = new StringWriter();
        Assert.Empty(TorchSharpNativeFix.EnsureIn(_temp, second));
        Assert.Equal("", second.ToString());
    }

    [SkippableFact]
    public void RefusesToPatchTheCopyInTheNuGetCache()
    {
        var cached = PackageOriginal();
        var bytes = File.ReadAllBytes(cached);
        Assert.Throws<InvalidOperationException>(() => TorchSharpNativeFix.PatchFile(cached));
        Assert.Equal(bytes, File.ReadAllBytes(cached));
    }

    [Fact]
    public void RejectsFilesThatAreNotWellFormedElf64()
    {
        Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Read("#!/bin/sh\necho not an ELF object at all, just text"u8.ToArray()));
        var header = new byte[64];
        "\u007fELF"u8.CopyTo(header);
        header[4] = 1; // ELFCLASS32
        header[5] = 1;
        Assert.Contains("64-bit", Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Read(header)).Message);
        header[4] = 2;
        BitConverter.GetBytes(1_000_000L).CopyTo(header, 0x28); // section headers past the end of the file
        BitConverter.GetBytes((ushort)64).CopyTo(header, 0x3A);
        BitConverter.GetBytes((ushort)3).CopyTo(header, 0x3C);
        Assert.Contains("outside", Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Read(header)).Message);
    }

    [SkippableFact]
    public void TheOutputCopyIsPatchedAndTorchRunsWithoutTorchSharpsFallbackCopy()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the libstdc++ version problem exists only on Linux");
        var copies = TorchSharpNativeFix.CandidatePaths(AppContext.BaseDirectory).ToList();
        Assert.NotEmpty(copies);
        foreach (var copy in copies)
            Assert.True(ElfVersionNeeds.Read(File.ReadAllBytes(copy)).Single(n => n.Version == TorchSharpNativeFix.MissingVersion).IsWeak, copy);

        TorchSharpNativeFix.EnsureTorchLoaded();
        using var scope = NewDisposeScope();
        var product = ones(2, 2).matmul(tensor(new float[] { 1, 2, 3, 4 }, [2, 2]));
        Assert.Equal(new float[] { 4, 6, 4, 6 }, product.data<float>().ToArray());
        // A failed load makes TorchSharp copy ~600 MB of natives into a cpu/ folder beside the app.
        Assert.False(Directory.Exists(Path.Combine(AppContext.BaseDirectory, "cpu")));
    }
}
