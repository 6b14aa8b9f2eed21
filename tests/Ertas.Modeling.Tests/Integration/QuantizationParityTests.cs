using Ertas.Core;
using Ertas.Gguf;
using Ertas.Mistral.Tokenization;
using Ertas.TestSupport;
using LLama.Native;
using Xunit.Abstractions;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// Quantization through the CLI on the tiny preset, judged by llama.cpp: <c>ertas quantize</c> writes the tensors
/// llama_model_quantize writes; <c>ertas export --type q4_k_m</c> straight from the HF folder is the same file as
/// quantizing the F32 export; llama.cpp loads and runs what we quantize; our <c>generate</c> runs it too. (Every mix on
/// several row shapes is proven at the library level in Ertas.Gguf.Tests' MixParityTests.)
/// </summary>
[Collection(CliModelsCollection.Name)]
public sealed class QuantizationParityTests(CliModels models, QuantizationParityTests.QuantizedTiny quantized, ITestOutputHelper output)
    : IDisposable, IClassFixture<QuantizationParityTests.QuantizedTiny>
{
    /// <summary>The tiny preset's F32 export quantized to Q4_K_M once by <c>ertas quantize</c>, shared by the tests that only read it.</summary>
    public sealed class QuantizedTiny : IDisposable
    {
        private readonly TempFolder _folder = new("ertas-quant-shared-");
        private string? _q4KM;

        public string Q4KMFromF32(CliModels models)
        {
            lock (_folder)
            {
                if (_q4KM is null)
                {
                    var path = _folder.Combine("tiny-q4_k_m.gguf");
                    Cli.Succeed("quantize", models.TinyF32, path, "--type", "Q4_K_M");
                    _q4KM = path;
                }
                return _q4KM;
            }
        }

        public void Dispose() => _folder.Dispose();
    }

    private const int Threads = 2;
    private const int NewTokens = 32;
    private static readonly string[] Prompts = ["Once upon a time, in a kingdom by the sea,", "The quick brown fox jumps over the lazy dog."];

    private readonly TempFolder _work = new("ertas-quant-");

    public void Dispose() => _work.Dispose();

    [Theory]
    [InlineData("q8_0", "f16")]
    [InlineData("Q4_K_M", "f16")]
    [InlineData("Q4_K_M", "f32")]
    [InlineData("q6_k", "f32")]
    public void QuantizeVerb_OnTheTinyPreset_WritesEveryTensorAsLlamaQuantizeDoes(string type, string input)
    {
        var source = input == "f16" ? models.TinyF16 : models.TinyF32;
        var ours = _work.Combine($"ours-{type}.gguf");
        var result = Cli.Run("quantize", source, ours, "--type", type, "--threads", Threads.ToString());
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("ETA", result.Error, StringComparison.Ordinal);

        var theirs = _work.Combine($"llama-{type}.gguf");
        Assert.True(LlamaQuantize(source, theirs, (LlamaFileType)GgufFileType(ours)), "llama.cpp failed to quantize the tiny preset");
        AssertSameTensors(theirs, ours);
    }

    [Fact]
    public void ExportStraightToQ4KM_IsTheSameFileAsQuantizingTheF32Export_AndDiffersFromQuantizingTheF16Export()
    {
        var direct = _work.Combine("direct.gguf");
        Cli.Succeed("export", "--model", models.TinyFolder, "--out", direct, "--type", "q4_k_m");
        var viaF32 = quantized.Q4KMFromF32(models);
        Assert.Equal(File.ReadAllBytes(viaF32), File.ReadAllBytes(direct));

        // What llama-quantize sees from an F16 intermediate is the weights rounded to f16 first: other bytes.
        var viaF16 = _work.Combine("via-f16.gguf");
        Cli.Succeed("quantize", models.TinyF16, viaF16, "--type", "Q4_K_M");
        Assert.NotEqual(File.ReadAllBytes(viaF16), File.ReadAllBytes(direct));

        // And llama.cpp's own quantizer on the F32 export agrees with the direct export too.
        var theirs = _work.Combine("llama-from-f32.gguf");
        Assert.True(LlamaQuantize(models.TinyF32, theirs, LlamaFileType.MostlyQ4_K_M));
        AssertSameTensors(theirs, direct);
    }

    [Fact]
    public void Q8_0_LlamaCppAndOurGenerateFromTheSameQuantizedFile_GiveTheSameGreedyIds()
    {
        var q8 = _work.Combine("tiny-q8_0.gguf");
        Cli.Succeed("quantize", models.TinyF16, q8, "--type", "Q8_0");
        foreach (var (prompt, agreeing, llama, ours) in CompareGreedy(q8))
            Assert.True(agreeing == NewTokens, $"Q8_0, prompt \"{prompt}\": {agreeing}/{NewTokens} ids agree\n llama.cpp {string.Join(' ', llama)}\n ours      {string.Join(' ', ours)}");
    }

    [Fact]
    public void Q4KM_LlamaCppLoadsAndGenerates_AndOurGenerateRunsTheSameFile()
    {
        var q4 = quantized.Q4KMFromF32(models);
        // llama.cpp quantizes the activations to 8 bits for its Q4_K and Q6_K dot products, we multiply in f32 with
        // the same dequantized weights, so near-ties may break differently: report, do not assert, the agreement.
        foreach (var (prompt, agreeing, llama, _) in CompareGreedy(q4))
        {
            Assert.Equal(NewTokens, llama.Length);
            output.WriteLine($"Q4_K_M \"{prompt}\": {agreeing}/{NewTokens} greedy ids agree with llama.cpp");
        }

        var cli = Cli.Run("generate", "--model", q4, "--prompt", Prompts[0], "--max-tokens", "8", "--greedy", "--ids");
        Assert.True(cli.ExitCode == 0, cli.Error);
        Assert.Equal(8, cli.Out.Trim().Split(' ').Length);
    }

    [Fact]
    public void InspectOfAQuantizedFile_ShowsTheFileTypeTheTensorTypesAndTheBitsPerWeight()
    {
        var q4 = quantized.Q4KMFromF32(models);
        var text = Cli.Succeed("inspect", q4).Out;
        Assert.Contains("file type: Q4_K_M (general.file_type 15)", text, StringComparison.Ordinal);
        Assert.Matches(@"blk\.0\.attn_q\.weight\s+Q4_K ", text);
        Assert.Matches(@"output\.weight\s+Q6_K ", text);
        Assert.Matches(@"blk\.0\.attn_norm\.weight\s+F32 ", text);

        using var reader = new GgufReader(q4);
        var bitsPerWeight = reader.Tensors.Sum(t => t.ByteSize) * 8.0 / reader.Tensors.Sum(t => t.ElementCount);
        Assert.InRange(bitsPerWeight, 4.5, 5.5);
        Assert.Contains($"{bitsPerWeight.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)} bits per weight", text, StringComparison.Ordinal);
    }

    [Fact]
    public void QuantizeVerb_Refusals_LeaveNoOutput()
    {
        var output = _work.Combine("out.gguf");
        var unknown = Cli.Run("quantize", models.TinyF16, output, "--type", "q4_k_xl");
        Assert.Equal((int)Ertas.Cli.ExitCode.Usage, unknown.ExitCode);
        Assert.Contains("ERTAS1001", unknown.Error, StringComparison.Ordinal);
        Assert.Contains("Q4_K_M", unknown.Error, StringComparison.Ordinal);

        var q8 = _work.Combine("q8.gguf");
        Cli.Succeed("quantize", models.TinyF16, q8, "--type", "Q8_0");
        var requantize = Cli.Run("quantize", q8, output, "--type", "Q4_K_M");
        Assert.Equal((int)Ertas.Cli.ExitCode.Failure, requantize.ExitCode);
        Assert.Contains($"ERTAS{(int)ErrorCode.GgufUnsupportedType}", requantize.Error, StringComparison.Ordinal);
        Assert.Contains("already Q8_0", requantize.Error, StringComparison.Ordinal);

        var exists = Cli.Run("quantize", models.TinyF16, q8, "--type", "Q4_K_M");
        Assert.Contains($"ERTAS{(int)ErrorCode.OutputExists}", exists.Error, StringComparison.Ordinal);
        Assert.Contains("--force", exists.Error, StringComparison.Ordinal);
        Assert.Equal((uint)LlamaFileType.MostlyQ8_0, GgufFileType(q8));

        foreach (var r in new[] { unknown, requantize, exists })
            Assert.Single(r.ErrorLines, l => Cli.Diagnostic().IsMatch(l));
        Assert.Equal(["q8.gguf"], Directory.GetFiles(_work.Path).Select(Path.GetFileName));
    }

    private IEnumerable<(string Prompt, int Agreeing, int[] Llama, int[] Ours)> CompareGreedy(string gguf)
    {
        var tokenizer = MistralTokenizer.Load(Path.Combine(models.TinyFolder, "tokenizer.model"));
        using var llama = LlamaCppModel.Load(gguf, contextSize: 128);
        using var source = new GgufTensorSource(gguf);
        using var model = MistralModel.Load(source.ToMistralConfig(), source);
        var results = new List<(string, int, int[], int[])>();
        foreach (var prompt in Prompts)
        {
            var ids = tokenizer.Encode(prompt, addBos: true).ToArray();
            var reference = llama.Greedy(ids, NewTokens, stopId: null).Ids;
            var ours = new Generator(model).Generate(ids, new GenerationOptions { MaxNewTokens = NewTokens, StopAtEos = false }).TokenIds.ToArray();
            var agreeing = reference.Zip(ours).TakeWhile(p => p.First == p.Second).Count();
            output.WriteLine($"{Path.GetFileName(gguf)} \"{prompt}\": first {agreeing}/{NewTokens} ids agree\n  llama.cpp {string.Join(' ', reference)}\n  ours      {string.Join(' ', ours)}");
            results.Add((prompt, agreeing, reference, ours));
        }
        return results;
    }

    private static bool LlamaQuantize(string input, string output, LlamaFileType fileType)
    {
        // The native call, as llama-quantize makes it (output tensor quantized); LLamaQuantizer would skip output.weight.
        // LlamaCppModel sets LLamaSharp's log filter, which is only accepted before the native library loads: let it
        // run first, or this call would load the library and break every later LlamaCppModel in the process.
        System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(LlamaCppModel).TypeHandle);
        NativeApi.llama_empty_call();
        var parameters = LLamaModelQuantizeParams.Default();
        parameters.nthread = Threads;
        parameters.ftype = (LLamaFtype)(int)fileType;
        parameters.allow_requantize = false;
        parameters.quantize_output_tensor = true;
        return NativeApi.llama_model_quantize(input, output, ref parameters) == 0;
    }

    private static uint GgufFileType(string path)
    {
        using var reader = new GgufReader(path);
        return reader.GetUInt32(Keys.General.FileType);
    }

    /// <summary>By name (llama.cpp writes its own order): same type, shape and bytes; and the same file type.</summary>
    private static void AssertSameTensors(string expectedPath, string actualPath)
    {
        using var expected = new GgufReader(expectedPath);
        using var actual = new GgufReader(actualPath);
        Assert.Equal(expected.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), actual.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        var differing = new List<string>();
        foreach (var e in expected.Tensors)
        {
            var a = actual.GetTensor(e.Name);
            if (e.Type != a.Type || !e.Dimensions.SequenceEqual(a.Dimensions) || !expected.GetTensorBytes(e).SequenceEqual(actual.GetTensorBytes(a)))
                differing.Add($"{e.Name}: llama.cpp {e.Type}, ours {a.Type}{(e.Type == a.Type ? " (bytes differ)" : "")}");
        }
        Assert.True(differing.Count == 0, $"{differing.Count} of {expected.Tensors.Count} tensors differ from llama.cpp:\n  {string.Join("\n  ", differing)}");
        Assert.Equal(expected.GetUInt32(Keys.General.FileType), actual.GetUInt32(Keys.General.FileType));
        Assert.Equal(expected.GetUInt32(Keys.General.QuantizationVersion), actual.GetUInt32(Keys.General.QuantizationVersion));
    }
}
