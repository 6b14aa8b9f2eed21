using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Ertas.TestSupport;

/// <summary>
/// The outside judge: real llama.cpp (through LLamaSharp) running a GGUF file. Greedy decoding reads the raw
/// last-position logits, so tests compare logits and ids without any sampler in between.
/// </summary>
public sealed class LlamaCppModel : IDisposable
{
    private readonly LLamaWeights _weights;
    private readonly LLamaContext? _context;

    // LLamaSharp accepts configuration only before its native library loads, so set the log filter once per process;
    // when another test loaded llama.cpp first, its logging stays as it is.
    static LlamaCppModel()
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

    private LlamaCppModel(LLamaWeights weights, LLamaContext? context)
    {
        _weights = weights;
        _context = context;
    }

    /// <summary>Loads with an f32 KV cache and no flash attention, so llama.cpp computes in full precision. With
    /// <paramref name="loraAdapter"/>, that adapter GGUF is applied at scale 1 (what <c>llama-cli --lora</c> does).</summary>
    public static LlamaCppModel Load(string ggufPath, int contextSize = 512, int threads = 2, bool vocabOnly = false, string? loraAdapter = null)
    {
        var parameters = new ModelParams(ggufPath)
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
            VocabOnly = vocabOnly,
        };
        var weights = LLamaWeights.LoadFromFile(parameters);
        try
        {
            var context = vocabOnly ? null : weights.CreateContext(parameters);
            if (loraAdapter is not null)
            {
                var adapter = weights.NativeHandle.LoadLoraFromFile(loraAdapter);
                (context ?? throw new ArgumentException("a LoRA adapter needs a context, not vocabOnly"))
                    .NativeHandle.SetLoraAdapters([(adapter, 1.0f)]);
            }
            return new LlamaCppModel(weights, context);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    public int VocabSize => _weights.Vocab.Count;
    public int LayerCount => _weights.NativeHandle.LayerCount;
    public int EmbeddingSize => _weights.EmbeddingSize;

    public string? Metadata(string key) => _weights.Metadata.TryGetValue(key, out var v) ? v : null;

    /// <summary>
    /// Text as text: control-token syntax such as "&lt;s&gt;" in the input is not parsed unless <paramref name="special"/>
    /// (llama.cpp's parse_special).
    /// </summary>
    public int[] Tokenize(string text, bool addBos, bool special = false) =>
        _weights.Tokenize(text, addBos, special, Encoding.UTF8).Select(t => (int)t).ToArray();

    /// <summary>Greedy decoding: argmax of the raw logits, lowest id on ties. Returns the new ids and each step's logits.</summary>
    public (int[] Ids, float[][] Logits) Greedy(IReadOnlyList<int> prompt, int maxTokens, int? stopId)
    {
        var context = _context ?? throw new InvalidOperationException("loaded vocab-only");
        context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (var i = 0; i < prompt.Count; i++)
            batch.Add((LLamaToken)prompt[i], i, (LLamaSeqId)0, i == prompt.Count - 1);
        var ids = new List<int>();
        var logits = new List<float[]>();
        var position = prompt.Count;
        for (var step = 0; step < maxTokens; step++)
        {
            var result = context.Decode(batch);
            if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
            var row = context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
            logits.Add(row);
            var next = ArgMax(row);
            ids.Add(next);
            if (next == stopId) break;
            batch.Clear();
            batch.Add((LLamaToken)next, position++, (LLamaSeqId)0, true);
        }
        return (ids.ToArray(), logits.ToArray());
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    public void Dispose()
    {
        _context?.Dispose();
        _weights.Dispose();
    }
}
