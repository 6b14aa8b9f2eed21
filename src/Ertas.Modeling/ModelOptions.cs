using System.Runtime.InteropServices;
using Ertas.Core;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling;

/// <summary>Where the network lives and in which precision. The defaults need no GPU.</summary>
public sealed record ModelOptions
{
    /// <summary>Parameter and activation type: <see cref="ScalarType.Float32"/> or <see cref="ScalarType.BFloat16"/>.
    /// Norms and softmax inputs are still computed in float32, and logits are always returned as float32.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>A torch device string: "cpu" or "cuda" ("cuda:1" and so on).</summary>
    public string Device { get; init; } = "cpu";

    public static ModelOptions Default { get; } = new();

    /// <summary>"cuda" when TorchSharp sees a CUDA device (a GPU runner with TorchSharp-cuda), else "cpu".</summary>
    public static string AutoDevice()
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        return cuda.is_available() ? "cuda" : "cpu";
    }

    /// <summary>Checks the options and loads TorchSharp's natives; returns the device to allocate on.</summary>
    internal Device Resolve()
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        if (DType is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ErtasException(ErrorCode.UnsupportedDtype,
                $"model dtype must be Float32 or BFloat16, got {DType}");
        if (Device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase) && !cuda.is_available())
            throw new ErtasException(ErrorCode.DeviceUnavailable,
                $"device \"{Device}\" was requested but no CUDA device is available to TorchSharp (this build uses TorchSharp-cpu); use \"cpu\"");
        try
        {
            return torch.device(Device);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or ExternalException)
        {
            throw new ErtasException(ErrorCode.DeviceUnavailable, $"unknown device \"{Device}\": use \"cpu\" or \"cuda\"", inner: e);
        }
    }
}
