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
/// How: before MKL's first call, the cached answer is set to "Intel". Only on AMD CPUs with AVX-512 BF16 (where it was
/// measured), only when the function still begins with the instructions that read that variable, only when the
/// variable lies in libtorch's own writable data and still holds "not asked yet". Everything else is left as it is.
/// <see cref="DisableVariable"/>=0 turns it off.
/// </para>
/// </summary>
public static unsafe class MklCpuDispatch
{
    public const string DisableVariable = "ERTAS_MKL_CPU_DISPATCH";
    private const string VendorCheck = "mkl_serv_intel_cpu_true";

    private static readonly Lazy<string?> Outcome = new(Apply);

    /// <summary>Null when MKL now dispatches by instruction set, else why not (not applicable, turned off, not found).</summary>
    public static string? Status => Outcome.Value;

    /// <summary>Applies it once per process (libtorch must be loaded, MKL not yet called); returns <see cref="Status"/>.</summary>
    public static string? TryApply() => Outcome.Value;

    private static string? Apply()
    {
        if (Environment.GetEnvironmentVariable(DisableVariable) == "0") return $"{DisableVariable}=0";
        if (!OperatingSystem.IsLinux() || !X86Base.IsSupported) return "MKL's vendor check is changed on Linux x64 only";
        if (!IsAmdWithAvx512Bf16()) return "not an AMD CPU with AVX-512 BF16 (MKL's own choice is kept)";
        try
        {
            if (!NativeLibrary.TryLoad("libtorch_cpu.so", out var library)) return "libtorch_cpu.so is not loaded";
            if (!NativeLibrary.TryGetExport(library, VendorCheck, out var function)) return $"libtorch_cpu.so has no {VendorCheck}";
            var code = (byte*)function;
            // mov eax, [rip + d]; test eax, eax; js: the cached answer, computed when negative.
            if (code[0] != 0x8B || code[1] != 0x05 || code[6] != 0x85 || code[7] != 0xC0 || code[8] != 0x78)
                return $"{VendorCheck} does not start as expected (another MKL build)";
            var cached = (int*)(code + 6 + *(int*)(code + 2));
            if (!InWritableMappingOf((nint)cached, "libtorch_cpu.so")) return $"{VendorCheck}'s variable is not in libtorch's writable data";
            var was = Interlocked.CompareExchange(ref *cached, 1, -1);
            return was == -1 ? null : $"MKL already asked for the vendor (answer {was})";
        }
        catch (Exception e) // optional: torch runs without it
        {
            return $"MKL's vendor check could not be changed: {e.Message}";
        }
    }

    private static bool IsAmdWithAvx512Bf16()
    {
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        Span<int> vendor = [ebx, edx, ecx];
        if (System.Text.Encoding.ASCII.GetString(MemoryMarshal.AsBytes(vendor)) != "AuthenticAMD") return false;
        return Avx512F.IsSupported && Avx512BW.IsSupported && (X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0;
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
}
