using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling.Native;

/// <summary>Raw access to a CPU tensor's elements, for the kernels written in C# (NF4, dropout, attention rows).</summary>
public static unsafe class CpuTensorMemory
{
    /// <summary>The address of a contiguous CPU tensor's first element (its storage offset included).</summary>
    public static void* DataPointer(Tensor contiguous)
    {
        if (contiguous.device_type != DeviceType.CPU || !contiguous.is_contiguous())
            throw new ArgumentException("expected a contiguous CPU tensor");
        // Tensor.bytes is a span over the native data (offset included) whatever the dtype; storage<T>() is typed. A span
        // holds at most int.MaxValue bytes, so a larger tensor is addressed through a view of its first element.
        if (contiguous.numel() * contiguous.ElementSize <= int.MaxValue)
            return Unsafe.AsPointer(ref MemoryMarshal.GetReference(contiguous.bytes));
        using var flat = contiguous.view(-1);
        using var first = flat.narrow(0, 0, 1);
        return Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }
}
