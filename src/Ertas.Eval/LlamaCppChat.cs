using Ertas.Core;
using Ertas.Gguf;
using Ertas.Gguf.Adapters;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Ertas.Eval;

/// <summary>
/// A GGUF in llama.cpp for <c>ertas chat</c>: the prompt ids come from our chat template, and tokens stream out of
/// raw logits through <see cref="ChatSampler"/>, so a chat answers exactly as <see cref="LlamaCppEvaluator"/> scores.
/// Each turn runs in a fresh context (the whole conversation prefilled again): slower than keeping the KV cache, but
/// a turn's answer then depends only on its prompt, never on what the cache held before.
/// </summary>
public sealed class LlamaCppChat : IDisposable
{
    /// <summary>Context used when the user sets none and the model was trained on at least this many tokens.</summary>
    public const int DefaultContextSize = 4096;

    private readonly LLamaWeights _weights;
    private readonly ModelParams _parameters;
    private readonly LoraAdapter? _adapter;

    private LlamaCppChat(LLamaWeights weights, ModelParams parameters, LoraAdapter? adapter, int contextSize)
    {
        _weights = weights;
        _parameters = parameters;
        _adapter = adapter;
        ContextSize = contextSize;
    }

    /// <summary>Tokens one turn may use, prompt and answer together.</summary>
    public int ContextSize { get; }

    /// <summary>The context the model was trained with (GGUF's <c>llama.context_length</c>).</summary>
    public int TrainingContextSize => _weights.ContextSize;

    /// <summary>
    /// Loads <paramref name="ggufPath"/> with an f32 KV cache, as the evaluator does. Without
    /// <paramref name="contextSize"/>, the context is <see cref="DefaultContextSize"/> or the training context if
    /// smaller. <paramref name="loraPath"/> is a llama.cpp LoRA adapter GGUF applied at scale 1 (<c>llama-cli --lora</c>).
    /// </summary>
    public static LlamaCppChat Load(string ggufPath, int? contextSize, int threads, string? loraPath)
    {
        var parameters = LlamaCppEvaluator.Parameters(ggufPath, threads);
        var weights = LlamaCppEvaluator.LoadWeights(parameters, ggufPath);
        try
        {
            var size = contextSize ?? (weights.ContextSize > 0 ? Math.Min(DefaultContextSize, weights.ContextSize) : DefaultContextSize);
            // The prompt goes in as one batch, as in the evaluator: a turn's logits then match its scoring exactly.
            parameters.ContextSize = (uint)size;
            parameters.BatchSize = (uint)size;
            parameters.UBatchSize = (uint)size;
            var adapter = loraPath is null ? null : LoadAdapter(weights, loraPath, ggufPath);
            return new LlamaCppChat(weights, parameters, adapter, size);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    private static LoraAdapter LoadAdapter(LLamaWeights weights, string loraPath, string modelPath)
    {
        CheckAdapter(loraPath, modelPath);
        try
        {
            return weights.NativeHandle.LoadLoraFromFile(loraPath);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or LLama.Exceptions.RuntimeError)
        {
            throw new ErtasException(ErrorCode.AdapterInvalid, $"llama.cpp could not load the LoRA adapter: {e.Message}", loraPath);
        }
    }

    /// <summary>
    /// The checks llama.cpp's <c>llama_adapter_lora_init</c> makes, made first: it answers an adapter it refuses with
    /// a null handle, which LLamaSharp 0.30 hands on unchecked, and applying that kills the process in native code.
    /// </summary>
    internal static void CheckAdapter(string loraPath, string modelPath)
    {
        using var adapter = new GgufReader(loraPath);
        using var model = new GgufReader(modelPath);
        var type = adapter.TryGet(Keys.General.Type, out var t) ? t.Value as string : null;
        var adapterType = adapter.TryGet(Keys.Adapter.Type, out var a) ? a.Value as string : null;
        if (type != Keys.GeneralTypes.Adapter || adapterType != LoraGgufExporter.AdapterTypeLora)
            throw new ErtasException(ErrorCode.AdapterInvalid,
                $"not a LoRA adapter GGUF: general.type is '{type ?? "(none)"}' and adapter.type '{adapterType ?? "(none)"}', "
                + $"expected '{Keys.GeneralTypes.Adapter}' and '{LoraGgufExporter.AdapterTypeLora}' (ertas adapter export writes one)", loraPath);
        if (adapter.Architecture != model.Architecture)
            throw new ErtasException(ErrorCode.AdapterBaseMismatch,
                $"the adapter is for architecture '{adapter.Architecture}', the model is '{model.Architecture}'", loraPath);
        var modelTensors = model.Tensors.ToDictionary(x => x.Name, StringComparer.Ordinal);
        var adapterTensors = adapter.Tensors.ToDictionary(x => x.Name, StringComparer.Ordinal);
        foreach (var tensor in adapter.Tensors)
        {
            var isA = tensor.Name.EndsWith(LoraGgufExporter.SuffixA, StringComparison.Ordinal);
            if (!isA && !tensor.Name.EndsWith(LoraGgufExporter.SuffixB, StringComparison.Ordinal))
                throw new ErtasException(ErrorCode.AdapterInvalid, $"adapter tensor '{tensor.Name}' is neither a .lora_a nor a .lora_b", loraPath);
            var baseName = tensor.Name[..^LoraGgufExporter.SuffixA.Length];
            var partner = baseName + (isA ? LoraGgufExporter.SuffixB : LoraGgufExporter.SuffixA);
            if (!adapterTensors.ContainsKey(partner))
                throw new ErtasException(ErrorCode.AdapterInvalid, $"adapter tensor '{tensor.Name}' has no '{partner}'", loraPath);
            if (!isA)
                continue;
            if (!modelTensors.TryGetValue(baseName, out var target))
                throw new ErtasException(ErrorCode.AdapterBaseMismatch, $"the adapter changes '{baseName}', which the model does not have", loraPath);
            // ggml order (ne0 first): A is [in, r], B is [r, out], the base [in, out]; token_embd's lora_a and lora_b swap.
            var (ne, lowRank) = (tensor.Dimensions, adapterTensors[partner].Dimensions);
            var fits = ne.Length == 2 && lowRank.Length == 2 && target.Dimensions.Length == 2 && (baseName == "token_embd.weight"
                ? target.Dimensions[0] == lowRank[1] && target.Dimensions[1] == ne[1]
                : target.Dimensions[0] == ne[0] && target.Dimensions[1] == lowRank[1] && ne[1] == lowRank[0]);
            if (!fits)
                throw new ErtasException(ErrorCode.AdapterBaseMismatch,
                    $"adapter tensors '{tensor.Name}' [{string.Join(", ", ne)}] and '{partner}' [{string.Join(", ", lowRank)}] do not fit "
                    + $"the model's '{baseName}' [{string.Join(", ", target.Dimensions)}]: the adapter was made for another base", loraPath);
        }
    }

    /// <summary>
    /// Generates after <paramref name="prompt"/>, yielding each token as it is chosen, until
    /// <paramref name="stopId"/> (not yielded) or <paramref name="maxTokens"/> tokens.
    /// </summary>
    public IEnumerable<int> Stream(IReadOnlyList<int> prompt, int maxTokens, int stopId, ChatSampler sampler, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(sampler);
        if (prompt.Count == 0)
            throw new ArgumentException("the prompt holds no tokens", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTokens, 1);
        // Checked here, not on the first MoveNext, so a caller learns before printing anything.
        if (prompt.Count + maxTokens > ContextSize)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"the prompt ({prompt.Count} tokens) plus {maxTokens} tokens to generate exceeds the context of {ContextSize}");
        return Generate(prompt, maxTokens, stopId, sampler, cancellationToken);
    }

    private IEnumerable<int> Generate(IReadOnlyList<int> prompt, int maxTokens, int stopId, ChatSampler sampler, CancellationToken cancellationToken)
    {
        using var context = _weights.CreateContext(_parameters);
        if (_adapter is { } adapter)
            context.NativeHandle.SetLoraAdapters([(adapter, 1.0f)]);
        var batch = new LLamaBatch();
        for (var i = 0; i < prompt.Count; i++)
            batch.Add((LLamaToken)prompt[i], i, (LLamaSeqId)0, i == prompt.Count - 1);
        Decode(context, batch);
        var position = prompt.Count;
        for (var step = 0; step < maxTokens; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var next = Choose(context, batch, sampler);
            if (next == stopId)
                yield break;
            yield return next;
            if (step == maxTokens - 1)
                yield break;
            batch.Clear();
            batch.Add((LLamaToken)next, position++, (LLamaSeqId)0, true);
            Decode(context, batch);
        }
    }

    // Outside the iterator: the logits are a span into native memory, valid only until the next decode.
    private static int Choose(LLamaContext context, LLamaBatch batch, ChatSampler sampler) =>
        sampler.Next(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));

    private static void Decode(LLamaContext context, LLamaBatch batch)
    {
        var result = context.Decode(batch);
        if (result != DecodeResult.Ok)
            throw new ErtasException(ErrorCode.EvalModelUnusable, $"llama_decode failed ({result}) on {batch.TokenCount} tokens");
    }

    public void Dispose() => _weights.Dispose();
}

/// <summary>
/// Picks the next token from raw logits: greedy (argmax, lowest id on ties, as the evaluator) or a draw from
/// softmax(logits / T) with a seeded <see cref="Random"/>, so the same seed gives the same chat on the same runtime.
/// One sampler serves a whole session: later turns continue its random stream.
/// </summary>
public sealed class ChatSampler
{
    private readonly Random? _random;

    private ChatSampler(double temperature, Random? random)
    {
        Temperature = temperature;
        _random = random;
    }

    /// <summary>0 for greedy.</summary>
    public double Temperature { get; }

    public bool IsGreedy => _random is null;

    public static ChatSampler Greedy() => new(0, null);

    public static ChatSampler WithTemperature(double temperature, int seed)
    {
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "the temperature must be a positive number");
        return new ChatSampler(temperature, new Random(seed));
    }

    public int Next(ReadOnlySpan<float> logits)
    {
        if (_random is null)
            return LlamaCppEvaluator.ArgMax(logits);
        // In double with the max subtracted first; two passes over the logits instead of a vocabulary-sized buffer.
        double max = float.NegativeInfinity;
        foreach (var l in logits)
            if (l > max) max = l;
        double sum = 0;
        foreach (var l in logits)
            sum += Math.Exp((l - max) / Temperature);
        var target = _random.NextDouble() * sum;
        double cumulative = 0;
        var last = 0;
        for (var i = 0; i < logits.Length; i++)
        {
            var weight = Math.Exp((logits[i] - max) / Temperature);
            if (weight <= 0)
                continue;
            cumulative += weight;
            last = i;
            if (cumulative > target)
                return i;
        }
        // Rounding can leave the running sum a hair under the target: the last token with any weight takes it.
        return last;
    }
}

/// <summary>
/// A chat's history as our template's messages: the optional system message, then user and assistant turns. The
/// prompt of a turn is the template's encoding of the history plus the new user message, with the generation prompt
/// open, so turn two reads <c>answer&lt;/s&gt;[INST] next [/INST]</c> exactly as training wrote it.
/// </summary>
public sealed class ChatConversation
{
    private readonly MistralTokenizer _tokenizer;
    private readonly IChatTemplate _template;
    private readonly string? _systemPrompt;
    private readonly IReadOnlyList<ChatTool> _tools;
    private readonly List<ChatMessage> _turns = [];

    /// <param name="tools">Tools offered on every prompt (mistral-v3 puts them before the last user message).</param>
    public ChatConversation(MistralTokenizer tokenizer, IChatTemplate template, string? systemPrompt, IReadOnlyList<ChatTool>? tools = null)
    {
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        _template = template ?? throw new ArgumentNullException(nameof(template));
        _systemPrompt = string.IsNullOrEmpty(systemPrompt) ? null : systemPrompt;
        _tools = tools ?? [];
    }

    /// <summary>The system message (if any) and the kept turns, oldest first.</summary>
    public IReadOnlyList<ChatMessage> Messages => WithSystem(_turns);

    /// <summary>Completed user/assistant exchanges in the history.</summary>
    public int ExchangeCount => _turns.Count / 2;

    /// <summary>
    /// The prompt ids for <paramref name="userMessage"/> after the history, at most <paramref name="maxPromptTokens"/>
    /// long: whole exchanges are dropped from the front of the history (for good) until it fits, the system message
    /// always kept. Throws ERTAS1001 when even the system message and this one message alone do not fit.
    /// </summary>
    public (int[] Ids, int DroppedExchanges) Prompt(string userMessage, int maxPromptTokens)
    {
        ArgumentNullException.ThrowIfNull(userMessage);
        for (var dropped = 0; ; dropped++)
        {
            var kept = _turns.Skip(2 * dropped).Append(new ChatMessage(ChatMessage.User, userMessage)).ToList();
            var ids = _template.Encode(_tokenizer, WithSystem(kept), addGenerationPrompt: true, _tools).Ids;
            if (ids.Length <= maxPromptTokens)
            {
                _turns.RemoveRange(0, 2 * dropped);
                return (ids, dropped);
            }
            if (2 * dropped >= _turns.Count)
                throw new ErtasException(ErrorCode.InvalidArgument,
                    $"the message needs a prompt of {ids.Length} tokens{(_systemPrompt is null ? "" : " (system message included)")}, "
                    + $"but only {maxPromptTokens} fit beside the tokens to generate; shorten it, lower --max-tokens or raise --context");
        }
    }

    /// <summary>
    /// Keeps an exchange for the next turns. An empty answer is not kept (false): the template, like mistral-common,
    /// refuses empty assistant turns, and the user message without its answer would break the alternation.
    /// </summary>
    public bool Record(string userMessage, string answer)
    {
        ArgumentNullException.ThrowIfNull(userMessage);
        ArgumentNullException.ThrowIfNull(answer);
        if (answer.Length == 0)
            return false;
        _turns.Add(new ChatMessage(ChatMessage.User, userMessage));
        _turns.Add(new ChatMessage(ChatMessage.Assistant, answer));
        return true;
    }

    public void Reset() => _turns.Clear();

    private List<ChatMessage> WithSystem(IEnumerable<ChatMessage> turns)
    {
        var messages = new List<ChatMessage>();
        if (_systemPrompt is not null)
            messages.Add(new ChatMessage(ChatMessage.System, _systemPrompt));
        messages.AddRange(turns);
        return messages;
    }
}

/// <summary>
/// Text of a growing answer, handed out piece by piece. Each token's text is not its own: SentencePiece drops the
/// first piece's leading space, and byte-fallback tokens make a character only together. So the whole answer is
/// decoded each time and only the new suffix handed out, holding back a trailing U+FFFD (an unfinished UTF-8
/// sequence) until the next token completes it or the answer ends.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly MistralTokenizer _tokenizer;
    private readonly List<int> _ids = [];
    private int _emitted;

    public StreamingDetokenizer(MistralTokenizer tokenizer) =>
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    public IReadOnlyList<int> Ids => _ids;

    /// <summary>
    /// The whole answer so far, as <see cref="MistralTokenizer.DecodeWithControlPieces"/> gives it: a v3 model's
    /// <c>[TOOL_CALLS]</c> shows as it does in eval outputs; a v1 answer has no control pieces to show.
    /// </summary>
    public string Text => _tokenizer.DecodeWithControlPieces(_ids);

    /// <summary>Adds a token; returns the text now safe to print (often empty).</summary>
    public string Add(int id)
    {
        _ids.Add(id);
        var text = Text;
        var stable = text.Length;
        while (stable > _emitted && text[stable - 1] == '\uFFFD')
            stable--;
        return Take(text, stable);
    }

    /// <summary>The text not yet handed out, whatever it ends with: the answer is complete.</summary>
    public string Flush()
    {
        var text = Text;
        return Take(text, text.Length);
    }

    private string Take(string text, int end)
    {
        if (end <= _emitted)
            return "";
        var piece = text[_emitted..end];
        _emitted = end;
        return piece;
    }
}
