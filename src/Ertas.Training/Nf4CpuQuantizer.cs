using Ertas.Modeling.Native;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training;

/// <summary>
/// NF4 quantization of a contiguous CPU float32 or bfloat16 weight in C#, reading the tensor's memory in place: the
/// bytes of <see cref="Nf4.QuantizeWithTorchOps"/> (and of the scalar reference) without its temporaries, which for a
/// 7B projection are about 2 GB (float32 copies, int64 codes) and would set the QLoRA loader's peak memory.
/// Per block: absmax, its reciprocal, x = w * reciprocal, code = how many NF4 thresholds x exceeds, counted 8 values at
/// a time with vector compares (NaN exceeds none: code 0, as bitsandbytes' tree gives).
/// </summary>
internal static unsafe class Nf4CpuQuantizer
{
    private const int BlocksPerChunk = 2048;

    public static bool Supports(Tensor weight) =>
        weight.device_type == DeviceType.CPU && weight.is_contiguous() && weight.dtype is ScalarType.Float32 or ScalarType.BFloat16;

    /// <summary>Writes the packed codes (blocks * 32 bytes, uint8) and the float32 absmax per block into the given
    /// contiguous CPU tensors.</summary>
    public static void QuantizeBlocks(Tensor weight, Tensor packed, Tensor absmax)
    {
        var count = weight.NumberOfElements;
        var blocks = (count + Nf4.BlockSize - 1) / Nf4.BlockSize;
        if (packed.NumberOfElements != blocks * Nf4.BlockSize / 2 || absmax.NumberOfElements != blocks)
            throw new ArgumentException("the output tensors do not match the weight's block count");
        var source = (nint)CpuTensorMemory.DataPointer(weight);
        var bf16 = weight.dtype == ScalarType.BFloat16;
        var chunks = (int)((blocks + BlocksPerChunk - 1) / BlocksPerChunk);
        {
            var (packedAddress, absmaxAddress) = ((nint)CpuTensorMemory.DataPointer(packed), (nint)CpuTensorMemory.DataPointer(absmax));
            void RunChunk(int chunk)
            {
                var first = (long)chunk * BlocksPerChunk;
                var end = Math.Min(first + BlocksPerChunk, blocks);
                Span<float> block = stackalloc float[Nf4.BlockSize];
                for (var b = first; b < end; b++)
                {
                    var start = b * Nf4.BlockSize;
                    var length = (int)Math.Min(Nf4.BlockSize, count - start);
                    block.Clear(); // a last partial block is padded with zeros, which leave its absmax as it is
                    if (bf16)
                    {
                        var from = (ushort*)source + start;
                        for (var i = 0; i < length; i++) block[i] = BitConverter.UInt32BitsToSingle((uint)from[i] << 16);
                    }
                    else
                    {
                        new ReadOnlySpan<float>((float*)source + start, length).CopyTo(block);
                    }
                    ((float*)absmaxAddress)[b] = QuantizeBlock(block, (byte*)packedAddress + b * (Nf4.BlockSize / 2));
                }
            }
            var threads = Math.Max(1, Math.Min(get_num_threads(), chunks));
            if (threads == 1)
                for (var c = 0; c < chunks; c++) RunChunk(c);
            else
                Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, RunChunk);
        }
    }

    /// <summary>Codes of one 64-value block into 32 bytes (first value in the high nibble); returns the absmax.</summary>
    private static float QuantizeBlock(ReadOnlySpan<float> block, byte* packed)
    {
        var max = 0f;
        foreach (var v in block) max = MathF.Max(max, MathF.Abs(v));
        var inverse = 1f / max; // the reciprocal, then a multiply, as bitsandbytes and the torch path do
        Span<byte> codes = stackalloc byte[Nf4.BlockSize];
        if (Vector256.IsHardwareAccelerated)
        {
            var thresholds = Nf4.Thresholds;
            var scale = Vector256.Create(inverse);
            for (var i = 0; i < Nf4.BlockSize; i += 8)
            {
                var x = Vector256.Create(block.Slice(i, 8)) * scale;
                var below = Vector256<int>.Zero; // each compare that holds adds -1
                for (var t = 0; t < thresholds.Length; t++)
                    below += Vector256.GreaterThan(x, Vector256.Create(thresholds[t])).AsInt32();
                for (var j = 0; j < 8; j++) codes[i + j] = (byte)-below.GetElement(j);
            }
        }
        else
        {
            for (var i = 0; i < Nf4.BlockSize; i++) codes[i] = Nf4.QuantizeNormalized(block[i] * inverse);
        }
        for (var j = 0; j < Nf4.BlockSize; j += 2)
            packed[j / 2] = (byte)(codes[j] << 4 | codes[j + 1]);
        return max;
    }
}
