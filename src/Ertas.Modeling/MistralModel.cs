using Ertas.Core;
using Ertas.Mistral;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Modeling;

// The Mistral decoder, top to bottom (FACTS §2):
//   logits = lm_head(norm(layers(embed_tokens(ids))))
//   layer:   h = x + self_attn(input_layernorm(x));  out = h + mlp(post_attention_layernorm(h))
// Field names are Hugging Face's checkpoint keys, so named_parameters() yields exactly HF's tensor names
// ("model.layers.0.self_attn.q_proj.weight", ...) and loading needs no name mapping.
// Shapes: B batch, T new tokens, S attended keys, H hidden_size.
#pragma warning disable IDE1006 // snake_case fields: TorchSharp turns field names into parameter names

/// <summary>y = x W^T, no bias. Weights are allocated, not initialised: they come from a checkpoint.</summary>
public sealed class Linear : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight; // (out_features, in_features)

    public Linear(long inFeatures, long outFeatures, ScalarType dtype, Device device) : base(nameof(Linear))
    {
        weight = new Parameter(empty([outFeatures, inFeatures], dtype, device));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => F.linear(x, weight);
}

/// <summary>Token id -> row of <c>weight</c>.</summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight; // (vocab_size, H)

    public Embedding(long vocabSize, long hiddenSize, ScalarType dtype, Device device) : base(nameof(Embedding))
    {
        weight = new Parameter(empty([vocabSize, hiddenSize], dtype, device));
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids) =>                                  // ids (B, T) int64
        weight.index_select(0, ids.reshape(-1)).view(ids.shape[0], ids.shape[1], -1); // (B, T, H)
}

/// <summary>x * rsqrt(mean(x^2) + eps) * weight, normalised in float32 and cast back before scaling, as HF does.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight; // (H,)
    private readonly double _eps;

    public RmsNorm(long size, double eps, ScalarType dtype, Device device) : base(nameof(RmsNorm))
    {
        weight = new Parameter(ones([size], dtype, device));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        // Temporaries are disposed when used (autograd keeps h and the rsqrt itself), so a training layer does not hold
        // them until its dispose scope ends.
        using var upcast = x.dtype == ScalarType.Float32 ? null : x.to(ScalarType.Float32); // a same-type to() is still a call
        var h = upcast ?? x;
        using var squares = h.Power(2);
        using var meanSquare = squares.mean([-1], keepdim: true);                          // (..., 1)
        using var shifted = meanSquare.Plus(_eps);
        using var scale = shifted.rsqrt();
        using var normalised = h * scale;
        if (normalised.dtype == x.dtype) return weight * normalised;
        using var rounded = normalised.to(x.dtype);
        return weight * rounded;
    }
}

/// <summary>Grouped-query causal self-attention with RoPE and an optional sliding window.</summary>
public sealed class Attention : nn.Module
{
    // Typed as modules, not Linear, so QLoRA can swap in a LoRA-wrapped projection under the same name.
    public nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, o_proj;
    private readonly int _heads, _kvHeads, _headDim;

    public Attention(MistralConfig c, ScalarType dtype, Device device) : base(nameof(Attention))
    {
        (_heads, _kvHeads, _headDim) = (c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim);
        q_proj = new Linear(c.HiddenSize, _heads * _headDim, dtype, device);
        k_proj = new Linear(c.HiddenSize, _kvHeads * _headDim, dtype, device);
        v_proj = new Linear(c.HiddenSize, _kvHeads * _headDim, dtype, device);
        o_proj = new Linear(_heads * _headDim, c.HiddenSize, dtype, device);
        RegisterComponents();
    }

    internal Tensor forward(Tensor x, AttentionInputs plan, LayerKv? kv)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var q = q_proj.call(x).view(b, t, _heads, _headDim).transpose(1, 2);   // (B, n_heads, T, head_dim)
        var k = k_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2); // (B, n_kv_heads, T, head_dim)
        var v = v_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2); // (B, n_kv_heads, T, head_dim)
        q = Rope.ApplySigned(q, plan.Cos, plan.SignedSin);
        k = Rope.ApplySigned(k, plan.Cos, plan.SignedSin);
        if (kv is not null && plan.Cache is { } step)
            (k, v) = kv.Append(k, v, step);                                   // (B, n_kv_heads, S, head_dim)
        var groups = _heads / _kvHeads;                                       // query heads sharing one KV head (h = kv * groups + g)
        if (plan.Segments is { } segments)
            return o_proj.call(SegmentAttention.Handles(q, segments)
                ? SegmentAttention.Apply(q, k, v, segments, plan.Returned)   // (B, T, n_heads * head_dim)
                : SdpaPerSegment(q, k, v, segments, groups));                 // (B, T, H)
        Tensor y;
        if (plan.Mask is null && !plan.IsCausal)
        {
            // Every query sees every key (always so for one decode step): the groups*T queries of a KV head can
            // attend its keys as one block, with no repeated copy of the keys and values.
            var grouped = q.reshape(b, _kvHeads, groups * t, _headDim);       // (B, n_kv_heads, groups * T, head_dim)
            y = F.scaled_dot_product_attention(grouped, k, v).view(b, _heads, t, _headDim); // (B, n_heads, T, head_dim)
        }
        else
        {
            if (groups > 1)
            {
                k = k.repeat_interleave(groups, dim: 1);                      // (B, n_heads, S, head_dim)
                v = v.repeat_interleave(groups, dim: 1);                      // (B, n_heads, S, head_dim)
            }
            y = F.scaled_dot_product_attention(q, k, v, plan.Mask, p: 0.0, is_casual: plan.IsCausal); // (B, n_heads, T, head_dim)
        }
        y = y.transpose(1, 2).reshape(b, t, _heads * _headDim);               // (B, T, n_heads * head_dim)
        return o_proj.call(y);                                                // (B, T, H)
    }

    /// <summary>
    /// Packed training rows that <see cref="SegmentAttention"/> does not take (other devices, segments longer than its
    /// limit): causal attention inside each segment (a run of positions, see <see cref="AttentionInputs.Segments"/>), one
    /// SDPA call per segment. The same attention as the block-diagonal mask, without computing the pairs across segments
    /// that the mask discards (half of the T x T pairs for two equal examples in a row, two thirds for three). Split and
    /// cat keep backward to one copy each way.
    /// </summary>
    private Tensor SdpaPerSegment(Tensor q, Tensor k, Tensor v, long[] segments, int groups)
    {
        var (b, t) = (q.shape[0], q.shape[2]);
        var queries = q.transpose(1, 2).reshape(b * t, _heads, _headDim).split(segments);    // (len, n_heads, head_dim) each
        var keys = k.transpose(1, 2).reshape(b * t, _kvHeads, _headDim).split(segments);    // (len, n_kv_heads, head_dim) each
        var values = v.transpose(1, 2).reshape(b * t, _kvHeads, _headDim).split(segments);
        var outputs = new Tensor[segments.Length];
        for (var i = 0; i < segments.Length; i++)
        {
            var qi = queries[i].transpose(0, 1).unsqueeze(0);                   // (1, n_heads, len, head_dim)
            var ki = keys[i].transpose(0, 1).unsqueeze(0);                      // (1, n_kv_heads, len, head_dim)
            var vi = values[i].transpose(0, 1).unsqueeze(0);
            if (groups > 1)
            {
                ki = ki.repeat_interleave(groups, dim: 1);                      // (1, n_heads, len, head_dim)
                vi = vi.repeat_interleave(groups, dim: 1);
            }
            outputs[i] = F.scaled_dot_product_attention(qi, ki, vi, is_casual: true).squeeze(0).transpose(0, 1); // (len, n_heads, head_dim)
        }
        return cat(outputs, 0).view(b, t, _heads * _headDim);                  // (B, T, n_heads * head_dim)
    }
}

/// <summary>SwiGLU: down(silu(gate(x)) * up(x)).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj; // swappable for LoRA, like Attention's

    public Mlp(MistralConfig c, ScalarType dtype, Device device) : base(nameof(Mlp))
    {
        gate_proj = new Linear(c.HiddenSize, c.IntermediateSize, dtype, device);
        up_proj = new Linear(c.HiddenSize, c.IntermediateSize, dtype, device);
        down_proj = new Linear(c.IntermediateSize, c.HiddenSize, dtype, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>                                // (B, T, H)
        down_proj.call(F.silu(gate_proj.call(x)) * up_proj.call(x));           // (B, T, intermediate) -> (B, T, H)
}

public sealed class DecoderLayer : nn.Module
{
    public readonly Attention self_attn;
    public readonly Mlp mlp;
    public readonly RmsNorm input_layernorm, post_attention_layernorm;

    public DecoderLayer(MistralConfig c, ScalarType dtype, Device device) : base(nameof(DecoderLayer))
    {
        self_attn = new Attention(c, dtype, device);
        mlp = new Mlp(c, dtype, device);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    internal Tensor forward(Tensor x, AttentionInputs plan, LayerKv? kv)
    {
        var h = x.Plus(self_attn.forward(input_layernorm.call(x), plan, kv));        // (B, T, H)
        return h.Plus(mlp.call(post_attention_layernorm.call(h)));                   // (B, T, H)
    }
}

/// <summary>HF's <c>MistralModel</c>: the <c>model.</c> prefix of every checkpoint key.</summary>
public sealed class MistralTransformer : nn.Module
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<DecoderLayer> layers;
    public readonly RmsNorm norm;

    public MistralTransformer(MistralConfig c, ScalarType dtype, Device device) : base(nameof(MistralTransformer))
    {
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<DecoderLayer>([.. Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new DecoderLayer(c, dtype, device))]);
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }
}

/// <summary>What every layer's attention needs for one forward: RoPE rows (T, head_dim) for the new positions, the mask
/// (null: none or SDPA's causal one) and the cache plan when decoding incrementally. For packed rows either the
/// block-diagonal causal mask or, when every segment is one run of positions within the sliding window,
/// <paramref name="Segments"/>: the run lengths over the B x T positions in order (rows never share a run).</summary>
internal sealed record AttentionInputs(Tensor Cos, Tensor SignedSin, Tensor? Mask, bool IsCausal, CacheStep? Cache, long[]? Segments = null,
    ReturnedGradients? Returned = null);

/// <summary>
/// Mistral for causal LM (HF <c>MistralForCausalLM</c>). Construct with <see cref="Load"/>; the constructor alone
/// allocates uninitialised weights (for callers that initialise them themselves).
/// </summary>
public sealed class MistralModel : nn.Module<Tensor, Tensor>
{
    public readonly MistralTransformer model;
    public readonly Linear? lm_head; // null with tie_word_embeddings: logits use model.embed_tokens.weight

    public MistralModel(MistralConfig config, ModelOptions? options = null) : base(nameof(MistralModel))
    {
        config.Validate();
        Options = options ?? ModelOptions.Default;
        Device = Options.Resolve();
        Config = config;
        model = new MistralTransformer(config, Options.DType, Device);
        if (!config.TieWordEmbeddings)
            lm_head = new Linear(config.HiddenSize, config.VocabSize, Options.DType, Device);
        RegisterComponents();
        _rope = new RopeTable(config.HeadDim, config.RopeTheta, Options.DType, Device);
    }

    private readonly RopeTable _rope; // a holder, not a tensor field: registers no buffer, so no state-dict name

    public MistralConfig Config { get; }
    public ModelOptions Options { get; }
    public Device Device { get; }

    /// <summary>Builds the network and fills it from <paramref name="source"/> with strict name and shape checks.</summary>
    public static MistralModel Load(MistralConfig config, ITensorSource source, ModelOptions? options = null)
    {
        var network = new MistralModel(config, options);
        try
        {
            StrictLoader.Load(network, source);
        }
        catch
        {
            network.Dispose();
            throw;
        }
        network.eval();
        return network;
    }

    /// <summary>Full-sequence forward (training, prefill without a cache): ids (B, T) int64 -> logits (B, T, vocab) float32.</summary>
    public override Tensor forward(Tensor ids) => forward(ids, 0, null);

    /// <summary>Forward of ids (B, T) int64 at positions startPos..startPos+T-1, reading and extending
    /// <paramref name="cache"/> when given. Returns logits (B, T, vocab) float32.</summary>
    public Tensor forward(Tensor ids, long startPos, KvCache? cache)
    {
        CheckIds(ids, startPos, cache);
        return Forward(ids, startPos, cache, lastPositionOnly: false);
    }

    /// <summary><see cref="forward(Tensor, long, KvCache?)"/> for ids already known to be valid (the generator's),
    /// without reading them back; with <paramref name="lastPositionOnly"/> the logits are (B, 1, vocab), the only row
    /// greedy decoding needs (norm and lm_head are per position, so the other rows need not be computed).</summary>
    internal Tensor Forward(Tensor ids, long startPos, KvCache? cache, bool lastPositionOnly)
    {
        var t = (int)ids.shape[1];
        var (cos, signedSin) = _rope.Rows(startPos, t);                                              // (T, head_dim)
        AttentionInputs plan;
        if (cache is null)
        {
            var pos = Enumerable.Range(0, t).Select(i => startPos + i).ToArray();
            var (mask, causal) = AttentionMask.Build(pos, pos, Config.SlidingWindow, Device);
            plan = new AttentionInputs(cos, signedSin, mask, causal, null);
        }
        else
        {
            var step = cache.Plan(startPos, t, Device);
            plan = new AttentionInputs(cos, signedSin, step.Mask, step.IsCausal, step);
        }

        var x = model.embed_tokens.call(ids);                                                       // (B, T, H)
        for (var i = 0; i < Config.NumHiddenLayers; i++)
            x = model.layers[i].forward(x, plan, cache?.Layer(i));                                   // (B, T, H)
        if (lastPositionOnly && t > 1) x = x.narrow(1, t - 1, 1);                                   // (B, 1, H)
        x = model.norm.call(x);                                                                      // (B, T, H)
        var logits = lm_head is null ? F.linear(x, model.embed_tokens.weight) : lm_head.call(x);   // (B, T, vocab)
        cache?.Commit(t);
        return logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
    }

    /// <summary>
    /// Training forward over packed rows: ids, positionIds, segmentIds (B, T) int64 (int32 accepted) -> logits
    /// (B, T, vocab) float32. RoPE uses each token's own position (restarting per example) and attention is
    /// block-diagonal and causal: q sees k when seg[q] == seg[k] and k &lt;= q (and q - k &lt; sliding_window), so packed
    /// examples never see each other. <paramref name="runLayer"/>(layer, x, index), when given, runs each layer (for
    /// activation checkpointing); it must return layer(x). <paramref name="returned"/>: the backward pass's holder of the
    /// gradients custom nodes hand back (see <see cref="ReturnedGradients"/>).
    /// </summary>
    public Tensor ForwardPacked(Tensor ids, Tensor positionIds, Tensor segmentIds, Func<Func<Tensor, Tensor>, Tensor, int, Tensor>? runLayer = null,
        ReturnedGradients? returned = null)
    {
        var x = ForwardPackedHidden(ids, positionIds, segmentIds, runLayer, returned);                          // (B, T, H)
        var logits = F.linear(x, OutputWeight);                                                      // (B, T, vocab)
        return logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
    }

    /// <summary>lm_head's weight (vocab, H), or the embedding's when they are tied: logits = F.linear(hidden, this).</summary>
    public Tensor OutputWeight => lm_head?.weight ?? model.embed_tokens.weight;

    /// <summary><see cref="ForwardPacked"/> up to the final norm: hidden states (B, T, H) in the compute type, for a
    /// loss that applies <see cref="OutputWeight"/> itself (a chunked cross-entropy never holds all the logits).</summary>
    public Tensor ForwardPackedHidden(Tensor ids, Tensor positionIds, Tensor segmentIds, Func<Func<Tensor, Tensor>, Tensor, int, Tensor>? runLayer = null,
        ReturnedGradients? returned = null)
    {
        CheckIds(ids, 0, null);
        if (!positionIds.shape.SequenceEqual(ids.shape) || !segmentIds.shape.SequenceEqual(ids.shape))
            throw new ErtasException(ErrorCode.ModelInputInvalid,
                $"position and segment ids must have the ids' shape [{string.Join(", ", ids.shape)}], got [{string.Join(", ", positionIds.shape)}] and [{string.Join(", ", segmentIds.shape)}]");
        var (b, t) = (ids.shape[0], ids.shape[1]);
        var positions = positionIds.to(ScalarType.Int64, Device);
        var (minPos, maxPos) = (positions.min().item<long>(), positions.max().item<long>());
        if (minPos < 0)
            throw new ErtasException(ErrorCode.ModelInputInvalid, $"position ids must be >= 0, got {minPos}");
        var (cosTable, signedSinTable) = _rope.Rows(0, maxPos + 1);                                   // (maxPos+1, head_dim)
        var flat = positions.reshape(-1);
        var cos = cosTable.index_select(0, flat).view(b, 1, t, -1);                                  // (B, 1, T, head_dim)
        var signedSin = signedSinTable.index_select(0, flat).view(b, 1, t, -1);                      // (B, 1, T, head_dim)

        var segments = segmentIds.to(ScalarType.Int64, Device);
        AttentionInputs plan;
        if (SegmentRuns(segments) is { } runs)
        {
            plan = new AttentionInputs(cos, signedSin, null, IsCausal: false, Cache: null, Segments: runs, Returned: returned);
        }
        else
        {
            var sameSegment = segments.unsqueeze(2).eq(segments.unsqueeze(1));                      // (B, T, T) [q, k]
            var index = ScalarSafe.Arange(0, t, 1, ScalarType.Int64, Device);
            var distance = index.unsqueeze(1) - index.unsqueeze(0);                                  // (T, T): q - k
            var visible = distance.AtLeast(0);
            if (Config.SlidingWindow is { } window) visible = visible.logical_and(distance.LessThan(window));
            var allowed = sameSegment.logical_and(visible).unsqueeze(1);                            // (B, 1, T, T) bool
            // Additive, in the compute type, made once: SDPA turns a bool mask into exactly this (0 where allowed, -inf
            // elsewhere) on every call, and autograd would keep each layer's copy until backward.
            var mask = zeros(allowed.shape, model.embed_tokens.weight.dtype, Device).MaskedFillInPlace(allowed.logical_not(), double.NegativeInfinity);
            plan = new AttentionInputs(cos, signedSin, mask, IsCausal: false, Cache: null);
        }

        var x = model.embed_tokens.call(ids);                                                       // (B, T, H)
        for (var i = 0; i < Config.NumHiddenLayers; i++)
        {
            var layer = model.layers[i];
            Tensor RunLayer(Tensor input)
            {
                // Autograd holds what backward needs by itself; the handles of the layer's other intermediates (the
                // projections before their LoRA sum, RoPE's products, norm temporaries, ...) go now rather than with
                // the caller's scope after backward: half of a layer's bytes on the 100m preset.
                using var scope = NewDisposeScope();
                return layer.forward(input, plan, null).MoveToOuterDisposeScope();
            }
            x = runLayer is null ? RunLayer(x) : runLayer(RunLayer, x, i);                          // (B, T, H)
        }
        return model.norm.call(x);                                                                  // (B, T, H)
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _rope.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>
    /// The packed rows' segments as run lengths over the B x T positions in order, when causal attention within each
    /// run is exactly what the block-diagonal mask allows: every segment id is one run of its row and no run is longer
    /// than the sliding window. Null otherwise (the caller builds the mask).
    /// </summary>
    internal long[]? SegmentRuns(Tensor segmentIds)
    {
        using var cpu = segmentIds.to(ScalarType.Int64, CPU).contiguous();
        var ids = cpu.data<long>().ToArray();
        var (rows, t) = (segmentIds.shape[0], segmentIds.shape[1]);
        var runs = new List<long>();
        var seen = new HashSet<long>();
        for (long r = 0; r < rows; r++)
        {
            seen.Clear();
            long start = 0;
            for (long i = 1; i <= t; i++)
            {
                if (i < t && ids[r * t + i] == ids[r * t + i - 1]) continue;
                if (!seen.Add(ids[r * t + start])) return null; // an id in two runs: the mask joins them
                if (Config.SlidingWindow is { } window && i - start > window) return null;
                runs.Add(i - start);
                start = i;
            }
        }
        return [.. runs];
    }

    private void CheckIds(Tensor ids, long startPos, KvCache? cache)
    {
        if (ids.dtype != ScalarType.Int64 || ids.dim() != 2 || ids.shape[1] == 0)
            throw new ErtasException(ErrorCode.ModelInputInvalid,
                $"token ids must be a non-empty int64 tensor of shape (batch, tokens), got {ids.dtype} [{string.Join(", ", ids.shape)}]");
        if (startPos < 0)
            throw new ErtasException(ErrorCode.ModelInputInvalid, $"start position must be >= 0, got {startPos}");
        if (cache is not null && cache.BatchSize != ids.shape[0])
            throw new ErtasException(ErrorCode.ModelInputInvalid,
                $"the KV cache was made for batch size {cache.BatchSize}, got ids of batch size {ids.shape[0]}");
        CheckIdRange(ids.min().item<long>(), ids.max().item<long>());
    }

    internal void CheckIdRange(long min, long max)
    {
        if (min < 0 || max >= Config.VocabSize)
            throw new ErtasException(ErrorCode.ModelInputInvalid,
                $"token ids must lie in [0, {Config.VocabSize}), got values from {min} to {max}");
    }
}
