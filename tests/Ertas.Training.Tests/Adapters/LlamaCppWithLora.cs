using System.Runtime.CompilerServices;
using Ertas.TestSupport;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Ertas.Training.Tests.Adapters;

/// <summary>
/// llama.cpp running a base GGUF with a LoRA adapter GGUF applied at scale 1 (what <c>llama-cli -m base.gguf --lora
/// adapter.gguf</c> does), with the settings of <see cref="LlamaCppModel"/>: f32 KV cache, no flash attention, raw
/// logits for greedy decoding. LlamaCppModel keeps its weights private, so the adapter is applied here.
/// </summary>
internal sealed class LlamaCppWithLora : IDisposable
{
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;

    private LlamaCppWithLora(LLamaWeights weights, LLamaContext context) => (_weights, _context) = (weights, context);

    public static LlamaCppWithLora Load(string baseGguf, string adapterGguf, int contextSize = 256, int threads = 2)
    {
        // LlamaCppModel's static constructor configures the native library (log filter), which is only possible before it loads.
        RuntimeHelpers.RunClassConstructor(typeof(LlamaCppModel).TypeHandle);
        var parameters = new ModelParams(baseGguf)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)contextSize,
            UBatchSize = (uint)contextSize,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
        };
        var weights = LLamaWeights.LoadFromFile(parameters);
        try
        {
            var adapter = weights.NativeHandle.LoadLoraFromFile(adapterGguf);
            var context = weights.CreateContext(parameters);
            context.NativeHandle.SetLoraAdapters([(adapter, 1.0f)]);
            return new LlamaCppWithLora(weights, context);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>Greedy decoding as <see cref="LlamaCppModel.Greedy"/> does it.</summary>
    public (int[] Ids, float[][] Logits) Greedy(IReadOnlyList<int> prompt, int maxTokens, int? stopId)
    {
        _context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (var i = 0; i < prompt.Count; i++)
            batch.Add((LLamaToken)prompt[i], i, (LLamaSeqId)0, i == prompt.Count - 1);
        var ids = new List<int>();
        var logits = new List<float[]>();
        var position = prompt.Count;
        for (var step = 0; step < maxTokens; step++)
        {
            var result = _context.Decode(batch);
            if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
            var row = _context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
            logits.Add(row);
            var next = LlamaCppModel.ArgMax(row);
            ids.Add(next);
            if (next == stopId) break;
            batch.Clear();
            batch.Add((LLamaToken)next, position++, (LLamaSeqId)0, true);
        }
        return (ids.ToArray(), logits.ToArray());
    }

    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
