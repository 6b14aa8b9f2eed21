using Ertas.Modeling.Native;
using static TorchSharp.torch;

namespace Ertas.Modeling.Tests.Modeling;

public sealed unsafe class CpuTensorMemoryTests
{
    [Fact]
    public void ATensorOverIntMaxValueBytes_HasTheAddressOfItsFirstElement()
    {
        // Tensor.bytes (a span) refuses more than int.MaxValue bytes; attention scores of 32 heads at 4096 tokens in
        // float32 are exactly 2^31. torch.empty maps the pages without touching them, so this costs no memory.
        TorchSharpNativeFix.EnsureTorchLoaded();
        using var big = empty([(1L << 31) + 64], ScalarType.Byte);
        using var head = big.narrow(0, 0, 64);
        using var tail = big.narrow(0, 64, 1L << 31);
        Assert.Equal((nint)CpuTensorMemory.DataPointer(head), (nint)CpuTensorMemory.DataPointer(big));
        Assert.Equal((nint)CpuTensorMemory.DataPointer(head) + 64, (nint)CpuTensorMemory.DataPointer(tail));
        Assert.Throws<ArgumentException>(() => (nint)CpuTensorMemory.DataPointer(big.view(-1, 64).t()));
    }
}
