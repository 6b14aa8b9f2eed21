using Ertas.Core;
using Microsoft.ML.Tokenizers;

namespace Ertas.Mistral.Tokenization;

/// <summary>
/// Mistral's sentencepiece tokenizer: Microsoft.ML.Tokenizers' <see cref="LlamaTokenizer"/> does the encoding (it
/// reproduces mistral-common's ids, FACTS §1), <see cref="SentencePieceModel"/> supplies scores and types.
/// </summary>
public sealed class MistralTokenizer
{
    private readonly LlamaTokenizer _tokenizer;

    private MistralTokenizer(SentencePieceModel model, LlamaTokenizer tokenizer, string source)
    {
        Model = model;
        _tokenizer = tokenizer;
        Source = source;
    }

    public SentencePieceModel Model { get; }

    /// <summary>The file it was loaded from (errors about the tokenizer point there), or a description.</summary>
    public string Source { get; }
    public int VocabSize => Model.Count;
    public int BosId => Model.BosId;
    public int EosId => Model.EosId;
    public int UnkId => Model.UnkId;

    /// <summary>Loads a <c>tokenizer.model</c> (ERTAS3001 when missing, ERTAS3002 when not a usable model).</summary>
    public static MistralTokenizer Load(string path)
    {
        var bytes = SentencePieceModel.ReadFile(path);
        return Create(SentencePieceModel.Parse(bytes, path), bytes, path);
    }

    /// <summary>Wraps an in-memory model, e.g. one from <see cref="SentencePieceBpeTrainer"/>.</summary>
    public static MistralTokenizer FromModel(SentencePieceModel model) => Create(model, model.ToBytes(), "<in-memory tokenizer model>");

    private static MistralTokenizer Create(SentencePieceModel model, byte[] bytes, string source)
    {
        if (model.ModelType != SentencePieceModelType.Bpe)
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"'{source}' is a {model.ModelType} sentencepiece model; Mistral tokenizers are BPE", source);
        CheckSpecialId(model, model.BosId, "bos", source);
        CheckSpecialId(model, model.EosId, "eos", source);
        CheckSpecialId(model, model.UnkId, "unk", source);

        LlamaTokenizer tokenizer;
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            // No special-token table: mistral-common encodes "<s>" typed in a message as the characters '<', 's',
            // '>', never as the control token, and so must we (a user could otherwise inject turn boundaries).
            tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false, specialTokens: null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"'{source}' could not be loaded as a sentencepiece BPE model: {e.Message}", source, inner: e);
        }
        return new MistralTokenizer(model, tokenizer, source);
    }

    private static void CheckSpecialId(SentencePieceModel model, int id, string name, string source)
    {
        if (id < 0 || id >= model.Count)
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"'{source}' declares {name}_id {id} but has only {model.Count} pieces", source);
    }

    /// <summary>
    /// Sentencepiece encoding of plain text: dummy prefix, spaces as ▁, byte fallback for unknown characters.
    /// Never adds EOS; text that looks like a control token stays text.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = _tokenizer.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false,
            considerPreTokenization: true, considerNormalization: true);
        if (!addBos)
            return ids;
        var withBos = new int[ids.Count + 1];
        withBos[0] = BosId;
        for (var i = 0; i < ids.Count; i++)
            withBos[i + 1] = ids[i];
        return withBos;
    }

    /// <summary>Text of <paramref name="ids"/>, control tokens (BOS, EOS) left out.</summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var kept = new List<int>();
        foreach (var id in ids)
        {
            CheckId(id);
            if (Model.Types[id] != SentencePieceType.Control)
                kept.Add(id);
        }
        return _tokenizer.Decode(kept, considerSpecialTokens: false);
    }

    /// <summary>The raw piece, e.g. "▁the", "&lt;0x0A&gt;", "&lt;s&gt;".</summary>
    public string IdToPiece(int id)
    {
        CheckId(id);
        return Model.Pieces[id];
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)Model.Count)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary of {Model.Count}");
    }
}
