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
        var exponents = arange(0, headDim, 2, dtype: ScalarType.Float32, device: device) / headDim;
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
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => x * cos + RotateHalf(x) * sin;
}
