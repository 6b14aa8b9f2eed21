using System.Runtime.CompilerServices;

namespace Ertas.Mistral.Presets;

/// <summary>
/// A portable, seekable random stream (SplitMix64-seeded xoshiro256**): the same seed gives the same numbers on
/// every machine and runtime, and independent streams per (tensor, chunk) let chunks fill in parallel while the
/// bytes stay identical to a single-threaded run. System.Random's algorithm is not a documented contract.
/// </summary>
public struct SeededUniform
{
    private ulong _s0, _s1, _s2, _s3;

    public SeededUniform(ulong seed, ulong stream, ulong chunk)
    {
        var x = seed ^ (stream * 0x9E3779B97F4A7C15UL) ^ (chunk * 0xD1B54A32D192ED03UL);
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        var z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong NextUInt64()
    {
        var result = BitOperations.RotateLeft(_s1 * 5, 7) * 9;
        var t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitOperations.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [-1, 1) with 24 random bits, exactly representable in float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float NextSigned() => (float)((long)(NextUInt64() >> 40) - (1L << 23)) * (1.0f / (1 << 23));

    /// <summary>FNV-1a of a tensor name: the per-tensor stream id, so adding a tensor never shifts the others.</summary>
    public static ulong StreamId(string name)
    {
        var h = 0xcbf29ce484222325UL;
        foreach (var c in name)
        {
            h ^= c;
            h *= 0x100000001b3UL;
        }
        return h;
    }
}

file static class BitOperations
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));
}
