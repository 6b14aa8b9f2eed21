using Ertas.Modeling;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training;

/// <summary>
/// NF4 with double quantization, as bitsandbytes does it (<c>quantize_4bit(quant_type="nf4", blocksize=64,
/// compress_statistics=True)</c>, FACTS §5):
/// <list type="number">
/// <item>Weights in blocks of 64 are divided by the block's absmax and mapped to the nearest of 16 NF4 code values.
/// "Nearest" is bitsandbytes' <c>dQuantizeNF4</c> decision tree: a value strictly above the midpoint of two adjacent
/// codes takes the upper one, so a value exactly on a midpoint takes the lower code.</item>
/// <item>Two codes per byte, the first element in the high nibble (<c>kQuantizeBlockwise</c>:
/// <c>q[2j] &lt;&lt; 4 | q[2j+1]</c>).</item>
/// <item>The float32 absmax values minus their mean are quantized to 8 bits in blocks of 256 with the signed dynamic
/// map (<c>create_dynamic_map(signed=True)</c>) by <c>dQuantize</c>'s binary search and midpoint rule; each 256-block
/// keeps a float32 scale, and the mean is kept as one float32 offset.</item>
/// </list>
/// Storage is 4 + 8/64 + 32/(64*256) = 4.127 bits per weight. Dequantization is
/// <c>nf4[code] * (dynamic[qabsmax] * scale + offset)</c> in float32, rounded once to the requested type.
/// </summary>
/// <remarks>
/// Parity: codes, packing, the dynamic map and both nearest-value rules follow bitsandbytes' CUDA kernels exactly.
/// The absmax mean is torch's float32 <c>mean()</c> on the CPU; bitsandbytes takes it on the GPU, where the reduction
/// order (and so the last bit of the offset) may differ. A block of zeros gives x = 0 * (1/0) = NaN in both, which
/// falls through the tree to code 0 (-1.0) and dequantizes to -1 * 0 = -0.
/// </remarks>
public static class Nf4
{
    public const int BlockSize = 64;
    public const int AbsmaxBlockSize = 256;

    /// <summary>The 16 NF4 values (bitsandbytes' <c>get_4bit_type("nf4")</c>), index = 4-bit code.</summary>
    public static ReadOnlySpan<float> Code =>
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    /// <summary>
    /// The thresholds of <c>dQuantizeNF4</c>'s tree in ascending order: the midpoints of adjacent codes (computed in
    /// double by bitsandbytes' generator, then written as float literals). Code = how many of them x exceeds.
    /// </summary>
    public static ReadOnlySpan<float> Thresholds =>
    [
        -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
        -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
        0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
        0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
    ];

    /// <summary>The 4-bit code of a value already divided by its block's absmax. NaN gives 0, as in bitsandbytes.</summary>
    public static byte QuantizeNormalized(float x)
    {
        // Counting the thresholds below x gives the same answer as the tree: the thresholds ascend, and NaN exceeds none.
        var thresholds = Thresholds;
        byte code = 0;
        for (var i = 0; i < thresholds.Length; i++)
            if (x > thresholds[i]) code++;
        return code;
    }

    /// <summary>bitsandbytes' <c>create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)</c>: 256 sorted
    /// float32 values in [-1, 1], dense near zero.</summary>
    public static float[] DynamicMap() => DynamicMapValues.Value.ToArray();

    private static readonly Lazy<float[]> DynamicMapValues = new(BuildDynamicMap);

    /// <summary>The shared map itself, for kernels that only read it.</summary>
    internal static float[] DynamicMapTable => DynamicMapValues.Value;

    private static float[] BuildDynamicMap()
    {
        // Built with torch's own linspace and float32 arithmetic, as the Python does, so each value has the same bits:
        // for exponent i the fractions are the midpoints of linspace(0.1, 1, 2^i + 1), scaled by 10^(i-6), with both signs.
        const int maxExponentBits = 7;
        var values = new List<float>(256);
        using (NewDisposeScope())
        {
            for (var i = 0; i < maxExponentBits; i++)
            {
                var count = (1 << i) + 1;
                var boundaries = linspace(0.1, 1.0, count, ScalarType.Float32);
                var means = boundaries.narrow(0, 0, count - 1).Plus(boundaries.narrow(0, 1, count - 1)).DividedBy(2.0);
                var magnitude = Math.Pow(10, -(maxExponentBits - 1) + i);
                values.AddRange(means.Times(magnitude).data<float>().ToArray());
                values.AddRange(means.Times(-magnitude).data<float>().ToArray());
            }
        }
        values.Add(0f);
        values.Add(1f);
        values.Sort();
        return [.. values];
    }

    /// <summary>
    /// bitsandbytes' <c>dQuantize</c> (non-stochastic): a 7-step binary search from the middle of the sorted 256-value
    /// <paramref name="map"/>, then the nearer of the last probe and its neighbour, ties going to the probe.
    /// </summary>
    public static byte QuantizeDynamic(ReadOnlySpan<float> map, float x)
    {
        int pivot = 127, upperPivot = 255, lowerPivot = 0;
        float lower = -1f, upper = 1f;
        var value = map[pivot];
        for (var step = 64; step > 0; step /= 2)
        {
            if (x > value)
            {
                lowerPivot = pivot;
                lower = value;
                pivot += step;
            }
            else
            {
                upperPivot = pivot;
                upper = value;
                pivot -= step;
            }
            value = map[pivot];
        }
        if (upperPivot == 255) upper = map[upperPivot];
        if (lowerPivot == 0) lower = map[lowerPivot];
        if (x > value)
            return (byte)(x > (upper + value) * 0.5f ? upperPivot : pivot);
        return (byte)(x < (lower + value) * 0.5f ? lowerPivot : pivot);
    }

    /// <summary>
    /// Quantizes a float32 or bfloat16 weight (any shape, any device); the result lives on the weight's device. Gives
    /// the same bytes as the scalar <see cref="Quantize(ReadOnlySpan{float}, long[], Device?)"/> (the reference):
    /// x = w * (1 / absmax) in float32, then the code is the number of thresholds x exceeds, NaN (a zero block) giving
    /// code 0 as the kernel's tree does. A contiguous CPU weight goes through a C# kernel (in place, parallel over
    /// blocks); anything else through <see cref="QuantizeWithTorchOps"/> (<c>bucketize</c>, left-closed).
    /// </summary>
    public static Nf4Tensor Quantize(Tensor weight)
    {
        if (weight.NumberOfElements == 0) throw new ArgumentException("cannot quantize an empty tensor");
        if (!Nf4CpuQuantizer.Supports(weight)) return QuantizeWithTorchOps(weight);
        var blocks = (weight.NumberOfElements + BlockSize - 1) / BlockSize;
        var packed = empty([blocks * BlockSize / 2], ScalarType.Byte);
        using var absmax = empty([blocks], ScalarType.Float32);
        Nf4CpuQuantizer.QuantizeBlocks(weight, packed, absmax);
        var (quantizedAbsmax, scales, offset) = QuantizeAbsmax(absmax);
        return new Nf4Tensor(packed, quantizedAbsmax, scales, offset, [.. weight.shape]);
    }

    /// <summary>
    /// <see cref="Quantize(Tensor)"/> with torch ops on the weight's device (the path for GPUs and non-contiguous
    /// weights; on a contiguous CPU weight Quantize runs a C# kernel with the same bytes and no float32/int64 copies).
    /// </summary>
    public static Nf4Tensor QuantizeWithTorchOps(Tensor weight)
    {
        var count = weight.NumberOfElements;
        if (count == 0) throw new ArgumentException("cannot quantize an empty tensor");
        var blocks = (count + BlockSize - 1) / BlockSize;
        Tensor packed;
        float[] absmaxValues;
        using (NewDisposeScope())
        using (no_grad())
        {
            var flat = weight.detach().to(ScalarType.Float32).reshape(-1);
            if (blocks * BlockSize != count)
                flat = cat([flat, zeros(blocks * BlockSize - count, ScalarType.Float32, weight.device)]);
            var byBlock = flat.view(blocks, BlockSize);                                   // (blocks, 64)
            var absmax = byBlock.abs().amax([1]);                                          // (blocks)
            var normalized = byBlock * absmax.reciprocal().unsqueeze(1);                   // (blocks, 64)
            var thresholds = tensor(Thresholds.ToArray(), ScalarType.Float32, weight.device);
            var codes = bucketize(normalized, thresholds, right: false);                   // (blocks, 64) int64
            codes = codes.MaskedFill(normalized.isnan(), 0);
            var pairs = codes.view(-1, 2);                                                  // (blocks * 32, 2)
            packed = pairs.select(1, 0).Times(16).Plus(pairs.select(1, 1)).to(ScalarType.Byte).MoveToOuterDisposeScope();
            using var absmaxCpu = absmax.cpu();
            absmaxValues = absmaxCpu.data<float>().ToArray();
        }
        var (quantizedAbsmax, scales, offset) = QuantizeAbsmax(absmaxValues);
        return new Nf4Tensor(
            PackedCodes: packed,
            QuantizedAbsmax: tensor(quantizedAbsmax, ScalarType.Byte, weight.device),
            AbsmaxScales: tensor(scales, ScalarType.Float32, weight.device),
            AbsmaxOffset: offset,
            Shape: [.. weight.shape]);
    }

    /// <summary>The scalar reference: quantizes row-major <paramref name="values"/> of <paramref name="shape"/> one value
    /// at a time, as the kernel does, and puts the result on <paramref name="device"/> (default CPU). A last partial block
    /// is padded with zeros, which leaves its absmax as is. About 2.5 M weights/s: use <see cref="Quantize(Tensor)"/>
    /// for real weights.</summary>
    public static Nf4Tensor Quantize(ReadOnlySpan<float> values, long[] shape, Device? device = null)
    {
        var count = shape.Aggregate(1L, (a, b) => a * b);
        if (count != values.Length)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] holds {count} values, got {values.Length}");
        if (count == 0)
            throw new ArgumentException("cannot quantize an empty tensor");
        var blocks = (int)((count + BlockSize - 1) / BlockSize);
        var packed = new byte[blocks * BlockSize / 2];
        var absmax = new float[blocks];
        Span<float> block = stackalloc float[BlockSize];
        for (var b = 0; b < blocks; b++)
        {
            var start = b * BlockSize;
            var length = Math.Min(BlockSize, values.Length - start);
            block.Clear();
            values.Slice(start, length).CopyTo(block);
            var max = 0f;
            foreach (var v in block) max = MathF.Max(max, MathF.Abs(v));
            absmax[b] = max;
            var inverse = 1f / max; // bitsandbytes multiplies by the reciprocal; dividing could round differently
            for (var j = 0; j < BlockSize; j += 2)
                packed[(start + j) / 2] = (byte)(QuantizeNormalized(block[j] * inverse) << 4 | QuantizeNormalized(block[j + 1] * inverse));
        }

        var (quantizedAbsmax, scales, offset) = QuantizeAbsmax(absmax);
        return new Nf4Tensor(
            PackedCodes: tensor(packed, ScalarType.Byte, device),
            QuantizedAbsmax: tensor(quantizedAbsmax, ScalarType.Byte, device),
            AbsmaxScales: tensor(scales, ScalarType.Float32, device),
            AbsmaxOffset: offset,
            Shape: [.. shape]);
    }

    /// <summary>Double quantization: (absmax - mean) in blocks of 256, each scaled by its own absmax, to dynamic 8-bit codes.
    /// The code array is padded to whole 256-blocks so the dequantizer can reshape without a remainder.</summary>
    private static (byte[] Codes, float[] Scales, float Offset) QuantizeAbsmax(float[] absmax)
    {
        float offset;
        using (var t = tensor(absmax))
        using (var mean = t.mean())
            offset = mean.item<float>();
        var groups = (absmax.Length + AbsmaxBlockSize - 1) / AbsmaxBlockSize;
        var codes = new byte[groups * AbsmaxBlockSize];
        var scales = new float[groups];
        QuantizeAbsmax(absmax, offset, codes, scales);
        return (codes, scales, offset);
    }

    /// <summary>The same into torch tensors, from a float32 CPU absmax tensor: no managed arrays, which for 7B's
    /// projections would pile up on the large-object heap faster than the GC returns them.</summary>
    private static (Tensor Codes, Tensor Scales, float Offset) QuantizeAbsmax(Tensor absmax)
    {
        float offset;
        using (var mean = absmax.mean())
            offset = mean.item<float>();
        var count = (int)absmax.NumberOfElements;
        var groups = (count + AbsmaxBlockSize - 1) / AbsmaxBlockSize;
        var codes = empty([groups * AbsmaxBlockSize], ScalarType.Byte);
        var scales = empty([groups], ScalarType.Float32);
        unsafe
        {
            QuantizeAbsmax(new ReadOnlySpan<float>(CpuTensorMemory.DataPointer(absmax), count), offset,
                new Span<byte>(CpuTensorMemory.DataPointer(codes), groups * AbsmaxBlockSize),
                new Span<float>(CpuTensorMemory.DataPointer(scales), groups));
        }
        return (codes, scales, offset);
    }

    private static void QuantizeAbsmax(ReadOnlySpan<float> absmax, float offset, Span<byte> codes, Span<float> scales)
    {
        var map = DynamicMapValues.Value;
        Span<float> centred = stackalloc float[AbsmaxBlockSize];
        for (var g = 0; g < scales.Length; g++)
        {
            var start = g * AbsmaxBlockSize;
            var length = Math.Min(AbsmaxBlockSize, absmax.Length - start);
            centred.Clear();
            var max = 0f;
            for (var i = 0; i < length; i++)
            {
                centred[i] = absmax[start + i] - offset;
                max = MathF.Max(max, MathF.Abs(centred[i]));
            }
            scales[g] = max;
            var inverse = 1f / max;
            for (var i = 0; i < AbsmaxBlockSize; i++)
                codes[start + i] = QuantizeDynamic(map, centred[i] * inverse);
        }
    }
}

/// <summary>
/// An NF4 weight with double-quantized absmax (see <see cref="Nf4"/>). Tensors live on one device; none requires grad.
/// <list type="bullet">
/// <item><see cref="PackedCodes"/>: uint8 [blocks * 32], two 4-bit codes per byte, first element high.</item>
/// <item><see cref="QuantizedAbsmax"/>: uint8 [groups * 256], dynamic-map codes of (absmax - offset) / scale.</item>
/// <item><see cref="AbsmaxScales"/>: float32 [groups], one per 256 blocks.</item>
/// <item><see cref="AbsmaxOffset"/>: the mean absmax, added back after dequantizing the absmax.</item>
/// </list>
/// </summary>
public sealed record Nf4Tensor(Tensor PackedCodes, Tensor QuantizedAbsmax, Tensor AbsmaxScales, float AbsmaxOffset, long[] Shape) : IDisposable
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long BlockCount => (ElementCount + Nf4.BlockSize - 1) / Nf4.BlockSize;
    public Device Device => PackedCodes.device;

    /// <summary>Bytes held: codes, 8-bit absmax, float32 scales and the offset (the two shared code tables excluded).</summary>
    public long StorageBytes => PackedCodes.NumberOfElements + QuantizedAbsmax.NumberOfElements + 4 * AbsmaxScales.NumberOfElements + 4;

    // Lookup tables on this weight's device, made on first use. pairValues[byte] = (nf4[byte >> 4], nf4[byte & 15]),
    // so one gather per byte yields both weights and no shift, mask or interleave is needed.
    private Tensor? _pairValues, _dynamicMap;

    /// <summary>
    /// The weight as <paramref name="dtype"/> (float32 or bfloat16) on this tensor's device. On the CPU a C# kernel
    /// writes the result directly (tens of times faster than torch ops, same bits); elsewhere
    /// <see cref="DequantizeWithTorchOps"/> runs on the device.
    /// </summary>
    public Tensor Dequantize(ScalarType dtype = ScalarType.Float32) =>
        Device.type == DeviceType.CPU ? Nf4CpuDequantizer.Dequantize(this, dtype) : DequantizeWithTorchOps(dtype);

    /// <summary>Dequantizes into <paramref name="destination"/> (CPU, contiguous, Float32 or BFloat16, ElementCount
    /// elements, any shape) with the C# kernel: no allocation, so no page faults on a fresh buffer.</summary>
    public void DequantizeInto(Tensor destination) => Nf4CpuDequantizer.DequantizeInto(this, destination);

    /// <summary>
    /// Scratch buffers shared by the weights of one model, which <see cref="LoraFunction"/> dequantizes into
    /// instead of allocating (null: allocate each time). Set by the loader that made the weights.
    /// </summary>
    public Nf4Workspace? Workspace { get; init; }

    /// <summary>The weight as <paramref name="dtype"/> (float32 or bfloat16) on this tensor's device, from torch ops
    /// only: the reference the CPU kernel matches bit for bit, and the path for other devices.</summary>
    public Tensor DequantizeWithTorchOps(ScalarType dtype = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        var blocks = BlockCount;
        var absmax = DequantizeAbsmax().narrow(0, 0, blocks);                                       // (blocks)
        var pairs = PairValues().index_select(0, PackedCodes.to(ScalarType.Int32));                 // (blocks * 32, 2)
        var weight = pairs.view(blocks, Nf4.BlockSize) * absmax.unsqueeze(1);                       // (blocks, 64)
        weight = weight.view(-1);
        if (weight.shape[0] != ElementCount) weight = weight.narrow(0, 0, ElementCount);
        weight = weight.view(Shape);
        if (dtype != ScalarType.Float32) weight = weight.to(dtype);
        return weight.MoveToOuterDisposeScope();
    }

    /// <summary>The float32 absmax per 64-block, padded to whole 256-groups: dynamic[q] * scale + offset.</summary>
    public Tensor DequantizeAbsmax()
    {
        using var scope = NewDisposeScope();
        var map = DynamicMapTable();
        var values = map.index_select(0, QuantizedAbsmax.to(ScalarType.Int32)).view(-1, Nf4.AbsmaxBlockSize); // (groups, 256)
        var absmax = (values * AbsmaxScales.unsqueeze(1)).view(-1).Plus(AbsmaxOffset);                             // (groups * 256)
        return absmax.MoveToOuterDisposeScope();
    }

    private Tensor PairValues()
    {
        if (_pairValues is null)
        {
            var code = Nf4.Code;
            var pairs = new float[256 * 2];
            for (var b = 0; b < 256; b++)
            {
                pairs[2 * b] = code[b >> 4];
                pairs[2 * b + 1] = code[b & 15];
            }
            _pairValues = tensor(pairs, new long[] { 256, 2 }, ScalarType.Float32, Device);
            _pairValues.DetachFromDisposeScope();
        }
        return _pairValues;
    }

    private Tensor DynamicMapTable()
    {
        if (_dynamicMap is null)
        {
            _dynamicMap = tensor(Nf4.DynamicMap(), ScalarType.Float32, Device);
            _dynamicMap.DetachFromDisposeScope();
        }
        return _dynamicMap;
    }

    public void Dispose()
    {
        Workspace?.Release();
        PackedCodes.Dispose();
        QuantizedAbsmax.Dispose();
        AbsmaxScales.Dispose();
        _pairValues?.Dispose();
        _dynamicMap?.Dispose();
    }
}
