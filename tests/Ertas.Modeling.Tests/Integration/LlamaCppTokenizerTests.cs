using Ertas.Gguf;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using Ertas.TestSupport;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// llama.cpp is the tokenizer that finally runs an exported model: it must read the vocabulary our exporter wrote
/// into the GGUF and encode every text exactly as <see cref="MistralTokenizer"/> does on the folder's tokenizer.model.
/// </summary>
[Collection(CliModelsCollection.Name)]
public sealed class LlamaCppTokenizerTests(CliModels models)
{
    public static readonly string[] Texts =
    [
        "",
        "Hello, world!",
        "  two leading,  double  and trailing spaces  ",
        "   ",
        "line one\nline two\n\n\tindented\twith\ttabs\r\n",
        "accents: naïve café, Ångström, São Paulo, Zürich, crème brûlée",
        "CJK: 中文字符 和 日本語のテキスト 한국어",
        "emoji 😀👍🏽 ✨ and a flag 🇫🇷",
        "digits 1234567 and 3.14159, -0.5e10, 2024-01-31",
        "for (int i = 0; i < n; i++) { x += y; }",
        "see https://example.com/path/to?q=a&b=c#frag or mailto:someone@example.org",
        "MiXeD CaSe WORDS, ALL CAPS and lowercase",
        "<s>[INST] looks special [/INST]</s> but is literal text",
        "Untrained words: xylophone quokka zeitgeist rhythm",
    ];

    [Fact]
    public void BuiltInVocabulary_ExportedByTheCli_LlamaCppEncodesEveryTextLikeOurTokenizer()
    {
        var tokenizer = MistralTokenizer.Load(Path.Combine(models.TinyFolder, "tokenizer.model"));
        AssertSameEncodings(models.TinyF32, tokenizer, Texts);
    }

    [SkippableFact]
    public void MistralVocabulary_ExportedByTheCli_LlamaCppEncodesEveryTextLikeOurTokenizer()
    {
        var (folder, gguf) = RequireMistralVocabulary();
        var tokenizer = MistralTokenizer.Load(Path.Combine(folder, "tokenizer.model"));
        Assert.Equal(32000, tokenizer.VocabSize);
        AssertSameEncodings(gguf, tokenizer, Texts);
    }

    [SkippableFact]
    public void MistralVocabulary_ExportedByTheCli_LlamaCppEncodesTheConformanceSegmentsLikeMistralCommon()
    {
        var (folder, gguf) = RequireMistralVocabulary();
        var sample = RepoPaths.ConformanceSample;
        Skip.If(sample is null, "../shared/mistral/conformance/no_tools/sample.json is not present beside the repository");
        var tokenizer = MistralTokenizer.Load(Path.Combine(folder, "tokenizer.model"));
        // Each segment of the v1 layout is encoded on its own, without BOS (FACTS §6).
        var segments = ChatFile.Load(sample!)
            .Select(m => m.Role == ChatMessage.User ? $"[INST] {m.Content} [/INST]" : m.Content)
            .ToArray();
        Assert.NotEmpty(segments);
        using var llama = LlamaCppModel.Load(gguf, vocabOnly: true);
        foreach (var text in segments)
            Assert.Equal(tokenizer.Encode(text, addBos: false), llama.Tokenize(" " + text, addBos: false));
    }

    private (string Folder, string Gguf) RequireMistralVocabulary()
    {
        var built = models.MistralVocabulary;
        Skip.If(built is null, "../shared/mistral/tokenizer.model.v1 (the real Mistral tokenizer) is not present beside the repository");
        return built!.Value;
    }

    /// <summary>
    /// llama.cpp on the GGUF, our tokenizer on tokenizer.model, and our tokenizer rebuilt from the GGUF's vocabulary
    /// (what <c>ertas generate</c> uses on a GGUF) must give the same ids, BOS included. Our GGUFs set
    /// add_space_prefix=false (the chat formats write that space themselves), so llama.cpp gets the space
    /// SentencePiece's dummy prefix stands for written out.
    /// </summary>
    private static void AssertSameEncodings(string ggufPath, MistralTokenizer tokenizer, IEnumerable<string> texts)
    {
        using var llama = LlamaCppModel.Load(ggufPath, vocabOnly: true);
        Assert.Equal(tokenizer.VocabSize, llama.VocabSize);
        MistralTokenizer fromGguf;
        using (var source = new GgufTensorSource(ggufPath))
            fromGguf = TokenizerVocabularies.ToTokenizer(source.ReadVocabulary());
        foreach (var text in texts)
        {
            var ours = tokenizer.Encode(text, addBos: true).ToArray();
            Assert.Equal(tokenizer.BosId, ours[0]);
            var theirs = llama.Tokenize(text.Length == 0 ? text : " " + text, addBos: true); // SentencePiece adds no prefix to ""
            Assert.True(ours.SequenceEqual(theirs),
                $"llama.cpp disagrees on \"{text}\":\n ours      {string.Join(' ', ours)}\n llama.cpp {string.Join(' ', theirs)}");
            Assert.Equal(ours, fromGguf.Encode(text, addBos: true));
        }
    }
}
