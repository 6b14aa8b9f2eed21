using System.Globalization;
using System.Text;
using System.Text.Json;
using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral;
using Ertas.Mistral.Tokenization;

namespace Ertas.Bench;

/// <summary>
/// The child side of the training scenarios (<c>nf4-dequant</c>, <c>qlora-7b-step</c>, <c>train-100m</c>): each runs
/// in its own process (<c>training-worker KIND ARGS</c>) so its peak RSS is its own and libtorch's thread pool does not
/// compete with another scenario's. Progress goes to stderr, the result as one RESULT line of JSON to stdout.
/// Diagnostic kinds, run by hand (<c>dotnet Ertas.Bench.dll training-worker KIND ...</c>): <c>matmul</c> (GFLOP/s of
/// matmul/mm/linear in f32 and bf16), <c>load-trace BASE</c> (RSS per layer of the streaming QLoRA load),
/// <c>rss-per-step BASE WORK</c> (RSS after each training step, checkpointing off and on), <c>linear-probe</c> (RSS
/// across forwards of one 7B-sized LoRA/NF4 projection), and <see cref="ActivationProbe"/>'s <c>activation-probe</c>,
/// <c>layer-backward</c>, <c>module-probe</c> and <c>fingerprint</c>.
/// </summary>
public static class TrainingWorker
{
    public const string Verb = "training-worker";
    private const string ResultPrefix = "RESULT ";

    public static int Run(IReadOnlyList<string> args)
    {
        Ertas.Modeling.ModelOptions.AutoDevice(); // loads TorchSharp's natives (with the libstdc++ fix) first
        var rest = args.Skip(1).ToArray();
        object result = args[0] switch
        {
            "nf4" => Nf4DequantBenchmark.Measure(Console.Error),
            "qlora-step" => QloraStepBenchmark.Measure(rest[0], rest[1], Console.Error),
            "train-speed" => TrainSpeedBenchmark.Measure(rest[0], rest[1], Console.Error),
            "load-trace" => QloraStepBenchmark.LoadTrace(rest[0], Console.Error),
            "linear-probe" => TrainSpeedBenchmark.LinearProbe(Console.Error),
            "matmul" => TrainSpeedBenchmark.MatmulVariants(Console.Error),
            "rss-per-step" => TrainSpeedBenchmark.RssPerStep(rest[0], rest[1], Console.Error),
            "plan-memory" => PlanMemoryBenchmark.Measure(rest, Console.Error),
            "activation-probe" => ActivationProbe.Run(rest, Console.Error),
            "layer-backward" => ActivationProbe.LayerBackward(rest, Console.Error),
            "module-probe" => ActivationProbe.ModuleProbe(rest, Console.Error),
            "fingerprint" => ActivationProbe.Fingerprint(rest, Console.Error),
            _ => throw new ArgumentException($"unknown worker kind '{args[0]}'"),
        };
        Console.Out.WriteLine(ResultPrefix + JsonSerializer.Serialize(result, result.GetType()));
        return 0;
    }

    /// <summary>Runs <c>Ertas.Bench.dll training-worker ARGS</c> measured, echoes its progress lines, parses its result.</summary>
    public static (T Result, ChildRun Run) Launch<T>(BenchEnvironment env, string description, params string[] args)
    {
        var benchDll = Path.Combine(AppContext.BaseDirectory, "Ertas.Bench.dll");
        var run = ChildProcessMeasurement.Run(description, "dotnet", [benchDll, Verb, .. args], env.Log);
        foreach (var line in run.StderrLines)
            env.Log.WriteLine($"  | {line.Seconds,7:F1} s {line.Text}");
        var json = run.StderrLines.Select(l => l.Text).Single(t => t.StartsWith("stdout: " + ResultPrefix, StringComparison.Ordinal));
        return (JsonSerializer.Deserialize<T>(json[("stdout: " + ResultPrefix).Length..])!, run);
    }

    /// <summary>
    /// bf16 compute where this CPU multiplies bf16 matrices natively (AVX512-BF16 / AMX), else float32: without them
    /// libtorch's bf16 matmul falls back to a scalar loop (about 1 GFLOP/s on 2 AVX2 cores, 40x slower than float32),
    /// which would turn a training step into hours. Decided by the CPU's own flags on x86 (CPUID: AVX512_BF16, AMX-BF16),
    /// else from a 512^3 matmul in each type, the best of 7 runs each, alternating: on a shared machine one run of either
    /// can be slowed several times over (measured: bf16 24-27 against f32 150-170 GFLOP/s in one probe, 543 against 17
    /// in another). The race alone stopped being enough once MKL ran float32 on its AVX-512 kernels (MklCpuDispatch):
    /// at 512^3 float32 then came within noise of bf16 (one run picked float32 on this AVX-512 BF16 CPU), while at
    /// 1024^3 and above bf16 runs about 1.8x faster. The probe's speeds are still reported.
    /// </summary>
    public static (Ertas.Training.ComputePrecision Compute, double Bf16GFlops, double F32GFlops) ChooseCompute(TextWriter log)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        var inputs = new[] { TorchSharp.torch.ScalarType.BFloat16, TorchSharp.torch.ScalarType.Float32 }
            .Select(dtype => (A: TorchSharp.torch.randn([512, 512]).to(dtype), B: TorchSharp.torch.randn([512, 512]).to(dtype))).ToArray();
        var best = new[] { double.MaxValue, double.MaxValue };
        for (var i = 0; i < 8; i++)
            for (var d = 0; d < 2; d++)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                using (inputs[d].A.mm(inputs[d].B)) { }
                if (i > 0) best[d] = Math.Min(best[d], clock.Elapsed.TotalSeconds); // the first of each is a warm-up
            }
        var (bf16, f32) = (2.0 * 512 * 512 * 512 / best[0] / 1e9, 2.0 * 512 * 512 * 512 / best[1] / 1e9);
        var native = NativeBf16Matmul();
        var compute = native ?? bf16 >= f32 ? Ertas.Training.ComputePrecision.BF16 : Ertas.Training.ComputePrecision.F32;
        var why = native is null ? "the faster" : native.Value ? "AVX512_BF16 or AMX-BF16 in CPUID" : "no AVX512_BF16 or AMX-BF16 in CPUID";
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"matmul 512^3: bf16 {bf16:F1} GFLOP/s, f32 {f32:F1} GFLOP/s: computing in {compute} ({why})"));
        return (compute, bf16, f32);
    }

    /// <summary>Whether an x86 CPU has a bf16 dot-product instruction (CPUID leaf 7: AVX512_BF16 in sub-leaf 1 EAX bit 5,
    /// AMX-BF16 in sub-leaf 0 EDX bit 22) that the OS lets run; null off x86.</summary>
    private static bool? NativeBf16Matmul()
    {
        if (!System.Runtime.Intrinsics.X86.X86Base.IsSupported) return null;
        if (System.Runtime.Intrinsics.X86.X86Base.CpuId(0, 0).Eax < 7) return false;
        var avx512Bf16 = (System.Runtime.Intrinsics.X86.X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported;
        var amxBf16 = (System.Runtime.Intrinsics.X86.X86Base.CpuId(7, 0).Edx & (1 << 22)) != 0;
        return avx512Bf16 || amxBf16;
    }

    /// <summary>This process's resident and peak resident memory (VmRSS, VmHWM) in MB.</summary>
    public static (double RssMb, double PeakMb) Memory()
    {
        double rss = 0, peak = 0;
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kb(line) / 1024.0;
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kb(line) / 1024.0;
        }
        return (rss, peak);

        static long Kb(string line) => long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }

    public static string DescribeMemory()
    {
        var (rss, peak) = Memory();
        return string.Create(CultureInfo.InvariantCulture, $"RSS {rss:F0} MB (peak {peak:F0} MB)");
    }

    /// <summary>
    /// A seeded synthetic chat dataset packed into rows of <paramref name="sequenceLength"/> with the checkpoint's own
    /// tokenizer: answers of 60-140 random words, so rows hold a few examples each and little padding.
    /// </summary>
    public static PreparedDataset SyntheticData(string baseFolder, string workFolder, int sequenceLength, int examples)
    {
        Directory.CreateDirectory(workFolder);
        var words = ("the of and to in is was for on that with as by at from his her they which this are be an have not " +
                     "river mountain city village market winter summer music garden letter window bridge engine harbor " +
                     "quiet bright ancient modern gentle rapid distant golden silver careful sudden steady").Split(' ');
        var random = new Random(20240601);
        var file = Path.Combine(workFolder, $"synthetic-{examples}.jsonl");
        var text = new StringBuilder();
        for (var i = 0; i < examples; i++)
        {
            var answer = string.Join(' ', Enumerable.Range(0, random.Next(60, 140)).Select(_ => words[random.Next(words.Length)]));
            var question = $"Tell me about item {i}.";
            text.Append("{\"messages\":[{\"role\":\"user\",\"content\":").Append(JsonSerializer.Serialize(question))
                .Append("},{\"role\":\"assistant\",\"content\":").Append(JsonSerializer.Serialize(answer)).Append("}]}\n");
        }
        File.WriteAllText(file, text.ToString(), new UTF8Encoding(false));
        var tokenizerPath = Path.Combine(baseFolder, "tokenizer.model");
        var tokenizer = MistralTokenizer.Load(tokenizerPath);
        return DatasetPreparer.Prepare([file], tokenizer, null, new PreparationOptions { SequenceLength = sequenceLength },
            Path.Combine(workFolder, "cache"), NullProgressSink.Instance);
    }
}

/// <summary>
/// Model FLOPs of one LoRA training token (forward + backward, activation recomputation not counted: model FLOPs, not
/// hardware FLOPs), for a frozen base with LoRA on every projection:
/// <list type="bullet">
/// <item>base matmuls: forward 2 N_mm, backward input gradients 2 N_mm, no weight gradients (frozen): 4 N_mm, where
/// N_mm counts the projections and lm_head (the embedding is a lookup), lm_head only at the positions with a label;</item>
/// <item>LoRA: per adapted projection r (in + out) parameters; forward 2, backward 4 (input and weight gradients) FLOPs
/// per parameter: 6 N_lora;</item>
/// <item>attention scores and mixing: forward 2 matmuls of 2 S d_attn per token and layer, backward twice that:
/// 12 L S d_attn, S the length of the token's segment (attention runs per packed segment; every pair of a segment is
/// counted, causal or not, as PaLM's MFU counts the full T x T of a causal model). Averaged over the positions:
/// <see cref="AttentionSpan"/> = sum of squared segment lengths / positions.</item>
/// </list>
/// Also the usual 6 N convention (N all parameters, embedding included), which assumes every weight is trained.
/// </summary>
public sealed record TrainingFlops(long TotalParameters, long MatmulParameters, long LoraParameters, double AttentionSpan, long Layers, long AttentionWidth,
    long LmHeadParameters = 0, double LabelledFraction = 1)
{
    /// <summary>Per position: lm_head's share counts only at positions with a label, the only ones the loss computes
    /// (LinearCrossEntropy skips the rest), so a skipped row is neither work done nor work claimed.</summary>
    public double PerToken => 4.0 * (MatmulParameters - LmHeadParameters * (1 - LabelledFraction)) + 6.0 * LoraParameters + 12.0 * Layers * AttentionSpan * AttentionWidth;
    public double SixNPerToken => 6.0 * TotalParameters;

    public static TrainingFlops For(MistralConfig c, int rank, double attentionSpan, double labelledFraction = 1)
    {
        long h = c.HiddenSize, attention = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, i = c.IntermediateSize;
        long[][] projections = [[h, attention], [h, kv], [h, kv], [attention, h], [h, i], [h, i], [i, h]]; // (in, out)
        var perLayerMatmul = projections.Sum(p => p[0] * p[1]);
        var perLayerLora = projections.Sum(p => rank * (p[0] + p[1]));
        var lmHead = h * c.VocabSize;
        var total = c.ExpectedTensors().Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        return new TrainingFlops(total, c.NumHiddenLayers * perLayerMatmul + lmHead, c.NumHiddenLayers * perLayerLora,
            attentionSpan, c.NumHiddenLayers, attention, lmHead, labelledFraction);
    }
}
