namespace Ertas.Mistral;

/// <summary>Element types of checkpoint tensors (safetensors spelling in <see cref="DTypes.SafetensorsName"/>).</summary>
public enum DType
{
    F32,
    F16,
    BF16,
}

public static class DTypes
{
    public static int Size(this DType t) => t == DType.F32 ? 4 : 2;

    public static string SafetensorsName(this DType t) => t switch
    {
        DType.F32 => "F32",
        DType.F16 => "F16",
        DType.BF16 => "BF16",
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}

/// <summary>
/// Anything the network can load weights from, one tensor at a time (an HF folder, a GGUF file), named with
/// Hugging Face's tensor names and shaped as HF stores them ([out, in] row-major). Reading one tensor at a time
/// is what keeps a 7B load from needing the whole model in RAM twice.
/// </summary>
public interface ITensorSource
{
    IReadOnlyList<string> TensorNames { get; }

    long[] GetShape(string name);

    /// <summary>Converts the tensor to float32 into <paramref name="destination"/> (length = element count).</summary>
    void ReadFloat32(string name, Span<float> destination);
}
