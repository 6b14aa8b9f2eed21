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
        // Tensor.bytes is a span over the native data (offset included) whatever the dtype; storage<T>() is typed.
        return Unsafe.AsPointer(ref MemoryMarshal.GetReference(contiguous.bytes));
    }
}
