using Ertas.Gguf.Mixes;
using LLama.Native;

namespace Ertas.Gguf.Tests.Mixes;

/// <summary>llama.cpp's own quantizer (LLamaSharp's native build) and a tensor-by-tensor comparison against it.</summary>
internal static class LlamaQuantizeJudge
{
    public const int Threads = 2;

    /// <summary>
    /// llama_model_quantize as llama-quantize calls it: output tensor quantized (LLamaSharp's helper defaults to not),
    /// no requantizing, no importance matrix. False when llama.cpp refused.
    /// </summary>
    public static bool Quantize(string input, string output, QuantizationMix mix, int threads = Threads)
    {
        // Straight to the native call: LLamaSharp's LLamaQuantizer.Quantize refuses MOSTLY_BF16 before llama.cpp sees it.
        NativeApi.llama_empty_call();
        var parameters = LLamaModelQuantizeParams.Default();
        parameters.nthread = threads;
        parameters.ftype = (LLamaFtype)(int)mix.FileType;
        parameters.allow_requantize = false;
        parameters.quantize_output_tensor = true;
        return NativeApi.llama_model_quantize(input, output, ref parameters) == 0;
    }

    /// <summary>Every tensor by name (llama.cpp writes its own order): same type, shape and bytes; and the same metadata.</summary>
    public static void AssertSameTensorsAndMetadata(string expectedPath, string actualPath, string label)
    {
        using var expected = new GgufReader(expectedPath);
        using var actual = new GgufReader(actualPath);
        Assert.Equal(expected.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), actual.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        var mismatches = new List<string>();
        foreach (var e in expected.Tensors)
        {
            var a = actual.GetTensor(e.Name);
            if (e.Type != a.Type)
                mismatches.Add($"{e.Name}: llama.cpp {e.Type}, ours {a.Type}");
            else if (!e.Dimensions.SequenceEqual(a.Dimensions))
                mismatches.Add($"{e.Name}: llama.cpp [{string.Join(", ", e.Shape)}], ours [{string.Join(", ", a.Shape)}]");
            else if (!expected.GetTensorBytes(e).SequenceEqual(actual.GetTensorBytes(a)))
                mismatches.Add($"{e.Name} ({e.Type}): bytes differ, first at byte {FirstDifference(expected.GetTensorBytes(e), actual.GetTensorBytes(a))} of {e.ByteSize}");
        }
        Assert.True(mismatches.Count == 0, $"{label}: {mismatches.Count} of {expected.Tensors.Count} tensors differ from llama.cpp:\n  {string.Join("\n  ", mismatches)}");

        Assert.Equal(expected.Metadata.Select(kv => kv.Key).Order(StringComparer.Ordinal), actual.Metadata.Select(kv => kv.Key).Order(StringComparer.Ordinal));
        foreach (var kv in expected.Metadata)
        {
            Assert.True(actual.TryGet(kv.Key, out var ours));
            Assert.Equal(kv.Type, ours.Type);
            Assert.True(SameValue(kv.Value, ours.Value), $"{label}: metadata '{kv.Key}': llama.cpp {kv}, ours {ours}");
        }
    }

    public static IReadOnlyDictionary<string, GgmlType> TensorTypes(string path)
    {
        using var reader = new GgufReader(path);
        return reader.Tensors.ToDictionary(t => t.Name, t => t.Type);
    }

    private static bool SameValue(object a, object b) =>
        a is Array x && b is Array y
            ? x.Length == y.Length && x.Cast<object>().Zip(y.Cast<object>()).All(p => SameValue(p.First, p.Second))
            : a.Equals(b);

    private static int FirstDifference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var n = Math.Min(a.Length, b.Length);
        for (var i = 0; i < n; i++)
            if (a[i] != b[i])
                return i;
        return n;
    }
}
