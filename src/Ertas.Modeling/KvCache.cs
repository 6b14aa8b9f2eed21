using Ertas.Core;
using Ertas.Mistral;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling;

/// <summary>
/// Keys and values of the tokens already seen, per layer, for incremental decoding. With a sliding window the
/// buffers are a ring of <c>sliding_window</c> slots (position p lives in slot p mod window, like mistral-inference's
/// RotatingBufferCache): older keys can never be attended again, so memory stays bounded however long generation runs.
/// Without a window the buffer is linear and holds at most <see cref="Capacity"/> tokens.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly LayerKv[] _layers;

    public KvCache(MistralConfig config, ModelOptions options, int maxSequenceLength, int batchSize = 1)
    {
        if (maxSequenceLength <= 0 || batchSize <= 0)
            throw new ErtasException(ErrorCode.ModelInputInvalid,
                $"a KV cache needs a positive length and batch size, got {maxSequenceLength} and {batchSize}");
        var device = options.Resolve();
        Window = config.SlidingWindow;
        Capacity = Math.Min(Window ?? int.MaxValue, maxSequenceLength);
        BatchSize = batchSize;
        _layers = new LayerKv[config.NumHiddenLayers];
        for (var i = 0; i < _layers.Length; i++)
        {
            long[] shape = [batchSize, config.NumKeyValueHeads, Capacity, config.HeadDim]; // (B, n_kv_heads, slots, head_dim)
            _layers[i] = new LayerKv(zeros(shape, options.DType, device), zeros(shape, options.DType, device));
        }
    }

    public int? Window { get; }
    public int Capacity { get; }
    public int BatchSize { get; }

    /// <summary>Tokens seen so far: the position the next forward must start at.</summary>
    public long Length { get; private set; }

    /// <summary>A ring can wrap forever; a linear buffer (or a ring smaller than the window) cannot.</summary>
    private bool CanWrap => Window is { } w && Capacity >= w;

    internal LayerKv Layer(int index) => _layers[index];

    /// <summary>Plans one forward of <paramref name="count"/> new tokens at <paramref name="start"/>: which slots are
    /// read (0..ReadCount), the position each key holds, and the mask.</summary>
    internal CacheStep Plan(long start, int count, Device device)
    {
        if (start != Length)
            throw new ErtasException(ErrorCode.ModelInputInvalid,
                $"the KV cache holds {Length} tokens, so the next forward must start at position {Length}, not {start}");
        if (!CanWrap && start + count > Capacity)
            throw new ErtasException(ErrorCode.ModelInputInvalid,
                $"{start + count} tokens do not fit a KV cache of {Capacity} positions; create the cache with a larger maxSequenceLength");

        var readCount = (int)Math.Min(start, Capacity);
        var keyPositions = new long[readCount + count];
        for (var slot = 0; slot < readCount; slot++)
            keyPositions[slot] = start - 1 - (start - 1 - slot) % Capacity; // the newest position that maps to this slot
        var queryPositions = new long[count];
        for (var t = 0; t < count; t++)
            keyPositions[readCount + t] = queryPositions[t] = start + t;

        // Only the last Capacity new tokens survive in the ring; earlier ones would be overwritten within this step.
        var storeFrom = Math.Max(0, count - Capacity);
        var slots = new long[count - storeFrom];
        for (var t = 0; t < slots.Length; t++) slots[t] = (start + storeFrom + t) % Capacity;

        // Until the ring first wraps, slot p holds position p, so the new keys go right after the cached ones.
        var inOrder = start + count <= Capacity;
        var (mask, isCausal) = AttentionMask.Build(queryPositions, keyPositions, Window, device);
        return new CacheStep(readCount, storeFrom, slots, mask, isCausal, inOrder);
    }

    internal void Commit(int count) => Length += count;

    public void Dispose()
    {
        foreach (var layer in _layers)
        {
            layer.Keys.Dispose();
            layer.Values.Dispose();
        }
    }
}

/// <summary>One layer's buffers, (B, n_kv_heads, slots, head_dim).</summary>
internal sealed record LayerKv(Tensor Keys, Tensor Values)
{
    /// <summary>Returns cached + new keys and values (B, n_kv_heads, ReadCount + T, head_dim) and stores the new ones.</summary>
    public (Tensor Keys, Tensor Values) Append(Tensor newKeys, Tensor newValues, CacheStep step)
    {
        var count = newKeys.shape[2];
        if (step.InOrder && !newKeys.requires_grad && !newValues.requires_grad)
        {
            // The decode path: store in place and attend a view of the buffer, no copy of the cached keys.
            Keys.narrow(2, step.ReadCount, count).copy_(newKeys);
            Values.narrow(2, step.ReadCount, count).copy_(newValues);
            return (Keys.narrow(2, 0, step.ReadCount + count), Values.narrow(2, 0, step.ReadCount + count));
        }
        // A wrapped ring (slots out of order), or gradients that must reach the new keys: attend a concatenation,
        // a copy, so storing afterwards cannot disturb what this step attends to.
        var keys = step.ReadCount == 0 ? newKeys : cat([Keys.narrow(2, 0, step.ReadCount), newKeys], dim: 2);
        var values = step.ReadCount == 0 ? newValues : cat([Values.narrow(2, 0, step.ReadCount), newValues], dim: 2);
        var stored = count - step.StoreFrom;
        using var slots = tensor(step.StoreSlots, device: Keys.device);
        Keys.index_copy_(2, slots, newKeys.narrow(2, step.StoreFrom, stored).detach());
        Values.index_copy_(2, slots, newValues.narrow(2, step.StoreFrom, stored).detach());
        return (keys, values);
    }
}

/// <param name="InOrder">Slot p holds position p for every key this step reads and writes (the ring has not wrapped).</param>
internal sealed record CacheStep(int ReadCount, int StoreFrom, long[] StoreSlots, Tensor? Mask, bool IsCausal, bool InOrder);

/// <summary>
/// Which keys each query may see: key position j is visible from query position i when j &lt;= i and, with a sliding
/// window W, i - W &lt; j (Hugging Face's Mistral semantics). Keys may come in any order (a wrapped ring is not sorted):
/// softmax does not care, only the mask must match.
/// </summary>
public static class AttentionMask
{
    /// <returns>A bool mask (T, S), true = attend; or null with <c>IsCausal</c> when SDPA's built-in causal mask (or
    /// no mask at all) says the same thing, which lets it take its faster path.</returns>
    public static (Tensor? Mask, bool IsCausal) Build(long[] queryPositions, long[] keyPositions, int? window, Device? device = null)
    {
        int t = queryPositions.Length, s = keyPositions.Length;
        var visible = new bool[t * s];
        bool all = true, causal = t == s;
        for (var i = 0; i < t; i++)
            for (var j = 0; j < s; j++)
            {
                var (qp, kp) = (queryPositions[i], keyPositions[j]);
                var v = kp <= qp && (window is not { } w || qp - kp < w);
                visible[i * s + j] = v;
                all &= v;
                causal &= v == (j <= i);
            }
        if (all) return (null, false);
        if (causal) return (null, true);
        return (tensor(visible, [t, s], device: device), false);
    }
}
