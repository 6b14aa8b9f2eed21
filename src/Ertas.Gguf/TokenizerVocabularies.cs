using Ertas.Core;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Gguf;

/// <summary>
/// Moves a SentencePiece tokenizer into GGUF metadata and back, so a GGUF file carries everything needed to
/// tokenize exactly as training did (the chat-template/EOS mismatch users hit after export starts here).
/// </summary>
public static class TokenizerVocabularies
{
    /// <summary>
    /// The tokenizer as GGUF metadata; token types are SentencePiece's (v3's [INST], [TOOL_CALLS], ... stay control,
    /// so llama.cpp parses them as specials only when asked). Without <paramref name="chatTemplate"/>, the official
    /// Jinja of the template the vocabulary's models use (<see cref="ChatTemplates.JinjaFor"/>).
    /// </summary>
    public static GgufVocabulary FromTokenizer(MistralTokenizer tokenizer) =>
        FromTokenizer(tokenizer, ChatTemplates.JinjaFor(tokenizer));

    public static GgufVocabulary FromTokenizer(MistralTokenizer tokenizer, string? chatTemplate)
    {
        var model = tokenizer.Model;
        if (model.ModelType != SentencePieceModelType.Bpe)
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"tokenizer is a sentencepiece {model.ModelType} model; Mistral and llama.cpp's 'llama' vocabulary need BPE");
        return new GgufVocabulary(
            Tokens: [.. model.Pieces],
            Scores: [.. model.Scores],
            TokenTypes: model.GgufTokenTypes(),
            BosId: model.BosId,
            EosId: model.EosId,
            UnkId: model.UnkId,
            AddBos: true,
            AddEos: false,
            ChatTemplate: chatTemplate,
            // Mistral's chat formats write the space before every [INST] and answer themselves (the official v1 Jinja,
            // llama.cpp's mistral-v1 formatter, our Ollama template), as mistral-common's per-segment dummy prefix
            // does. llama.cpp's own prefix, added again at the start and after every special token, would double it
            // and give ids the model never saw; raw text prompts then need their leading space written out.
            AddSpacePrefix: false);
    }

    /// <summary>The inverse: a sentencepiece model with Mistral's normalizer settings (identity, dummy prefix, byte fallback).</summary>
    public static MistralTokenizer ToTokenizer(GgufVocabulary vocab)
    {
        vocab.Validate();
        var pieces = new List<SentencePiece>(vocab.Count);
        for (var i = 0; i < vocab.Count; i++)
            pieces.Add(new SentencePiece(vocab.Tokens[i], vocab.Scores[i], (SentencePieceType)vocab.TokenTypes[i]));
        var hasBytes = vocab.TokenTypes.Contains((int)GgufTokenType.Byte);
        var model = new SentencePieceModel(pieces,
            TrainerSpec.ForBpe(vocab.Count, byteFallback: hasBytes, unkId: vocab.UnkId, bosId: vocab.BosId, eosId: vocab.EosId),
            NormalizerSpec.Identity());
        return MistralTokenizer.FromModel(model);
    }
}
