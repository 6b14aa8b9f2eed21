using System.Runtime.InteropServices;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Modeling.Tests.Modeling;

public sealed unsafe class MklCpuDispatchTests
{
    [SkippableFact]
    public void OnAnAmdCpuWithAvx512Bf16_MklItselfNowAnswersThatItRunsItsIntelPaths()
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        Skip.IfNot(OperatingSystem.IsLinux() && MklCpuDispatch.CpuQualifies, "MKL's vendor check is changed only on AMD CPUs with AVX-512 BF16 and Ice Lake's AVX-512 set");
        Skip.If(Environment.GetEnvironmentVariable(MklCpuDispatch.EnableVariable) == "0", $"turned off ({MklCpuDispatch.EnableVariable}=0)");
        Skip.If(Environment.GetEnvironmentVariable("MKL_CBWR") is { Length: > 0 }, "MKL_CBWR is set: the user's own MKL setting is kept");
        Assert.Null(MklCpuDispatch.Status);
        // MKL's own answers: the vendor, and the CPU type its kernels are picked by. Without it this machine (AMD EPYC)
        // reads intel 0 and type 0, MKL's generic path; with it, type 7, its AVX-512 path.
        var library = NativeLibrary.Load("libtorch_cpu.so");
        var intelCpu = (delegate* unmanaged<int>)NativeLibrary.GetExport(library, "mkl_serv_intel_cpu");
        var cpuType = (delegate* unmanaged<int>)NativeLibrary.GetExport(library, "mkl_serv_cpu_detect");
        var reproducibility = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(library, "mkl_serv_cbwr_get");
        Assert.Equal(1, intelCpu());
        Assert.InRange(cpuType(), 7, 0xd);
        Assert.Equal(MklCpuDispatch.StrictAutoReproducibility, reproducibility(-1)); // MKL_CBWR_ALL: branch and mode
    }

    [SkippableFact]
    public void ALoraFactorsGradientGemm_GivesTheSameBits_OnOneAndTwoThreads_AndAtAnyAlignment()
    {
        // x^T dy over 16384 positions (a LoRA A gradient): MKL's AVX-512 kernels split that inner dimension across
        // threads, so without strict reproducibility the bits changed with the thread count (measured here).
        TorchSharpNativeFix.EnsureTorchLoaded();
        var getMode = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(NativeLibrary.Load("libtorch_cpu.so"), "mkl_serv_cbwr_get");
        Skip.IfNot(getMode(-1) == MklCpuDispatch.StrictAutoReproducibility,
            $"MKL is not in strict reproducible mode here ({MklCpuDispatch.Status}): only that mode promises these bits");
        using var scope = NewDisposeScope();
        var generator = new torch.Generator(5);
        var x = randn([16384, 768], generator: generator);
        var dy = randn([16384, 8], generator: generator);
        static Tensor At(Tensor source, long offset) // the same values, offset by some floats from the buffer's start
        {
            var buffer = empty(source.numel() + 16, source.dtype);
            return buffer.narrow(0, offset, source.numel()).view(source.shape).copy_(source);
        }
        var threads = torch.get_num_threads();
        try
        {
            torch.set_num_threads(2);
            var two = x.t().matmul(dy);
            torch.set_num_threads(1);
            var one = x.t().matmul(dy);
            Assert.True(Bits(one).SequenceEqual(Bits(two)), "one and two threads gave other bits");
            torch.set_num_threads(2);
            for (var offset = 1; offset < 16; offset += 3)
                Assert.True(Bits(At(x, offset).t().matmul(At(dy, offset))).SequenceEqual(Bits(two)), $"offset {offset} floats gave other bits");
        }
        finally
        {
            torch.set_num_threads(threads);
        }
    }

    private static int[] Bits(Tensor t) => MemoryMarshal.Cast<float, int>(t.contiguous().data<float>().ToArray()).ToArray();

    [Theory]
    [InlineData(190)]
    [InlineData(512)]
    public void Bf16CausalAttention_ForwardAndBackward_StayWithinBf16RoundingOfAFloat64Reference(long length)
    {
        TorchSharpNativeFix.EnsureTorchLoaded(); // with MKL's dispatch as this machine gets it
        using var scope = NewDisposeScope();
        var generator = new torch.Generator(3);
        Tensor Input() => randn([1, 12, length, 64], generator: generator).to(ScalarType.BFloat16).requires_grad_();
        var (q, k, v) = (Input(), Input(), Input());
        var g = randn([1, 12, length, 64], generator: generator).to(ScalarType.BFloat16);
        var output = F.scaled_dot_product_attention(q, k, v, is_casual: true);
        output.backward([g]);

        Tensor Wide(Tensor t) => t.detach().to(ScalarType.Float64).requires_grad_();
        var (qd, kd, vd) = (Wide(q), Wide(k), Wide(v));
        var scores = qd.matmul(kd.transpose(-1, -2)).div(8.0).masked_fill(ones([length, length], ScalarType.Bool).triu(1), double.NegativeInfinity);
        var reference = scores.softmax(-1).matmul(vd);
        reference.backward([g.to(ScalarType.Float64)]);

        static double Relative(Tensor a, Tensor r) => (a.to(ScalarType.Float64) - r).abs().max().item<double>() / r.abs().max().item<double>();
        // Measured on the AMD EPYC here, both MKL paths: 2.3e-3 (output) to 1.1e-2 (dk) at 512.
        Assert.InRange(Relative(output, reference), 0, 1e-2);
        Assert.InRange(Relative(q.grad!, qd.grad!), 0, 2e-2);
        Assert.InRange(Relative(k.grad!, kd.grad!), 0, 2e-2);
        Assert.InRange(Relative(v.grad!, vd.grad!), 0, 2e-2);
    }
}
