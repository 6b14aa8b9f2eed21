using System.Text;
using Ertas.Core;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Ertas.Eval;

/// <summary>
/// A GGUF in llama.cpp (through LLamaSharp), the runtime users deploy: greedy generation and per-token
/// log-probabilities from raw logits, no sampler in between. Every call runs in a fresh context with the same context
/// size, batch and threads, since batch shape and cache reuse change llama.cpp's logits (issues #7052, #7594), and an
/// f32 KV cache.
/// </summary>
public sealed class LlamaCppEvaluator : IDisposable
{
    private readonly LLamaWeights _weights;
    private readonly ModelParams _parameters;

    // LLamaSharp takes its configuration only before the native library loads: once per process. A host that loaded
    // it first (a test, another library) keeps its own logging; that costs nothing but log noise.
    static LlamaCppEvaluator()
    {
        try
        {
            NativeLibraryConfig.All.WithLogCallback((level, message) =>
            {
                if (level == LLamaLogLevel.Error) Console.Error.Write("llama.cpp: " + message);
            });
        }
        catch (InvalidOperationException)
        {
        }
    }

    private LlamaCppEvaluator(LLamaWeights weights, ModelParams parameters)
    {
        _weights = weights;
        _parameters = parameters;
    }

    /// <summary>LLamaSharp's version, which pins the llama.cpp build it carries.</summary>
    public static string RuntimeVersion =>
        typeof(LlamaCppEvaluator).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "LLamaSharpVersion")?.Value ?? "unknown";

    public static LlamaCppEvaluator Load(string ggufPath, DecodeSettings settings)
    {
        var parameters = Parameters(ggufPath, settings.Threads);
        parameters.ContextSize = (uint)settings.ContextSize;
        parameters.BatchSize = (uint)settings.BatchSize;
        parameters.UBatchSize = (uint)settings.BatchSize;
        return new LlamaCppEvaluator(LoadWeights(parameters, ggufPath), parameters);
    }

    /// <summary>How every llama.cpp model here is run (evals, chat): on the CPU, an f32 KV cache and no flash
    /// attention, so the numbers are the model's and not the cache's rounding (an f16 cache moves log-probabilities in
    /// the third decimal, which snapshots keep to four).</summary>
    internal static ModelParams Parameters(string ggufPath, int threads) => new(ggufPath)
    {
        Threads = threads,
        BatchThreads = threads,
        GpuLayerCount = 0,
        TypeK = GGMLType.GGML_TYPE_F32,
        TypeV = GGMLType.GGML_TYPE_F32,
        FlashAttention = false,
    };

    /// <summary>Loads the weights, with llama.cpp's failures as ERTAS errors; being a member, it also runs the static
    /// constructor that configures LLamaSharp's logging first.</summary>
    internal static LLamaWeights LoadWeights(ModelParams parameters, string ggufPath)
    {
        try
        {
            return LLamaWeights.LoadFromFile(parameters);
        }
        catch (LLama.Exceptions.RuntimeError e)
        {
            throw new ErtasException(ErrorCode.EvalModelUnusable, $"llama.cpp could not load the model: {e.Message}", ggufPath);
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException)
        {
            // LLamaSharp looks for runtimes/<rid>/native/<avx level>/libllama.so beside the app.
            throw new ErtasException(ErrorCode.NativeLibraryLoad,
                $"llama.cpp's native library could not be loaded from {AppContext.BaseDirectory}runtimes/: {(e.InnerException ?? e).Message.Split('\n')[0]}");
        }
    }

    public int VocabSize => _weights.Vocab.Count;

    /// <summary>Greedy decoding from <paramref name="prompt"/>: argmax of the raw logits (lowest id on ties) until
    /// <paramref name="stopId"/> (not included) or <paramref name="maxTokens"/> tokens.</summary>
    public (int[] Ids, bool Stopped) Generate(IReadOnlyList<int> prompt, int maxTokens, int stopId, CancellationToken cancellationToken)
    {
        using var context = _weights.CreateContext(_parameters);
        var batch = new LLamaBatch();
        Feed(context, batch, prompt, 0, logitsFrom: prompt.Count - 1);
        var ids = new List<int>();
        var position = prompt.Count;
        for (var step = 0; step < maxTokens; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var next = ArgMax(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            if (next == stopId)
                return (ids.ToArray(), true);
            ids.Add(next);
            if (step == maxTokens - 1)
                break;
            batch.Clear();
            batch.Add((LLamaToken)next, position++, (LLamaSeqId)0, true);
            Decode(context, batch);
        }
        return (ids.ToArray(), false);
    }

    /// <summary>log p(continuation[i] | context, continuation[..i]) for each continuation token, from one batch.</summary>
    public double[] ContinuationLogProbs(IReadOnlyList<int> context, IReadOnlyList<int> continuation, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (context.Count == 0 || continuation.Count == 0)
            throw new ArgumentException("context and continuation must both hold tokens");
        using var llama = _weights.CreateContext(_parameters);
        var all = context.Concat(continuation).ToList();
        var batch = new LLamaBatch();
        Feed(llama, batch, all, 0, logitsFrom: context.Count - 1);
        var result = new double[continuation.Count];
        for (var i = 0; i < continuation.Count; i++)
        {
            // Batch index of the position that predicts continuation[i].
            var logits = llama.NativeHandle.GetLogitsIth(context.Count - 1 + i);
            result[i] = LogSoftmaxAt(logits, continuation[i]);
        }
        return result;
    }

    private static void Feed(LLamaContext context, LLamaBatch batch, IReadOnlyList<int> tokens, int start, int logitsFrom)
    {
        batch.Clear();
        for (var i = 0; i < tokens.Count; i++)
            batch.Add((LLamaToken)tokens[i], start + i, (LLamaSeqId)0, i >= logitsFrom);
        Decode(context, batch);
    }

    private static void Decode(LLamaContext context, LLamaBatch batch)
    {
        var result = context.Decode(batch);
        if (result != DecodeResult.Ok)
            throw new ErtasException(ErrorCode.EvalModelUnusable, $"llama_decode failed ({result}) on {batch.TokenCount} tokens");
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>log softmax(logits)[index] in double, with the max subtracted first.</summary>
    public static double LogSoftmaxAt(ReadOnlySpan<float> logits, int index)
    {
        double max = float.NegativeInfinity;
        foreach (var l in logits)
            if (l > max) max = l;
        double sum = 0;
        foreach (var l in logits)
            sum += Math.Exp(l - max);
        return logits[index] - max - Math.Log(sum);
    }

    /// <summary>Text of ids as llama.cpp itself would print them (for diagnostics only).</summary>
    public string Detokenize(IEnumerable<int> ids)
    {
        var decoder = new StreamingTokenDecoder(Encoding.UTF8, _weights);
        foreach (var id in ids)
            decoder.Add((LLamaToken)id);
        return decoder.Read();
    }

    public void Dispose() => _weights.Dispose();
}
