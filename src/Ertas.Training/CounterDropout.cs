using Ertas.Modeling;
using Ertas.Modeling.Native;
using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training;

/// <summary>
/// Dropout's mask as a pure function of (seed, element index), applied without the 1 / (1 - p) scale: callers fold the
/// scale into a small operand (LoRA's A, which sees the masked input through a rank-r product). Element i is kept when
/// 16 bits of <see cref="Hash"/>(seed, i / 2) (the low half for even i, the high half for odd i) are at least
/// round(p * 65536); p is honoured to 2^-16. Kept elements are copied bit for bit, dropped ones become +0, so masking is
/// exact in every type and backward applies the same mask to the gradient by calling <see cref="Mask"/> again with the
/// same seed: nothing is stored.
/// <para>
/// Why not libtorch's dropout: its CPU kernel draws every mask element serially from one mt19937 stream (163 M draws a
/// step on the 100m preset, 7 ms for a 2048 x 768 mask, while the other torch thread spins), and autograd then keeps the
/// float32 noise and the dropped float32 input for backward, a quarter of a step's memory. Here one hash covers two
/// elements, on every thread, and no memory. The seed is drawn from torch's default generator, so a run is
/// reproducible from its seed, and activation checkpointing, which restores that generator around its recompute, gets
/// the same mask again.
/// </para>
/// The hash is two rounds of MurmurHash3's 32-bit finalizer keyed by the seed's halves (a bijection of the pair index
/// per round); the index is spread by a multiply by the golden ratio first. On other devices (CUDA) the mask comes from
/// torch's bernoulli with a generator seeded the same way: same distribution, other bits.
/// </summary>
public static unsafe class CounterDropout
{
    private const int ChunkElements = 1 << 16; // 64 K elements per task: 128 KB of bf16, far above scheduling cost

    /// <summary>Element i is dropped when its 16 hash bits are below this.</summary>
    public static ushort Threshold(double p)
    {
        if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must lie in [0, 1)");
        return (ushort)Math.Min(Math.Round(p * 65536.0), ushort.MaxValue);
    }

    /// <summary>The 32-bit hash whose halves decide elements 2 <paramref name="pair"/> and 2 <paramref name="pair"/> + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Hash(ulong seed, long pair)
    {
        var (k0, k1) = Keys(seed, pair);
        return Mix(Mix((uint)pair * Golden + k0) ^ k1);
    }

    /// <summary>Whether element <paramref name="index"/> survives under <paramref name="seed"/> and <paramref name="p"/>.</summary>
    public static bool Kept(ulong seed, long index, double p) => Kept(seed, index, Threshold(p));

    private static bool Kept(ulong seed, long index, ushort threshold) => Half(Hash(seed, index >> 1), index) >= threshold;

    /// <summary>
    /// <paramref name="destination"/> = <paramref name="source"/> where kept, +0 where dropped: both the same type
    /// (Float32 or BFloat16) and element count; the same tensor for in place. CPU tensors must be contiguous; on other
    /// devices torch ops do it.
    /// </summary>
    public static void Mask(Tensor source, Tensor destination, ulong seed, double p)
    {
        if (source.dtype != destination.dtype || source.numel() != destination.numel())
            throw new ArgumentException($"dropout source and destination differ: {source.dtype} x {source.numel()} against {destination.dtype} x {destination.numel()}");
        if (source.dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"dropout takes Float32 or BFloat16, got {source.dtype}");
        if (source.device_type != DeviceType.CPU)
        {
            MaskWithTorchOps(source, destination, seed, p);
            return;
        }
        var threshold = Threshold(p);
        var elements = source.numel();
        var from = (nint)CpuTensorMemory.DataPointer(source);
        var to = (nint)CpuTensorMemory.DataPointer(destination);
        var bf16 = source.dtype == ScalarType.BFloat16;
        var chunks = (int)((elements + ChunkElements - 1) / ChunkElements);
        void RunChunk(int chunk)
        {
            var first = (long)chunk * ChunkElements;
            var count = (int)Math.Min(ChunkElements, elements - first);
            if (bf16) Bf16Chunk((ushort*)from + first, (ushort*)to + first, first, count, seed, threshold);
            else F32Chunk((uint*)from + first, (uint*)to + first, first, count, seed, threshold);
        }
        var threads = Math.Max(1, Math.Min(get_num_threads(), chunks));
        if (threads == 1)
            for (var c = 0; c < chunks; c++) RunChunk(c);
        else
            Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, RunChunk);
    }

    /// <summary>A new tensor holding the masked <paramref name="source"/> (contiguous, the source's type and shape).</summary>
    public static Tensor Mask(Tensor source, ulong seed, double p)
    {
        using var contiguous = source.contiguous();
        var result = empty_like(contiguous);
        Mask(contiguous, result, seed, p);
        return result;
    }

    /// <summary>A seed for one dropout call, drawn from torch's default generator (one int64 draw).</summary>
    public static ulong DrawSeed()
    {
        using var draw = randint(long.MinValue, long.MaxValue, [1], ScalarType.Int64);
        return (ulong)draw.item<long>();
    }

    private const uint Golden = 0x9E3779B9u;

    private static (uint K0, uint K1) Keys(ulong seed, long pair)
    {
        // Chunks never straddle a 2^32 pair boundary (ChunkElements divides 2^33): the high pair bits key round two.
        var high = (uint)((ulong)pair >> 32);
        return ((uint)seed, (uint)(seed >> 32) + high * 0x85EBCA77u);
    }

    private static ushort Half(uint hash, long index) => (ushort)((index & 1) == 0 ? hash : hash >> 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Mix(uint h)
    {
        h ^= h >> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >> 13;
        h *= 0xC2B2AE35u;
        return h ^ (h >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> Mix(Vector<uint> h)
    {
        h ^= h >>> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >>> 13;
        h *= 0xC2B2AE35u;
        return h ^ (h >>> 16);
    }

    /// <summary>Keep lanes (0xFFFF or 0) for the 2 <see cref="Vector{T}.Count"/> elements whose pairs start at
    /// <paramref name="firstPair"/>: lane 2k is the low half of pair k's hash, lane 2k + 1 the high half (little-endian).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<ushort> Keep(Vector<uint> lanes, uint firstPair, uint k0, uint k1, Vector<ushort> threshold)
    {
        var pair = lanes + new Vector<uint>(firstPair);
        var h = Mix(Mix(pair * Golden + new Vector<uint>(k0)) ^ new Vector<uint>(k1));
        return Vector.GreaterThanOrEqual(h.As<uint, ushort>(), threshold);
    }

    private static Vector<uint> Lanes()
    {
        Span<uint> lanes = stackalloc uint[Vector<uint>.Count];
        for (var i = 0; i < lanes.Length; i++) lanes[i] = (uint)i;
        return new Vector<uint>(lanes);
    }

    private static void Bf16Chunk(ushort* from, ushort* to, long first, int count, ulong seed, ushort threshold)
    {
        var (k0, k1) = Keys(seed, first >> 1);
        var lanes = Lanes();
        var limit = new Vector<ushort>(threshold);
        var width = Vector<ushort>.Count;
        var i = 0;
        for (; i + width <= count; i += width)
            (Vector.Load(from + i) & Keep(lanes, (uint)((first + i) >> 1), k0, k1, limit)).Store(to + i);
        for (; i < count; i++)
            to[i] = Kept(seed, first + i, threshold) ? from[i] : (ushort)0;
    }

    private static void F32Chunk(uint* from, uint* to, long first, int count, ulong seed, ushort threshold)
    {
        var (k0, k1) = Keys(seed, first >> 1);
        var lanes = Lanes();
        var limit = new Vector<ushort>(threshold);
        var width = Vector<ushort>.Count; // elements per hash vector; two float vectors
        var half = Vector<uint>.Count;
        var i = 0;
        for (; i + width <= count; i += width)
        {
            // 0xFFFF lanes widened by sign extension stay all ones: one 32-bit mask per float.
            Vector.Widen(Keep(lanes, (uint)((first + i) >> 1), k0, k1, limit).As<ushort, short>(), out var low, out var high);
            (Vector.Load(from + i) & low.As<int, uint>()).Store(to + i);
            (Vector.Load(from + i + half) & high.As<int, uint>()).Store(to + i + half);
        }
        for (; i < count; i++)
            to[i] = Kept(seed, first + i, threshold) ? from[i] : 0u;
    }

    /// <summary>The mask on devices other than the CPU: torch's bernoulli from a generator seeded with
    /// <paramref name="seed"/> (the same seed, the same mask on that device), applied by a multiply, so a dropped
    /// element is x * 0 (-0 for negative x, NaN for an infinite one) where the CPU path writes +0. Runs on the CPU too.</summary>
    public static void MaskWithTorchOps(Tensor source, Tensor destination, ulong seed, double p)
    {
        using var scope = NewDisposeScope();
        using var generator = new torch.Generator(seed, source.device);
        var keep = empty(source.shape, source.dtype, source.device).bernoulli_(1 - p, generator);
        destination.copy_(source.mul(keep).view(destination.shape));
    }
}
