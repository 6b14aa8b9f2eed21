using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ertas.Core;
using TorchSharp;

namespace Ertas.Modeling.Native;

/// <summary>
/// Makes TorchSharp-cpu 0.107.0 load on Debian 12 / Ubuntu 22.04 (FACTS §1). Its <c>libLibTorchSharp.so</c> asks for
/// <c>GLIBCXX_3.4.32</c>, which their libstdc++ (3.4.30) lacks, yet the only symbol carrying that version
/// (<c>std::ios_base_library_init()</c>) is never relocated against. Marking that one version need weak in the copy
/// in the application's output folder lets the loader accept it. The NuGet cache is never touched: the patched copy
/// is written beside the output copy and renamed over it, which also replaces (never writes through) a symlink.
/// </summary>
public static class TorchSharpNativeFix
{
    public const string LibraryFileName = "libLibTorchSharp.so";
    public const string MissingVersion = "GLIBCXX_3.4.32";

    private static readonly Lazy<Exception?> TorchLoad = new(TryLoadTorch, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// Runs when Ertas.Modeling is first used, so before any TorchSharp call made through it. It must never throw:
    /// a failure here is logged and TorchSharp's own load then reports (see <see cref="EnsureTorchLoaded"/>).
    /// </summary>
#pragma warning disable CA2255 // a library module initializer is the point: every consumer gets the fix for free
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void OnModuleLoad()
    {
        try
        {
            Ensure();
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"ertas: warning: could not patch {LibraryFileName} for this libstdc++ ({e.Message}); TorchSharp may fail to load");
        }
    }

    /// <summary>
    /// Patches every <see cref="LibraryFileName"/> under <see cref="AppContext.BaseDirectory"/> (the flat layout a
    /// RuntimeIdentifier build produces, and <c>runtimes/linux-*/native/</c>). Idempotent; a no-op off Linux.
    /// </summary>
    /// <remarks>
    /// It patches whether or not this host's libstdc++ has GLIBCXX_3.4.32. A weak need changes nothing where the version
    /// exists (the loader still checks it and binds the same symbols), while an output folder or container image built
    /// on a newer host and run on an older one would break if we had decided by the build host. Deciding by the run
    /// host would also mean guessing which libstdc++ the loader will pick (LD_LIBRARY_PATH, ld.so.cache, RUNPATH).
    /// </remarks>
    public static IReadOnlyList<string> Ensure(TextWriter? log = null) => EnsureIn(AppContext.BaseDirectory, log);

    /// <summary><see cref="Ensure"/> for the application in <paramref name="baseDirectory"/>; returns the files it patched
    /// and writes one line per patched file to <paramref name="log"/> (stderr by default), nothing otherwise.</summary>
    public static IReadOnlyList<string> EnsureIn(string baseDirectory, TextWriter? log = null)
    {
        if (!OperatingSystem.IsLinux()) return [];
        log ??= Console.Error;
        var patched = new List<string>();
        foreach (var path in CandidatePaths(baseDirectory))
            if (PatchFile(path) == WeakenOutcome.Patched)
            {
                patched.Add(path);
                log.WriteLine($"ertas: made {MissingVersion} a weak version need in {path} so libtorch loads on this libstdc++");
            }
        return patched;
    }

    /// <summary>The copies of the library an application in <paramref name="baseDirectory"/> may load.</summary>
    public static IEnumerable<string> CandidatePaths(string baseDirectory)
    {
        var flat = Path.Combine(baseDirectory, LibraryFileName);
        if (File.Exists(flat)) yield return flat;
        var runtimes = Path.Combine(baseDirectory, "runtimes");
        if (!Directory.Exists(runtimes)) yield break;
        foreach (var rid in Directory.EnumerateDirectories(runtimes, "linux-*").Order(StringComparer.Ordinal))
        {
            var nested = Path.Combine(rid, "native", LibraryFileName);
            if (File.Exists(nested)) yield return nested;
        }
    }

    /// <summary>
    /// Marks <see cref="MissingVersion"/> weak in the file at <paramref name="path"/>. The patched bytes go to a temp
    /// file that is renamed over the original, so a crash leaves either the old or the new library, never half of one.
    /// File mode and modification time are kept: MSBuild's incremental copy compares size and time, so the patched copy
    /// survives the next build instead of being replaced by the package's original (and patched again).
    /// </summary>
    public static WeakenOutcome PatchFile(string path)
    {
        if (IsInNuGetCache(path))
            throw new InvalidOperationException($"refusing to patch '{path}': it lies in the NuGet package cache");
        var bytes = File.ReadAllBytes(path);
        var outcome = ElfVersionNeeds.MakeWeak(bytes, MissingVersion);
        if (outcome != WeakenOutcome.Patched) return outcome;

        var mode = OperatingSystem.IsWindows() ? default : File.GetUnixFileMode(path);
        var modified = File.GetLastWriteTimeUtc(path);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(bytes);
            stream.Flush(); // push the data out before stamping the time, or a later write would move it again
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(stream.SafeFileHandle, mode);
            File.SetLastWriteTimeUtc(stream.SafeFileHandle, modified);
        });
        return outcome;
    }

    /// <summary>
    /// Loads TorchSharp's native libraries or throws <see cref="ErtasException"/> (<see cref="ErrorCode.NativeLibraryLoad"/>)
    /// with the real cause. On Linux the output copy is first loaded by path: if that fails, TorchSharp never tries,
    /// so neither its misleading "doesn't contain a reference to libtorch-cpu" message nor its fallback (copying
    /// ~600 MB of natives into <c>bin/.../cpu/</c>) happens.
    /// </summary>
    public static void EnsureTorchLoaded()
    {
        if (TorchLoad.Value is { } failure)
            throw failure is ErtasException ? failure : Wrap(failure);
    }

    private static Exception? TryLoadTorch()
    {
        try
        {
            HugePages.RequestForLargeTensors(); // read once by libtorch's first allocation
            if (OperatingSystem.IsLinux() && CandidatePaths(AppContext.BaseDirectory).FirstOrDefault() is { } path)
            {
                try
                {
                    NativeLibrary.Load(path);
                }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                {
                    return new ErtasException(ErrorCode.NativeLibraryLoad,
                        $"the libtorch runtime could not be loaded from '{path}': {OneLine(e.Message)}. " + Advice(), path, inner: e);
                }
            }
            torch.InitializeDeviceType(DeviceType.CPU);
            TensorBlockCache.TryInstall(); // optional: without it tensors are mapped fresh each time, only slower
            MklCpuDispatch.TryApply(); // optional: MKL's AVX-512 kernels on AMD (faster bf16 attention), in strict reproducible mode
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    private static ErtasException Wrap(Exception e)
    {
        var inner = e is TypeInitializationException { InnerException: { } cause } ? cause : e;
        return new ErtasException(ErrorCode.NativeLibraryLoad,
            $"TorchSharp could not load its native libraries ({OneLine(inner.Message)}). Its message about a missing " +
            "libtorch-cpu package reference is usually wrong: " + Advice(), inner: e);
    }

    private static string Advice() =>
        $"TorchSharp-cpu 0.107.0 asks for {MissingVersion} from libstdc++, which Debian 12 and Ubuntu 22.04 lack; ertas " +
        $"marks that need weak in the {LibraryFileName} of the output folder when Ertas.Modeling loads (check stderr " +
        "for a warning that this failed, e.g. a read-only output folder), or install libstdc++ from GCC 13 or later";

    /// <summary>dlerror text arrives over several lines; a diagnostic is one.</summary>
    private static string OneLine(string message) =>
        string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    private static bool IsInNuGetCache(string path)
    {
        var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(cache))
            cache = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var full = Path.GetFullPath(path);
        var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(cache)) + Path.DirectorySeparatorChar;
        return full.StartsWith(root, StringComparison.Ordinal);
    }
}
