using Ertas.Core;

namespace Ertas.Gguf;

/// <summary>SentencePiece token types as GGUF stores them in <c>tokenizer.ggml.token_type</c>.</summary>
public enum GgufTokenType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>
/// A SentencePiece ("llama") vocabulary as GGUF stores it: one piece, score and <see cref="GgufTokenType"/> per id,
/// the special ids, whether BOS/EOS are added when encoding, an optional Jinja chat template, and whether llama.cpp
/// prefixes raw text with a space (SentencePiece's dummy prefix) at the start and after every special token.
/// </summary>
public sealed record GgufVocabulary(
    string[] Tokens,
    float[] Scores,
    int[] TokenTypes,
    int BosId,
    int EosId,
    int UnkId,
    bool AddBos,
    bool AddEos,
    string? ChatTemplate,
    bool AddSpacePrefix = true)
{
    public int Count => Tokens.Length;

    /// <summary>Checks lengths agree, ids lie inside the vocabulary and types are known.</summary>
    public void Validate()
    {
        if (Tokens is null || Scores is null || TokenTypes is null)
            throw new ErtasException(ErrorCode.TokenizerCorrupt, "vocabulary is missing its tokens, scores or token types");
        if (Tokens.Length == 0)
            throw new ErtasException(ErrorCode.TokenizerCorrupt, "vocabulary has no tokens");
        if (Scores.Length != Tokens.Length || TokenTypes.Length != Tokens.Length)
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"vocabulary has {Tokens.Length} tokens but {Scores.Length} scores and {TokenTypes.Length} token types");
        foreach (var (name, id) in new[] { ("bos", BosId), ("eos", EosId), ("unk", UnkId) })
            if (id < 0 || id >= Tokens.Length)
                throw new ErtasException(ErrorCode.TokenizerCorrupt, $"{name} id {id} lies outside the vocabulary of {Tokens.Length} tokens");
        for (var i = 0; i < TokenTypes.Length; i++)
            if (TokenTypes[i] is < (int)GgufTokenType.Normal or > (int)GgufTokenType.Byte)
                throw new ErtasException(ErrorCode.TokenizerCorrupt, $"token {i} ('{Tokens[i]}') has unknown type {TokenTypes[i]}");
        for (var i = 0; i < Tokens.Length; i++)
            if (Tokens[i] is null)
                throw new ErtasException(ErrorCode.TokenizerCorrupt, $"token {i} is null");
    }

    /// <summary>
    /// Pads to <paramref name="vocabSize"/> entries with unused <c>[PADi]</c> tokens, as convert_hf_to_gguf.py does
    /// when config.json's vocab_size exceeds the tokenizer's pieces.
    /// </summary>
    public GgufVocabulary PadTo(int vocabSize)
    {
        if (vocabSize < Tokens.Length)
            throw new ErtasException(ErrorCode.TokenizerVocabMismatch,
                $"the tokenizer has {Tokens.Length} tokens but the model's vocab_size is {vocabSize}");
        if (vocabSize == Tokens.Length)
            return this;
        var tokens = Tokens.Concat(Enumerable.Range(Tokens.Length, vocabSize - Tokens.Length).Select(i => $"[PAD{i}]")).ToArray();
        var scores = Scores.Concat(Enumerable.Repeat(-1000f, vocabSize - Tokens.Length)).ToArray();
        var types = TokenTypes.Concat(Enumerable.Repeat((int)GgufTokenType.Unused, vocabSize - Tokens.Length)).ToArray();
        return this with { Tokens = tokens, Scores = scores, TokenTypes = types };
    }
}
