using System.Text.Json;
using Ertas.Gguf;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using Ertas.TestSupport;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// Mistral's v3 tokenizer end to end: <c>ertas tokenize</c> against mistral-common's conformance ids, and a tiny model
/// built on the v3 tokenizer, exported to GGUF, against llama.cpp's own tokenizer with special parsing on and off.
/// </summary>
[Collection(CliModelsCollection.Name)]
public sealed class MistralV3TokenizerCliTests(CliModels models)
{
    public static TheoryData<string> Samples() => new() { "no_tools", "get_weather_full", "parallel_calls" };

    /// <summary>
    /// Two dozen texts: the v1 parity texts (plain text, whitespace, Unicode) and control-token text, user-defined
    /// pieces and what v3's tool turns look like.
    /// </summary>
    public static readonly string[] Texts =
    [
        .. LlamaCppTokenizerTests.Texts.Take(6),
        "[INST]",
        "[INST] What's the weather like today[/INST]",
        "<s>[INST] hi[/INST] hello</s>",
        "[INST]hi[/INST]",
        "text before [INST] and after [/INST] text",
        "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}]</s>",
        "[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}][/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS] {\"content\": 22, \"call_id\": \"a1b2c3d4e\"}[/TOOL_RESULTS]",
        "}}}] and ]]]] and {{{{",
        "[/INST][INST][/INST]",
        "[control_12] [control_748] [control_749]",
        "[REFERENCE_DOC_0] cites [REFERENCE_DOC_19]",
        "see[REFERENCE_DOC_3]here",
        "<unk> and <s> and </s>",
        "[IMG][PREFIX][MIDDLE][SUFFIX]",
        "[INST ] [ /INST] [inst] almost tokens",
        "  [INST]  spaced  [/INST]  ",
        "</s></s>",
    ];

    private static string Require(string? path, string what)
    {
        Skip.If(path is null, $"../shared/mistral/{what} is not present beside the repository");
        return path!;
    }

    [SkippableTheory]
    [MemberData(nameof(Samples))]
    public void Tokenize_ChatSampleWithTools_PrintsMistralCommonsV3Ids(string sample)
    {
        var tokenizer = Require(RepoPaths.MistralTokenizerV3, "tokenizer.model.v3");
        var chat = Require(RepoPaths.ConformanceV3(sample, "sample.json"), $"conformance/{sample}/sample.json");
        using var expected = JsonDocument.Parse(File.ReadAllText(Require(RepoPaths.ConformanceV3(sample, "tokens_v3.json"), "tokens_v3.json")));
        var ids = string.Join(' ', expected.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));
        // auto is the default and picks mistral-v3 for this tokenizer; naming it gives the same.
        Assert.Equal(ids, Cli.Succeed("tokenize", "--tokenizer", tokenizer, "--chat", chat).Out.Trim());
        Assert.Equal(ids, Cli.Succeed("tokenize", "--tokenizer", tokenizer, "--chat", chat, "--template", "mistral-v3").Out.Trim());
    }

    [SkippableFact]
    public void Tokenize_ExplicitV1TemplateOnTheV3Tokenizer_IsTemplateTokenizerMismatch()
    {
        var tokenizer = Require(RepoPaths.MistralTokenizerV3, "tokenizer.model.v3");
        var chat = Require(RepoPaths.ConformanceV3("no_tools", "sample.json"), "conformance/no_tools/sample.json");
        var result = Cli.Run("tokenize", "--tokenizer", tokenizer, "--chat", chat, "--template", "mistral-v1");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("ERTAS3014", result.Error);
    }

    [SkippableFact]
    public void Tokenize_ParseSpecial_TurnsControlTextIntoControlIdsOnlyWithTheFlag()
    {
        var tokenizer = Require(RepoPaths.MistralTokenizerV3, "tokenizer.model.v3");
        var with = Cli.Succeed("tokenize", "--tokenizer", tokenizer, "--text", "[INST] hi[/INST]", "--parse-special").Out.Trim().Split(' ').Select(int.Parse).ToArray();
        var without = Cli.Succeed("tokenize", "--tokenizer", tokenizer, "--text", "[INST] hi[/INST]").Out.Trim().Split(' ').Select(int.Parse).ToArray();
        var hi = MistralTokenizer.Load(tokenizer).Encode("hi", addBos: false);
        Assert.Equal([1, 3, .. hi, 4], with);
        Assert.Equal(1, without[0]);
        Assert.DoesNotContain(3, without);
        Assert.DoesNotContain(4, without);
    }

    [SkippableFact]
    public void V3Gguf_TokenTypes_AreControlForV3sSpecialPieces()
    {
        var (_, gguf) = RequireV3Model();
        using var source = new GgufTensorSource(gguf);
        var vocab = source.ReadVocabulary();
        foreach (var piece in MistralV3ChatTemplate.ControlPieces)
            Assert.Equal((int)GgufTokenType.Control, vocab.TokenTypes[Array.IndexOf(vocab.Tokens, piece)]);
        Assert.Equal((int)GgufTokenType.UserDefined, vocab.TokenTypes[Array.IndexOf(vocab.Tokens, "[REFERENCE_DOC_0]")]);
        // Mistral's v0.3 Jinja, never v1's: v1's " [INST]" would be filed as mistral-v1 by llama.cpp.
        Assert.Equal(ChatTemplates.MistralV3Jinja, vocab.ChatTemplate);
    }

    [SkippableFact]
    public void V3Gguf_LlamaCppTokenizesEveryTextLikeOurTokenizer_WithAndWithoutSpecialParsing()
    {
        var (folder, gguf) = RequireV3Model();
        var tokenizer = MistralTokenizer.Load(Path.Combine(folder, "tokenizer.model"));
        Assert.Equal(32768, tokenizer.VocabSize);
        Assert.IsType<MistralV3ChatTemplate>(ChatTemplates.Get(ChatTemplates.AutoName, tokenizer));
        MistralTokenizer fromGguf;
        using (var source = new GgufTensorSource(gguf))
            fromGguf = TokenizerVocabularies.ToTokenizer(source.ReadVocabulary());
        using var llama = LlamaCppModel.Load(gguf, vocabOnly: true);
        Assert.Equal(tokenizer.VocabSize, llama.VocabSize);
        var specials = Enumerable.Range(0, tokenizer.VocabSize)
            .Where(id => tokenizer.Model.Types[id] is SentencePieceType.Control or SentencePieceType.Unknown or SentencePieceType.UserDefined)
            .Select(id => tokenizer.Model.Pieces[id]).ToArray();
        var failures = new List<string>();
        foreach (var special in new[] { false, true })
        {
            foreach (var text in Texts)
            {
                var ours = tokenizer.Encode(text, addBos: true, parseSpecial: special).ToArray();
                // Our GGUFs ask llama.cpp for no space prefix; the dummy prefix's space is written out, except before a
                // leading special piece when specials are parsed (none goes there, in either tokenizer).
                var leadingSpecial = special && specials.Any(p => text.StartsWith(p, StringComparison.Ordinal));
                var theirs = llama.Tokenize(text.Length == 0 || leadingSpecial ? text : " " + text, addBos: true, special: special);
                if (!ours.SequenceEqual(theirs))
                    failures.Add($"special={special} \"{text}\":\n ours      {string.Join(' ', ours)}\n llama.cpp {string.Join(' ', theirs)}");
                Assert.Equal(ours, fromGguf.Encode(text, addBos: true, parseSpecial: special));
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    private (string Folder, string Gguf) RequireV3Model()
    {
        var built = models.MistralV3Vocabulary;
        Skip.If(built is null, "../shared/mistral/tokenizer.model.v3 (Mistral's v3 tokenizer) is not present beside the repository");
        return built!.Value;
    }
}
