using Ertas.Gguf.Adapters;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Merging;

/// <summary>Which base weights a LoRA update is added to.</summary>
public enum BaseWeights
{
    /// <summary>The NF4 round trip of the checkpoint (quantize, then dequantize): what a QLoRA adapter trained against.</summary>
    Nf4,

    /// <summary>The checkpoint's weights as they are: what a plain LoRA adapter trained against.</summary>
    Exact,
}

/// <summary>
/// The base checkpoint with a LoRA adapter folded in, read one tensor at a time like the checkpoint itself, so the GGUF
/// exporter and the HF writer stream a merged model with one tensor in memory. An adapted projection reads as
/// W' = W0 + (alpha / r) * B A in float32, where W0 is the checkpoint weight (<see cref="BaseWeights.Exact"/>) or its
/// NF4 round trip (<see cref="BaseWeights.Nf4"/>) made exactly as <see cref="LoraInjection"/> made it for training
/// (from the weight in the training compute type, dequantized to that type). Every other tensor passes through.
/// Neither the checkpoint nor the adapter is owned.
/// </summary>
public sealed class MergedTensorSource : ITensorSource
{
    private readonly HfCheckpoint _checkpoint;
    private readonly PeftAdapter _adapter;
    private readonly ScalarType _trainingType;
    private int _mergedReads;

    public MergedTensorSource(HfCheckpoint checkpoint, PeftAdapter adapter, BaseWeights baseWeights, ComputePrecision compute = ComputePrecision.F32)
    {
        adapter.VerifyBase(checkpoint.Config, checkpoint.Folder);
        TorchSharpNativeFix.EnsureTorchLoaded();
        (_checkpoint, _adapter, BaseWeights, Compute) = (checkpoint, adapter, baseWeights, compute);
        _trainingType = compute == ComputePrecision.BF16 ? ScalarType.BFloat16 : ScalarType.Float32;
    }

    public BaseWeights BaseWeights { get; }
    public ComputePrecision Compute { get; }

    /// <summary>How many adapted tensors have been read (each merge counts once per read).</summary>
    public int MergedReads => _mergedReads;

    public IReadOnlyList<string> TensorNames => _checkpoint.TensorNames;

    public long[] GetShape(string name) => _checkpoint.GetShape(name);

    public void ReadFloat32(string name, Span<float> destination)
    {
        _checkpoint.ReadFloat32(name, destination);
        if (_adapter.ForBaseTensor(name) is not { } module) return;

        var a = new float[module.Rank * module.InFeatures];
        var b = new float[module.OutFeatures * module.Rank];
        _adapter.ReadA(module, a);
        _adapter.ReadB(module, b);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var weight = empty([module.OutFeatures, module.InFeatures], ScalarType.Float32);   // (out, in)
        destination.CopyTo(FloatSpan(weight));
        var baseWeight = BaseWeights == BaseWeights.Nf4 ? Nf4RoundTrip(weight) : weight;
        var factorB = tensor(b, [module.OutFeatures, module.Rank]);                          // (out, r)
        var factorA = tensor(a, [module.Rank, module.InFeatures]);                           // (r, in)
        var merged = addmm(baseWeight, factorB, factorA, beta: 1, alpha: (float)_adapter.Scaling).contiguous();
        FloatSpan(merged).CopyTo(destination);
        Interlocked.Increment(ref _mergedReads);
    }

    /// <summary>The base as training saw it: quantized from the weight in the compute type, dequantized to that type.</summary>
    private Tensor Nf4RoundTrip(Tensor weight)
    {
        using var quantized = Nf4.Quantize(weight.to(_trainingType));
        return quantized.Dequantize(_trainingType).to(ScalarType.Float32);
    }

    /// <summary>The CPU memory of a contiguous float32 tensor as a span (no copy).</summary>
    private static unsafe Span<float> FloatSpan(Tensor contiguousFloat32)
    {
        var start = (float*)contiguousFloat32.storage<float>().data_ptr() + contiguousFloat32.storage_offset();
        return new Span<float>(start, checked((int)contiguousFloat32.numel()));
    }
}
