using Ertas.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.TestSupport;

/// <summary>The plain TorchSharp formulation of NF4 dequantization: the reference the tests check our kernels
/// against, and the baseline bench/Ertas.Bench times them against.</summary>
public static class PlainNf4Dequantizer
{
    /// <summary>Unpack both nibbles with shift and mask, interleave, gather each code from the 16-value table, scale.</summary>
    public static Tensor Dequantize(Nf4Tensor q, ScalarType dtype = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        var table = tensor(Nf4.Code.ToArray(), ScalarType.Float32, q.Device);
        var high = q.PackedCodes.bitwise_right_shift(4);
        var low = q.PackedCodes.bitwise_and(15);
        var codes = stack([high, low], 1).view(-1).to(ScalarType.Int64);                 // (blocks * 64)
        var blocks = q.BlockCount;
        var values = table.index_select(0, codes).view(blocks, Nf4.BlockSize);           // (blocks, 64)
        var absmax = q.DequantizeAbsmax().narrow(0, 0, blocks);
        var weight = (values * absmax.unsqueeze(1)).view(-1).narrow(0, 0, q.ElementCount).view(q.Shape);
        return weight.to(dtype).MoveToOuterDisposeScope();
    }
}
