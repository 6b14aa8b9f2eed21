using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Ertas.Modeling.Native;

/// <summary>
/// Lets the MKL inside libtorch pick its kernels by the instruction sets an AMD CPU has, as it does on Intel ones.
/// <para>
/// Why: MKL asks CPUID for the vendor once (<c>mkl_serv_intel_cpu_true</c>, cached in a variable) and, on anything but
/// "GenuineIntel", runs its generic path. For bf16 that path converts both operands to float32 and calls sgemm, so
/// libtorch's CPU flash attention (whose bf16 GEMMs go to MKL, while linear layers go to oneDNN) ran at 65-90 GFLOP/s
/// on an AMD EPYC with AVX-512 BF16, where oneDNN reaches 600. With the AVX-512 kernels MKL already carries, the
/// attention of a 190-token segment (12 heads, forward) took 0.9 ms instead of 1.9-2.5, and attention per layer of
/// the 100m training step about a third less; its error against a float64 reference was the same to three digits.
/// </para>
/// <para>
/// How: before MKL's first call, the cached answer is set to "Intel". Only on AMD CPUs with AVX-512 BF16 and the rest
/// of the AVX-512 set MKL then assumes (where it was measured), only when the function still begins with the
/// instructions that read that variable, only when the variable lies in libtorch's own writable data and still holds
/// "not asked yet", and not under <c>MKL_CBWR</c> (a user's own setting).
/// </para>
/// <para>
/// Reproducible: MKL's AVX-512 GEMMs split a long inner dimension across threads (a LoRA factor's gradient, x^T dy over
/// every position), so their bits depended on the thread count, where the generic path's did not; a seeded run gave
/// other adapter bytes in a process that ran MKL on another number of threads. MKL's strict conditional numerical
/// reproducibility (<c>mkl_cbwr_set(MKL_CBWR_AUTO | MKL_CBWR_STRICT)</c>: its own ISA choice, fixed blocking,
/// deterministic reductions; for its GEMMs, bits independent of the thread count) is therefore set right after, on
/// every x64 Linux CPU (Intel's AVX-512 GEMMs split the same way). Setting the mode makes MKL ask for the vendor, so
/// the vendor comes first; if MKL refuses the mode, it is told "not Intel" before any kernel is chosen.
/// <see cref="EnableVariable"/>=0 leaves MKL exactly as it is.
/// </para>
/// </summary>
public static unsafe partial class MklCpuDispatch
{
    public const string EnableVariable = "ERTAS_MKL_CPU_DISPATCH";
    private const string VendorCheck = "mkl_serv_intel_cpu_true";
    private const string ReproducibilitySetter = "mkl_serv_cbwr_set"; // what mkl_cbwr_set calls; libtorch exports only this one
    /// <summary>MKL_CBWR_AUTO | MKL_CBWR_STRICT (mkl_cbwr.h): the best ISA branch, bits independent of threads and alignment.</summary>
    public const int StrictAutoReproducibility = 2 | 0x10000;
    private const int RtldLazy = 1, RtldNoLoad = 4;

    private static readonly Lock Gate = new();
    private static string? s_status = "not tried: libtorch is not loaded yet";
    private static bool s_tried;

    /// <summary>Null when MKL dispatches by instruction set on this AMD CPU, in strict reproducible mode; else what was
    /// done instead and why (not tried yet, turned off, MKL_CBWR set, strict mode on MKL's own choice).</summary>
    public static string? Status
    {
        get
        {
            lock (Gate) return s_status;
        }
    }

    /// <summary>Applies it once per process, right after libtorch is loaded and before MKL's first call; returns
    /// <see cref="Status"/>.</summary>
    public static string? TryApply()
    {
        lock (Gate)
        {
            if (!s_tried)
            {
                s_status = Apply();
                s_tried = true;
            }
            return s_status;
        }
    }

    private static string? Apply()
    {
        if (Environment.GetEnvironmentVariable(EnableVariable) == "0") return $"turned off ({EnableVariable}=0)";
        // A user's own conditional numerical reproducibility setting answers the vendor question and is kept.
        if (Environment.GetEnvironmentVariable("MKL_CBWR") is { Length: > 0 }) return "MKL_CBWR is set";
        if (!OperatingSystem.IsLinux() || !X86Base.IsSupported) return "MKL is left as it is off Linux x64";
        try
        {
            var library = dlopen("libtorch_cpu.so", RtldLazy | RtldNoLoad); // only if already loaded
            if (library == 0) return "libtorch_cpu.so is not loaded";
            try
            {
                if (!NativeLibrary.TryGetExport(library, ReproducibilitySetter, out var setter)) return $"libtorch_cpu.so has no {ReproducibilitySetter}";
                // The vendor first: setting the mode makes MKL ask for it (measured), and the answer is then cached.
                var (vendor, why) = CpuQualifies ? ClaimIntel(library) : (0, "not an AMD CPU with AVX-512 BF16 and Ice Lake's AVX-512 set");
                var refused = ((delegate* unmanaged<int, int>)setter)(StrictAutoReproducibility);
                if (refused != 0)
                {
                    // Its AVX-512 kernels without strict mode would give other bits on another thread count: MKL is told
                    // the answer it would have found itself (not Intel), before any kernel is chosen.
                    if (vendor != 0) Volatile.Write(ref *(int*)vendor, 0);
                    return $"MKL refused strict reproducibility ({ReproducibilitySetter} returned {refused}); its generic path is kept";
                }
                return vendor != 0 ? null : $"MKL's own kernel choice in strict reproducible mode ({why})";
            }
            finally
            {
                dlclose(library);
            }
        }
        catch (Exception e) // optional: torch runs without it
        {
            return $"MKL could not be set up: {e.Message}";
        }
    }

    /// <summary>Sets MKL's cached vendor answer to Intel before MKL has asked: the variable, or null and why not.</summary>
    private static (nint Vendor, string? Why) ClaimIntel(nint library)
    {
        if (!NativeLibrary.TryGetExport(library, VendorCheck, out var function)) return (0, $"libtorch_cpu.so has no {VendorCheck}");
        var code = (byte*)function;
        // mov eax, [rip + d]; test eax, eax; js: the cached answer, computed when negative.
        if (code[0] != 0x8B || code[1] != 0x05 || code[6] != 0x85 || code[7] != 0xC0 || code[8] != 0x78)
            return (0, $"{VendorCheck} does not start as expected (another MKL build)");
        var cached = (int*)(code + 6 + *(int*)(code + 2));
        if (!InWritableMappingOf((nint)cached, "libtorch_cpu.so")) return (0, $"{VendorCheck}'s variable is not in libtorch's writable data");
        var was = Interlocked.CompareExchange(ref *cached, 1, -1);
        if (was != -1) return (0, $"MKL already asked for the vendor (answer {was})");
        // A first MKL call racing this one could have stored its own answer after the exchange.
        return Volatile.Read(ref *cached) == 1 ? ((nint)cached, null) : (0, "MKL asked for the vendor at the same moment");
    }

    /// <summary>
    /// AuthenticAMD with everything MKL assumes once it takes this CPU for an Intel one with AVX-512 BF16 (a Cooper
    /// Lake / Ice Lake class): AVX-512 F, CD, BW, DQ, VL, IFMA, VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ, GFNI, VAES,
    /// VPCLMULQDQ and BF16; and no AVX-512 FP16, which would send it down a Sapphire Rapids path never measured here.
    /// </summary>
    public static bool CpuQualifies => X86Base.IsSupported && IsAmdWithIceLakeFeaturesAndBf16();

    private static bool IsAmdWithIceLakeFeaturesAndBf16()
    {
        var (maxLeaf, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        Span<int> vendor = [ebx, edx, ecx];
        if (System.Text.Encoding.ASCII.GetString(MemoryMarshal.AsBytes(vendor)) != "AuthenticAMD" || maxLeaf < 7) return false;
        var (_, b7, c7, d7) = X86Base.CpuId(7, 0);
        var a71 = X86Base.CpuId(7, 1).Eax;
        static bool All(int register, params int[] bits) => bits.All(bit => (register & (1 << bit)) != 0);
        return All(b7, 16, 17, 21, 28, 30, 31) && All(c7, 1, 6, 8, 9, 10, 11, 12, 14) && All(a71, 5) && (d7 & (1 << 23)) == 0
            && Avx512F.IsSupported; // and the OS saves the AVX-512 state
    }

    private static bool InWritableMappingOf(nint address, string fileName)
    {
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var mapping = MapsLine.Parse(line);
            if (mapping.Contains((ulong)address))
                return mapping.Permissions.StartsWith("rw", StringComparison.Ordinal) && Path.GetFileName(mapping.Path) == fileName;
        }
        return false;
    }

    [LibraryImport("libc", EntryPoint = "dlopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint dlopen(string file, int mode);

    [LibraryImport("libc", EntryPoint = "dlclose")]
    private static partial int dlclose(nint handle);
}
