using Ertas.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling;

public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 64;

    /// <summary>Stop after emitting this id (it is included in the output). Null: the config's eos_token_id.</summary>
    public int? EosTokenId { get; init; }

    public bool StopAtEos { get; init; } = true;

    /// <summary>Return, for every generated token, the float32 logits it was chosen from.</summary>
    public bool ReturnLogits { get; init; }
}

public enum StopReason
{
    MaxNewTokens,
    Eos,
}

/// <param name="TokenIds">Generated ids only (not the prompt), including the EOS id when generation stopped on it.</param>
/// <param name="StepLogits">When asked for: StepLogits[i] is the last-position logits (vocab) that chose TokenIds[i].</param>
public sealed record GenerateResult(IReadOnlyList<int> TokenIds, IReadOnlyList<float[]>? StepLogits, StopReason StopReason);

/// <summary>
/// Greedy decoding with a KV cache: one forward over the prompt, then one token at a time. Deterministic: argmax with
/// ties going to the lowest id, as llama.cpp's greedy sampler does (it keeps the first maximum, scanning ids upward).
/// </summary>
public sealed class Generator(MistralModel model)
{
    public GenerateResult Generate(IReadOnlyList<int> prompt, GenerationOptions? options = null)
    {
        options ??= new GenerationOptions();
        if (prompt.Count == 0)
            throw new ErtasException(ErrorCode.ModelInputInvalid, "the prompt must hold at least one token (usually BOS)");
        if (options.MaxNewTokens < 0)
            throw new ErtasException(ErrorCode.ModelInputInvalid, $"MaxNewTokens must be >= 0, got {options.MaxNewTokens}");
        var eos = options.EosTokenId ?? model.Config.EosTokenId;

        var generated = new List<int>();
        var stepLogits = options.ReturnLogits ? new List<float[]>() : null;
        var stop = StopReason.MaxNewTokens;
        if (options.MaxNewTokens == 0) return new GenerateResult(generated, stepLogits, stop);

        model.CheckIdRange(prompt.Min(), prompt.Max()); // generated ids are argmaxes over the vocab: valid by construction
        using var noGrad = no_grad();
        using var cache = new KvCache(model.Config, model.Options, prompt.Count + options.MaxNewTokens);
        var input = prompt.Select(id => (long)id).ToArray();
        var start = 0L;
        while (true)
        {
            float[] last;
            // Everything a step allocates dies with the step; only the cache's buffers (updated in place) live on.
            using (NewDisposeScope())
            {
                var ids = tensor(input, [1, input.Length], device: model.Device);          // (1, T)
                var logits = model.Forward(ids, start, cache, lastPositionOnly: true);      // (1, 1, vocab)
                last = logits.cpu().data<float>().ToArray();                                // (vocab,)
            }
            start += input.Length;
            var next = ArgMaxLowestId(last);
            generated.Add(next);
            stepLogits?.Add(last);
            if (options.StopAtEos && next == eos) { stop = StopReason.Eos; break; }
            if (generated.Count == options.MaxNewTokens) break;
            input = [next];
        }
        return new GenerateResult(generated, stepLogits, stop);
    }

    /// <summary>Index of the largest logit; the first (lowest id) among equals. NaN never wins.</summary>
    public static int ArgMaxLowestId(ReadOnlySpan<float> logits)
    {
        var best = 0;
        for (var i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best] || float.IsNaN(logits[best])) best = i;
        return best;
    }
}
