using Ertas.Gguf;
using Ertas.Gguf.Mixes;
using LLama.Native;

namespace Ertas.Bench;

/// <summary>One mix, quantized from the same F16 GGUF by both quantizers, and how their outputs compare.</summary>
public sealed record QuantizeMixResult(string Mix, ChildRun Ours, long OursBytes, ChildRun LlamaCpp, long LlamaBytes,
    int Tensors, int DifferentTensors, bool SameMetadata, string FirstDifference)
{
    public bool IdenticalBytes => DifferentTensors == 0 && SameMetadata;

    /// <summary>Above 1: we are faster.</summary>
    public double SpeedRatio => LlamaCpp.WallSeconds / Ours.WallSeconds;
}

public sealed record QuantizeBenchResult(string Preset, string Input, long InputBytes, int Threads, bool InputReused, string LoadBefore, string LoadAfter,
    IReadOnlyList<QuantizeMixResult> Mixes);

/// <summary>
/// <c>quantize-7b</c> / <c>quantize-tiny</c>: the preset's F16 GGUF quantized to Q8_0, Q4_K_M and Q6_K by
/// <c>ertas quantize</c> and by llama.cpp's <c>llama_model_quantize</c> (LLamaSharp's native build), each in its own
/// child process (this program's <c>llama-quantize-worker</c> for llama.cpp) so both peak RSS figures are the
/// kernel's high-water mark of a process that did nothing else. Same input, same thread count; the outputs are
/// compared tensor by tensor by name (llama.cpp writes its own tensor order) and key by key.
/// </summary>
public static class QuantizeFileBenchmark
{
    public const string WorkerVerb = "llama-quantize-worker";
    public const int Threads = 2;
    public const int TargetPeakRssMb = 1024;
    public static readonly string[] MixNames = ["Q8_0", "Q4_K_M", "Q6_K"];

    /// <summary>The 7b preset's shapes with four layers: every 7B tensor shape, a 1.9 GB file, minutes instead of a quarter hour.</summary>
    public const string FourLayers = "7b-4l";

    public static QuantizeBenchResult Run(BenchEnvironment env, string preset, bool keepFiles, IReadOnlyList<string>? mixNames = null)
    {
        var reused = preset switch
        {
            "7b" => Ensure7bF16(env),
            FourLayers => EnsurePresetF16(env, FourLayers, "--preset", "7b", "--layers", "4"),
            _ => EnsurePresetF16(env, "tiny", "--preset", "tiny"),
        };
        var input = F16Path(env, preset);
        var inputBytes = new FileInfo(input).Length;
        var loadBefore = GenerateBenchmark.LoadAverage();
        var mixes = new List<QuantizeMixResult>();
        try
        {
            foreach (var name in mixNames ?? MixNames)
                mixes.Add(RunMix(env, preset, input, QuantizationMixes.Parse(name)));
        }
        finally
        {
            if (preset != "tiny" && !keepFiles)
            {
                File.Delete(input);
                // The 7b checkpoint is export-7b's (reused); the 4-layer one was deleted once exported.
                var folder = Path.Combine(env.WorkDir, "7b");
                if (preset == "7b" && Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
                env.Log.WriteLine($"deleted {(preset == "7b" ? folder + " and " : "")}{input} (pass --keep to keep them)");
            }
        }
        return new QuantizeBenchResult(preset, Path.GetFileName(input), inputBytes, Threads, reused, loadBefore, GenerateBenchmark.LoadAverage(), mixes);
    }

    public static string F16Path(BenchEnvironment env, string preset) => Path.Combine(env.WorkDir, $"{preset}.f16.gguf");

    /// <summary>The child side: <c>llama-quantize-worker IN OUT FTYPE THREADS</c>, llama-quantize's parameters.</summary>
    public static int RunWorker(IReadOnlyList<string> args)
    {
        var (input, output, fileType, threads) = (args[0], args[1], int.Parse(args[2]), int.Parse(args[3]));
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            if (level == LLamaLogLevel.Error) Console.Error.Write("llama.cpp: " + message);
        });
        NativeApi.llama_empty_call();
        var parameters = LLamaModelQuantizeParams.Default();
        parameters.nthread = threads;
        parameters.ftype = (LLamaFtype)fileType;
        parameters.allow_requantize = false;
        parameters.quantize_output_tensor = true;
        var status = NativeApi.llama_model_quantize(input, output, ref parameters);
        Console.Error.WriteLine($"llama_model_quantize returned {status}");
        return status == 0 ? 0 : 1;
    }

    private static QuantizeMixResult RunMix(BenchEnvironment env, string preset, string input, QuantizationMix mix)
    {
        var ours = Path.Combine(env.WorkDir, $"{preset}.{mix.Name}.ertas.gguf");
        var theirs = Path.Combine(env.WorkDir, $"{preset}.{mix.Name}.llama.gguf");
        try
        {
            var oursRun = env.RunErtas($"ertas quantize {mix.Name}", "quantize", input, ours, "--type", mix.Name, "--threads", Threads.ToString(), "--force");
            var benchDll = Path.Combine(AppContext.BaseDirectory, "Ertas.Bench.dll");
            File.Delete(theirs);
            var llamaRun = ChildProcessMeasurement.Run($"llama.cpp quantize {mix.Name}", "dotnet",
                [benchDll, WorkerVerb, input, theirs, ((int)mix.FileType).ToString(), Threads.ToString()], env.Log);
            var (tensors, different, sameMetadata, first) = Compare(theirs, ours);
            var result = new QuantizeMixResult(mix.Name, oursRun, new FileInfo(ours).Length, llamaRun, new FileInfo(theirs).Length,
                tensors, different, sameMetadata, first);
            env.Log.WriteLine($"  {mix.Name}: ours {oursRun.WallSeconds:F1} s / {oursRun.PeakRssMb:F0} MB, llama.cpp {llamaRun.WallSeconds:F1} s / {llamaRun.PeakRssMb:F0} MB, " +
                              $"identical: {result.IdenticalBytes} ({different} of {tensors} tensors differ{(first.Length > 0 ? ", " + first : "")}; metadata same: {sameMetadata})");
            return result;
        }
        finally
        {
            File.Delete(ours);
            File.Delete(theirs);
        }
    }

    /// <summary>Tensors matched by name: same type, shape and bytes; metadata key by key, order ignored.</summary>
    private static (int Tensors, int Different, bool SameMetadata, string First) Compare(string expectedPath, string actualPath)
    {
        using var expected = new GgufReader(expectedPath);
        using var actual = new GgufReader(actualPath);
        var different = 0;
        var first = "";
        foreach (var e in expected.Tensors)
        {
            string? why = !actual.TryGetTensor(e.Name, out var a) ? "missing in ours"
                : a.Type != e.Type ? $"llama.cpp {e.Type}, ours {a.Type}"
                : !a.Dimensions.SequenceEqual(e.Dimensions) ? "shapes differ"
                : !expected.GetTensorBytes(e).SequenceEqual(actual.GetTensorBytes(a)) ? $"{e.Type} bytes differ"
                : null;
            if (why is null) continue;
            different++;
            if (first.Length == 0) first = $"{e.Name}: {why}";
        }
        different += actual.Tensors.Count(t => !expected.TryGetTensor(t.Name, out _));

        var sameMetadata = expected.Metadata.Count == actual.Metadata.Count
            && expected.Metadata.All(kv => actual.TryGet(kv.Key, out var ours) && ours.Type == kv.Type && SameValue(kv.Value, ours.Value));
        return (expected.Tensors.Count, different, sameMetadata, first);
    }

    private static bool SameValue(object a, object b) =>
        a is Array x && b is Array y
            ? x.Length == y.Length && x.Cast<object>().Zip(y.Cast<object>()).All(p => SameValue(p.First, p.Second))
            : a.Equals(b);

    /// <summary>The export-7b scenario's files: its checkpoint (reused when complete) exported to F16 unless already there.</summary>
    private static bool Ensure7bF16(BenchEnvironment env)
    {
        var output = F16Path(env, "7b");
        if (IsLlamaGguf(output, expectedTensors: 291))
        {
            env.Log.WriteLine($"input: {output} (reused)");
            return true;
        }
        var folder = ExportBenchmark.EnsureCheckpoint(env);
        env.RunErtas("export 7b f16", "export", "--model", folder, "--out", output, "--type", "f16", "--force");
        return false;
    }

    private static bool EnsurePresetF16(BenchEnvironment env, string name, params string[] presetArguments)
    {
        var folder = Path.Combine(env.WorkDir, name);
        env.RunErtas($"base create {name}", ["base", "create", .. presetArguments, "--out", folder, "--force"]);
        env.RunErtas($"export {name} f16", "export", "--model", folder, "--out", F16Path(env, name), "--type", "f16", "--force");
        Directory.Delete(folder, recursive: true);
        return false;
    }

    /// <summary>A complete GGUF (exports are atomic, so a present file is whole) with the 7B tensor count.</summary>
    private static bool IsLlamaGguf(string path, int expectedTensors)
    {
        if (!File.Exists(path)) return false;
        try
        {
            using var reader = new GgufReader(path);
            return reader.Architecture == GgufConstants.LlamaArchitecture && reader.Tensors.Count == expectedTensors
                && reader.Tensors.All(t => t.Type == GgmlType.F16 || t.Type == GgmlType.F32);
        }
        catch (Ertas.Core.ErtasException)
        {
            return false;
        }
    }
}
