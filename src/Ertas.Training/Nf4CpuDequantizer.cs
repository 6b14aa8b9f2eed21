using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training;

/// <summary>
/// NF4 dequantization for CPU tensors in C#, writing straight into a fresh torch tensor's memory. Gives the bits of
/// <see cref="Nf4Tensor.DequantizeWithTorchOps"/>: that path computes nf4[code] * absmax in float32 per element and
/// rounds once to the output type; here the 16 products nf4[c] * absmax of a block are computed (same float32 multiply,
/// same rounding) into a per-block table, and every weight is a lookup into it (NaN aside: see <see cref="RoundToBf16(float)"/>).
/// <para>
/// A 16-entry table per block beats a global 256-entry byte-to-pair table: each entry costs one multiply (and one
/// bf16 rounding) shared by the block's 64 weights, and the whole table fits one AVX-512 register, so one
/// <c>vpermw</c> (bf16) or <c>vpermps</c> (float32) looks up 32 or 16 weights at once. Without AVX-512 the table is
/// split into byte planes for SSSE3's 16-entry byte lookup (<c>pshufb</c>, see <see cref="ByteTableBlock"/>); without
/// SSSE3 (non-x86) it is indexed one nibble at a time.
/// </para>
/// Work is split into chunks of blocks run by <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/> with
/// at most torch's thread count (<c>torch.get_num_threads()</c>), so <c>set_num_threads</c> governs both paths.
/// </summary>
internal static unsafe class Nf4CpuDequantizer
{
    private const int BlocksPerChunk = 2048; // 128 K weights: 256 KB of bf16 output, well above the scheduling cost

    public static Tensor Dequantize(Nf4Tensor q, ScalarType dtype)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"NF4 dequantizes to Float32 or BFloat16, got {dtype}");
        var output = empty(q.Shape, dtype);
        DequantizeInto(q, output);
        return output;
    }

    /// <summary>Writes <paramref name="q"/> into <paramref name="output"/>: a contiguous CPU Float32 or BFloat16 tensor
    /// of <see cref="Nf4Tensor.ElementCount"/> elements (any shape).</summary>
    public static void DequantizeInto(Nf4Tensor q, Tensor output)
    {
        var dtype = output.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"NF4 dequantizes to Float32 or BFloat16, got {dtype}");
        if (output.numel() != q.ElementCount)
            throw new ArgumentException($"the destination holds {output.numel()} elements, the weight {q.ElementCount}");
        if (q.Device.type != DeviceType.CPU)
            throw new ArgumentException($"the C# dequantizer reads CPU tensors; this weight is on {q.Device}");
        var elements = q.ElementCount;
        var blocks = q.BlockCount;
        var codes = (nint)CpuTensorMemory.DataPointer(q.PackedCodes);
        var quantizedAbsmax = (nint)CpuTensorMemory.DataPointer(q.QuantizedAbsmax);
        var scales = (nint)CpuTensorMemory.DataPointer(q.AbsmaxScales);
        var destination = (nint)CpuTensorMemory.DataPointer(output);
        var map = Nf4.DynamicMapTable;
        var offset = q.AbsmaxOffset;
        var bf16 = dtype == ScalarType.BFloat16;

        var chunks = (int)((blocks + BlocksPerChunk - 1) / BlocksPerChunk);
        void RunChunk(int chunk)
        {
            var first = (long)chunk * BlocksPerChunk;
            var end = Math.Min(first + BlocksPerChunk, blocks);
            fixed (float* mapPointer = map)
            {
                var source = new BlockSource((byte*)codes, (byte*)quantizedAbsmax, (float*)scales, mapPointer, offset);
                if (bf16) DequantizeBf16(source, (ushort*)destination, first, end, elements);
                else DequantizeF32(source, (float*)destination, first, end, elements);
            }
        }

        var threads = Math.Max(1, Math.Min(get_num_threads(), chunks));
        if (threads == 1)
        {
            for (var c = 0; c < chunks; c++) RunChunk(c);
        }
        else
        {
            Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, RunChunk);
        }
    }

    /// <summary>Pointers to an NF4 tensor's parts; <see cref="Absmax"/> is the double-dequantized absmax of a block.</summary>
    private readonly struct BlockSource(byte* codes, byte* quantizedAbsmax, float* scales, float* map, float offset)
    {
        public byte* Codes(long block) => codes + block * (Nf4.BlockSize / 2);

        // The torch path: (dynamic[q] * scale) then + offset, two float32 roundings.
        public float Absmax(long block) => map[quantizedAbsmax[block]] * scales[block / Nf4.AbsmaxBlockSize] + offset;
    }

    private static void DequantizeF32(in BlockSource source, float* output, long first, long end, long elements)
    {
        var code = Nf4.Code;
        var table = stackalloc float[16];
        if (Avx512F.IsSupported)
        {
            var codeVector = Vector512.Create(code);
            for (var block = first; block < end; block++)
            {
                var start = block * Nf4.BlockSize;
                var scaled = codeVector * Vector512.Create(source.Absmax(block));
                if (start + Nf4.BlockSize > elements)
                {
                    scaled.Store(table);
                    ScalarBlock(source.Codes(block), table, output + start, (int)(elements - start));
                    continue;
                }
                var packed = source.Codes(block);
                var target = output + start;
                for (var i = 0; i < Nf4.BlockSize / 2; i += 8)
                {
                    // 8 bytes -> 8 64-bit lanes holding (high nibble, low nibble) as two int32 indices: first weight first.
                    var bytes = Avx512F.ConvertToVector512UInt64(Vector128.CreateScalarUnsafe(*(ulong*)(packed + i)).AsByte());
                    var indices = (bytes >>> 4) | ((bytes & Vector512.Create(15UL)) << 32);
                    Avx512F.PermuteVar16x32(scaled, indices.AsInt32()).Store(target + 2 * i);
                }
            }
            return;
        }
        for (var block = first; block < end; block++)
        {
            var absmax = source.Absmax(block);
            for (var c = 0; c < 16; c++) table[c] = code[c] * absmax;
            var start = block * Nf4.BlockSize;
            var count = (int)Math.Min(Nf4.BlockSize, elements - start);
            if (Ssse3.IsSupported && count == Nf4.BlockSize)
                ByteTableBlock((byte*)table, 4, source.Codes(block), (byte*)(output + start));
            else
                ScalarBlock(source.Codes(block), table, output + start, count);
        }
    }

    private static void DequantizeBf16(in BlockSource source, ushort* output, long first, long end, long elements)
    {
        var code = Nf4.Code;
        var table = stackalloc ushort[32];
        if (Avx512BW.IsSupported)
        {
            var codeVector = Vector512.Create(code);
            for (var block = first; block < end; block++)
            {
                var start = block * Nf4.BlockSize;
                // 16 bf16 values in the low halves of 32-bit lanes; as 32 ushorts, the even lanes 0, 2, ... 30.
                var rounded = RoundToBf16(codeVector * Vector512.Create(source.Absmax(block)));
                var lookup = Avx512F.ConvertToVector256UInt16(rounded).ToVector512Unsafe(); // entries 0..15
                if (start + Nf4.BlockSize > elements)
                {
                    lookup.Store(table);
                    ScalarBlock(source.Codes(block), table, output + start, (int)(elements - start));
                    continue;
                }
                var packed = source.Codes(block);
                var target = output + start;
                for (var i = 0; i < Nf4.BlockSize / 2; i += 16)
                {
                    // 16 bytes -> 16 32-bit lanes holding (high nibble, low nibble) as two 16-bit indices: 32 weights.
                    var bytes = Avx512F.ConvertToVector512UInt32(Vector128.Load(packed + i));
                    var indices = (bytes >>> 4) | ((bytes & Vector512.Create(15u)) << 16);
                    Avx512BW.PermuteVar32x16(lookup, indices.AsUInt16()).Store(target + 2 * i);
                }
            }
            return;
        }
        for (var block = first; block < end; block++)
        {
            var absmax = source.Absmax(block);
            for (var c = 0; c < 16; c++) table[c] = RoundToBf16(code[c] * absmax);
            var start = block * Nf4.BlockSize;
            var count = (int)Math.Min(Nf4.BlockSize, elements - start);
            if (Ssse3.IsSupported && count == Nf4.BlockSize)
                ByteTableBlock((byte*)table, 2, source.Codes(block), (byte*)(output + start));
            else
                ScalarBlock(source.Codes(block), table, output + start, count);
        }
    }

    /// <summary>
    /// One whole block without AVX-512 (SSSE3, so any x86-64 of the last fifteen years): the 16-entry table of
    /// <paramref name="width"/>-byte values is split into byte planes (plane k = byte k of every entry), <c>pshufb</c>
    /// looks 16 nibbles up in each plane at once, and unpacking interleaves the planes back into whole values.
    /// </summary>
    private static void ByteTableBlock(byte* table, int width, byte* packed, byte* output)
    {
        var planes = stackalloc Vector128<byte>[4];
        var plane = stackalloc byte[16];
        for (var k = 0; k < width; k++)
        {
            for (var c = 0; c < 16; c++) plane[c] = table[c * width + k];
            planes[k] = Vector128.Load(plane);
        }
        var lowNibble = Vector128.Create((byte)15);
        for (var i = 0; i < Nf4.BlockSize / 2; i += 16)
        {
            var bytes = Vector128.Load(packed + i);
            var high = (bytes.AsUInt16() >>> 4).AsByte() & lowNibble;                     // first weight of each byte
            var low = bytes & lowNibble;                                                  // second weight
            // Codes in weight order: 16 per vector, 32 weights for these 16 bytes.
            WriteSixteen(planes, width, Sse2.UnpackLow(high, low), output + 2 * i * width);
            WriteSixteen(planes, width, Sse2.UnpackHigh(high, low), output + (2 * i + 16) * width);
        }
    }

    /// <summary>16 values for 16 codes: one byte lookup per plane, then bytes interleaved into 2- or 4-byte values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WriteSixteen(Vector128<byte>* planes, int width, Vector128<byte> codes, byte* output)
    {
        var b0 = Ssse3.Shuffle(planes[0], codes);
        var b1 = Ssse3.Shuffle(planes[1], codes);
        var pairs0 = Sse2.UnpackLow(b0, b1);   // values 0..7: bytes 0 and 1
        var pairs1 = Sse2.UnpackHigh(b0, b1);  // values 8..15
        if (width == 2)
        {
            pairs0.Store(output);
            pairs1.Store(output + 16);
            return;
        }
        var b2 = Ssse3.Shuffle(planes[2], codes);
        var b3 = Ssse3.Shuffle(planes[3], codes);
        var upper0 = Sse2.UnpackLow(b2, b3);
        var upper1 = Sse2.UnpackHigh(b2, b3);
        Sse2.UnpackLow(pairs0.AsUInt16(), upper0.AsUInt16()).AsByte().Store(output);        // values 0..3
        Sse2.UnpackHigh(pairs0.AsUInt16(), upper0.AsUInt16()).AsByte().Store(output + 16);  // 4..7
        Sse2.UnpackLow(pairs1.AsUInt16(), upper1.AsUInt16()).AsByte().Store(output + 32);   // 8..11
        Sse2.UnpackHigh(pairs1.AsUInt16(), upper1.AsUInt16()).AsByte().Store(output + 48);  // 12..15
    }

    /// <summary>The first <paramref name="count"/> weights of one block, one nibble at a time.</summary>
    private static void ScalarBlock<T>(byte* packed, T* table, T* output, int count) where T : unmanaged
    {
        for (var j = 0; j < count; j++)
        {
            var b = packed[j >> 1];
            output[j] = table[(j & 1) == 0 ? b >> 4 : b & 15];
        }
    }

    /// <summary>float32 to bfloat16 as torch rounds (c10's round_to_nearest_even): to nearest, ties to even; NaN becomes
    /// 0x7FC0. Only NaN's bits can differ from a torch conversion, whose CPU paths disagree among themselves there (its
    /// AVX-512 emulation writes 0xFFFF, the AVX512-BF16 instruction keeps the sign); NaN arises only from a non-finite
    /// weight.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ushort RoundToBf16(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        var bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary><see cref="RoundToBf16(float)"/> per lane; the result sits in the low 16 bits of each 32-bit lane.</summary>
    private static Vector512<uint> RoundToBf16(Vector512<float> values)
    {
        var bits = values.AsUInt32();
        var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >>> 16) & Vector512.Create(1u))) >>> 16;
        var isNumber = Vector512.Equals(values, values).AsUInt32();
        return Vector512.ConditionalSelect(isNumber, rounded, Vector512.Create(0x7FC0u));
    }
}
