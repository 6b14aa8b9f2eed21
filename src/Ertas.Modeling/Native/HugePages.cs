using System.Runtime.InteropServices;

namespace Ertas.Modeling.Native;

/// <summary>
/// Asks libtorch to back tensors of 2 MB and more with transparent huge pages (its <c>THP_MEM_ALLOC_ENABLE</c>). Large
/// tensors get a fresh mapping each time (<see cref="GlibcMalloc"/> keeps it so, for memory), so every training step
/// faults their pages in again: with 4 KB pages a third of a 100m step's CPU time went to page faults on a
/// paravirtualised 2-core VM (perf), and a step took 25 s; with huge pages, 512 times fewer faults, 18 s, the same
/// peak RSS. libtorch reads the variable once, at its first allocation, from the C environment (which .NET's
/// Environment.SetEnvironmentVariable does not change on Unix), so this runs before libtorch loads. A value the user
/// set, 0 included, is left alone.
/// </summary>
public static partial class HugePages
{
    public const string Variable = "THP_MEM_ALLOC_ENABLE";

    /// <summary>Sets <see cref="Variable"/> to 1 in the C environment unless it is set; false off Linux or if not set.</summary>
    public static bool RequestForLargeTensors()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return setenv(Variable, "1", overwrite: 0) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);
}
