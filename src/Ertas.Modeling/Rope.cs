using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling;

/// <summary>
/// Rotary position embeddings in Hugging Face's "rotate half" layout: dimension i pairs with i + head_dim/2 (not
/// 2i with 2i+1 as in Meta's and llama.cpp's interleaved layout), because HF checkpoints store Q/K weights in that
/// order. Pure functions; the numerics follow HF (frequencies and angles in float32, then cast to the model dtype).
/// </summary>
public static class Rope
{
    /// <summary>1 / theta^(2i / head_dim) for i in [0, head_dim/2): shape (head_dim/2,), float32.</summary>
    public static Tensor InverseFrequencies(int headDim, double theta, Device? device = null)
    {
        var exponents = ScalarSafe.Arange(0, headDim, 2, ScalarType.Float32, device).DividedBy(headDim);
        return pow(theta, exponents).reciprocal();
    }

    /// <summary>cos and sin of every (position, frequency) angle, each half repeated: shapes (T, head_dim).</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor inverseFrequencies, Tensor positions, ScalarType dtype)
    {
        var angles = positions.to(ScalarType.Float32).unsqueeze(1) * inverseFrequencies.unsqueeze(0); // (T, head_dim/2)
        var both = cat([angles, angles], dim: -1);                                                   // (T, head_dim)
        return (both.cos().to(dtype), both.sin().to(dtype));
    }

    /// <summary>(x1, x2) -> (-x2, x1) over the last dimension split in halves.</summary>
    public static Tensor RotateHalf(Tensor x)
    {
        var half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return cat([x2.neg(), x1], dim: -1);
    }

    /// <summary>Rotates x (..., T, head_dim) by its positions; cos/sin (T, head_dim) broadcast over leading dims.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => (x * cos).Plus(RotateHalf(x) * sin);

    /// <summary><see cref="Apply"/> in 4 tensor ops instead of 7: <paramref name="signedSin"/> is sin with its first half
    /// negated, so rotate_half(x) * sin = roll(x, head_dim/2) * signedSin, bit for bit (-a * b == a * -b).</summary>
    internal static Tensor ApplySigned(Tensor x, Tensor cos, Tensor signedSin) =>
        (x * cos).Plus(x.roll(x.shape[^1] / 2, -1) * signedSin);
}

/// <summary>
/// cos and sign-folded sin (see <see cref="Rope.ApplySigned"/>) for positions 0..Positions-1, computed once with
/// <see cref="Rope.CosSin"/>'s numerics and grown on demand, so a decode step only takes two row views. A plain holder,
/// not a module field: a tensor field on a module would be registered as a buffer and add names to the state dict.
/// </summary>
internal sealed class RopeTable(int headDim, double theta, ScalarType dtype, Device device) : IDisposable
{
    private const int InitialPositions = 512;
    private Tensor? _cos, _signedSin; // (positions, head_dim)

    public long Positions => _cos?.shape[0] ?? 0;

    /// <summary>Rows for positions start..start+count-1: views, shapes (count, head_dim).</summary>
    public (Tensor Cos, Tensor SignedSin) Rows(long start, long count)
    {
        if (start + count > Positions) Grow(Math.Max(start + count, Math.Max(2 * Positions, InitialPositions)));
        return (_cos!.narrow(0, start, count), _signedSin!.narrow(0, start, count));
    }

    private void Grow(long positions)
    {
        Dispose();
        using var scope = NewDisposeScope();
        var all = ScalarSafe.Arange(0, positions, 1, ScalarType.Int64, device);
        var (cos, sin) = Rope.CosSin(Rope.InverseFrequencies(headDim, theta, device), all, dtype); // (positions, head_dim)
        var half = headDim / 2;
        var signedSin = cat([sin.narrow(-1, 0, half).neg(), sin.narrow(-1, half, half)], dim: -1);
        // The table outlives whatever dispose scope the forward that grew it runs in.
        _cos = cos.contiguous().DetachFromDisposeScope();
        _signedSin = signedSin.DetachFromDisposeScope();
    }

    public void Dispose()
    {
        _cos?.Dispose();
        _signedSin?.Dispose();
        (_cos, _signedSin) = (null, null);
    }
}
