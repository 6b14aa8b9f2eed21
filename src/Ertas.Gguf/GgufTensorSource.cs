using Ertas.Core;
using Ertas.Mistral;

namespace Ertas.Gguf;

/// <summary>
/// A llama-architecture GGUF seen as a Hugging Face checkpoint: HF tensor names and [out, in] shapes, Q/K rows
/// back in rotate-half order, values as float32. Lets the TorchSharp model run a GGUF we wrote, and tests check
/// an export against its source.
/// </summary>
public sealed class GgufTensorSource : ITensorSource, IDisposable
{
    private readonly Dictionary<string, GgufTensorInfo> _byHfName = new(StringComparer.Ordinal);
    private readonly List<string> _names = [];

    public GgufTensorSource(string path)
    {
        Reader = new GgufReader(path);
        try
        {
            var architecture = Reader.GetString(Keys.General.Architecture);
            if (architecture != GgufConstants.LlamaArchitecture)
                throw new ErtasException(ErrorCode.GgufWrongArchitecture,
                    $"GGUF architecture is '{architecture}'; only '{GgufConstants.LlamaArchitecture}' (Mistral, Llama) models can be loaded", path);
            if (Reader.TryGet(Keys.General.Type, out var type) && type.Value is string t && t != Keys.GeneralTypes.Model)
                throw new ErtasException(ErrorCode.GgufUnsupportedModel, $"GGUF file is a '{t}', not a model", path);
            foreach (var tensor in Reader.Tensors)
            {
                var hf = HfTensorNames.ToHf(tensor.Name)
                    ?? throw new ErtasException(ErrorCode.GgufUnsupportedModel,
                        $"GGUF tensor '{tensor.Name}' has no Hugging Face Mistral equivalent", path);
                _byHfName.Add(hf, tensor);
                _names.Add(hf);
            }
        }
        catch
        {
            Reader.Dispose();
            throw;
        }
    }

    public GgufReader Reader { get; }

    public IReadOnlyList<string> TensorNames => _names;

    public long[] GetShape(string name) => Find(name).Shape;

    public void ReadFloat32(string name, Span<float> destination)
    {
        var tensor = Find(name);
        var elements = tensor.ElementCount;
        if (destination.Length < elements)
            throw new ArgumentException($"tensor '{name}' has {elements} elements, destination holds {destination.Length}", nameof(destination));
        GgmlDequantizer.EnsureSupported(tensor.Type, tensor.Name);
        var bytes = Reader.GetTensorBytes(tensor);
        var heads = RopeHeadCount(name);
        if (heads is null || tensor.Dimensions.Length != 2)
        {
            GgmlDequantizer.ToFloat32(tensor.Type, bytes, destination[..(int)elements], tensor.Name);
            return;
        }
        var rows = (int)tensor.Dimensions[1];
        var cols = (int)tensor.Dimensions[0];
        var headDim = HeadDimFor(rows, heads.Value, tensor.Name);
        var rowBytes = bytes.Length / rows;
        for (var row = 0; row < rows; row++)
        {
            var to = RopePermutation.HfRowForGgufRow(row, headDim);
            GgmlDequantizer.ToFloat32(tensor.Type, bytes.Slice(row * rowBytes, rowBytes), destination.Slice(to * cols, cols), tensor.Name);
        }
    }

    /// <summary>The Hugging Face config this file implies. GGUF does not record sliding_window: it comes back null.</summary>
    public MistralConfig ToMistralConfig()
    {
        uint U(string template) => Reader.GetUInt32(Keys.Llama(template));
        var heads = (int)U(Keys.Attention.HeadCount);
        var hidden = (int)U(Keys.LLM.EmbeddingLength);
        var kvHeads = Reader.ContainsKey(Keys.Llama(Keys.Attention.HeadCountKv)) ? (int)U(Keys.Attention.HeadCountKv) : heads;
        int? headDim = Reader.ContainsKey(Keys.Llama(Keys.Attention.KeyLength)) ? (int)U(Keys.Attention.KeyLength) : null;
        var effectiveHeadDim = headDim ?? (heads > 0 ? hidden / heads : 0);
        if (Reader.ContainsKey(Keys.Llama(Keys.Rope.DimensionCount)) && U(Keys.Rope.DimensionCount) != effectiveHeadDim)
            throw new ErtasException(ErrorCode.GgufUnsupportedModel,
                $"rope.dimension_count {U(Keys.Rope.DimensionCount)} differs from head_dim {effectiveHeadDim}: partial rotary embeddings are not supported", Reader.Path);
        if (headDim is { } kd && Reader.ContainsKey(Keys.Llama(Keys.Attention.ValueLength)) && U(Keys.Attention.ValueLength) != kd)
            throw new ErtasException(ErrorCode.GgufUnsupportedModel,
                $"attention.key_length {kd} differs from attention.value_length {U(Keys.Attention.ValueLength)}", Reader.Path);
        var vocab = Reader.ContainsKey(Keys.Llama(Keys.LLM.VocabSize)) ? (int)U(Keys.LLM.VocabSize)
            : Reader.ContainsKey(Keys.Tokenizer.Tokens) ? Reader.GetArray<string>(Keys.Tokenizer.Tokens).Length
            : (int)Find("model.embed_tokens.weight").Shape[0];
        var fileType = Reader.ContainsKey(Keys.General.FileType) ? (LlamaFileType)Reader.GetUInt32(Keys.General.FileType) : LlamaFileType.MostlyF16;
        var config = new MistralConfig
        {
            HiddenSize = hidden,
            IntermediateSize = (int)U(Keys.LLM.FeedForwardLength),
            NumHiddenLayers = (int)U(Keys.LLM.BlockCount),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDimOverride = headDim,
            MaxPositionEmbeddings = (int)U(Keys.LLM.ContextLength),
            RmsNormEps = GgufExporter.FloatToShortestDouble(Reader.GetFloat32(Keys.Llama(Keys.Attention.LayerNormRmsEpsilon))),
            RopeTheta = Reader.ContainsKey(Keys.Llama(Keys.Rope.FreqBase))
                ? GgufExporter.FloatToShortestDouble(Reader.GetFloat32(Keys.Llama(Keys.Rope.FreqBase))) : 10000.0,
            SlidingWindow = null,
            VocabSize = vocab,
            BosTokenId = Reader.ContainsKey(Keys.Tokenizer.BosId) ? (int)Reader.GetUInt32(Keys.Tokenizer.BosId) : 1,
            EosTokenId = Reader.ContainsKey(Keys.Tokenizer.EosId) ? (int)Reader.GetUInt32(Keys.Tokenizer.EosId) : 2,
            TieWordEmbeddings = !_byHfName.ContainsKey("lm_head.weight"),
            TorchDtype = fileType switch
            {
                LlamaFileType.AllF32 => "float32",
                LlamaFileType.MostlyF16 => "float16",
                _ => "bfloat16",
            },
        };
        try
        {
            config.Validate(Reader.Path);
        }
        catch (ErtasException e)
        {
            throw new ErtasException(ErrorCode.GgufCorrupt, $"GGUF hyperparameters are inconsistent: {e.Message}", Reader.Path, inner: e);
        }
        return config;
    }

    /// <summary>The SentencePiece vocabulary stored in the file (<c>tokenizer.ggml.model</c> must be "llama").</summary>
    public GgufVocabulary ReadVocabulary()
    {
        var model = Reader.GetString(Keys.Tokenizer.Model);
        if (model != "llama")
            throw new ErtasException(ErrorCode.GgufUnsupportedModel,
                $"GGUF tokenizer is '{model}'; only SentencePiece ('llama') vocabularies are supported", Reader.Path);
        var tokens = Reader.GetArray<string>(Keys.Tokenizer.Tokens);
        var scores = Reader.ContainsKey(Keys.Tokenizer.Scores) ? Reader.GetArray<float>(Keys.Tokenizer.Scores) : new float[tokens.Length];
        var types = Reader.ContainsKey(Keys.Tokenizer.TokenType)
            ? Reader.GetArray<int>(Keys.Tokenizer.TokenType)
            : Enumerable.Repeat((int)GgufTokenType.Normal, tokens.Length).ToArray();
        int Id(string key, int fallback) => Reader.ContainsKey(key) ? (int)Reader.GetUInt32(key) : fallback;
        bool Flag(string key, bool fallback) => Reader.ContainsKey(key) ? Reader.GetBool(key) : fallback;
        var vocab = new GgufVocabulary(tokens, scores, types,
            BosId: Id(Keys.Tokenizer.BosId, 1),
            EosId: Id(Keys.Tokenizer.EosId, 2),
            UnkId: Id(Keys.Tokenizer.UnknownId, 0),
            AddBos: Flag(Keys.Tokenizer.AddBos, true),
            AddEos: Flag(Keys.Tokenizer.AddEos, false),
            ChatTemplate: Reader.ContainsKey(Keys.Tokenizer.ChatTemplate) ? Reader.GetString(Keys.Tokenizer.ChatTemplate) : null,
            AddSpacePrefix: Flag(Keys.Tokenizer.AddSpacePrefix, true));
        try
        {
            vocab.Validate();
        }
        catch (ErtasException e)
        {
            throw new ErtasException(ErrorCode.GgufCorrupt, $"GGUF vocabulary is inconsistent: {e.Message}", Reader.Path, inner: e);
        }
        return vocab;
    }

    public void Dispose() => Reader.Dispose();

    private GgufTensorInfo Find(string hfName) =>
        _byHfName.TryGetValue(hfName, out var t) ? t
            : throw new ErtasException(ErrorCode.GgufMissingTensor,
                $"GGUF file has no tensor for '{hfName}' ({HfTensorNames.ToGguf(hfName) ?? "no GGUF name"})", Reader.Path);

    private int? RopeHeadCount(string hfName)
    {
        var isQ = hfName.EndsWith(".self_attn.q_proj.weight", StringComparison.Ordinal);
        var isK = hfName.EndsWith(".self_attn.k_proj.weight", StringComparison.Ordinal);
        if (!isQ && !isK)
            return null;
        var heads = (int)Reader.GetUInt32(Keys.Llama(Keys.Attention.HeadCount));
        return isK && Reader.ContainsKey(Keys.Llama(Keys.Attention.HeadCountKv))
            ? (int)Reader.GetUInt32(Keys.Llama(Keys.Attention.HeadCountKv))
            : heads;
    }

    private int HeadDimFor(int rows, int heads, string tensorName)
    {
        try
        {
            return RopePermutation.HeadDim(rows, heads);
        }
        catch (ArgumentException)
        {
            throw new ErtasException(ErrorCode.GgufCorrupt,
                $"tensor '{tensorName}' has {rows} rows, which do not split into {heads} heads of even size", Reader.Path);
        }
    }
}
