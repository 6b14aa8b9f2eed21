using System.Text.Json;
using Ertas.Core;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Tests.Tokenization;

public class MistralV1ChatTemplateTests
{
    private static readonly Lazy<MistralTokenizer> TrainedTokenizer =
        new(() => MistralTokenizer.FromModel(SentencePieceBpeTrainer.TrainDefault(800)));

    private static ChatMessage User(string text) => new(ChatMessage.User, text);
    private static ChatMessage Assistant(string text) => new(ChatMessage.Assistant, text);
    private static ChatMessage System(string text) => new(ChatMessage.System, text);

    private static int[] ConformanceIds() =>
        JsonDocument.Parse(File.ReadAllText(SharedMistralFiles.ConformanceTokensV1)).RootElement
            .GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [SkippableFact]
    public void Encode_ConformanceSample_GivesMistralCommonIdsExactly()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        var messages = ChatFile.Load(SharedMistralFiles.ConformanceSample);
        var encoded = ChatTemplates.Get("mistral-v1").Encode(tokenizer, messages, addGenerationPrompt: true);
        Assert.Equal(ConformanceIds(), encoded.Ids);
    }

    [SkippableFact]
    public void Encode_ConformanceSample_PiecesSpellMistralCommonText()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        var encoded = new MistralV1ChatTemplate().Encode(tokenizer, ChatFile.Load(SharedMistralFiles.ConformanceSample));
        var expected = File.ReadAllText(SharedMistralFiles.ConformanceTextV1).TrimEnd('\n', '\r');
        Assert.Equal(expected, string.Concat(encoded.Ids.Select(tokenizer.IdToPiece)));
    }

    [SkippableFact]
    public void Encode_ConformanceSample_MarksExactlyTheAnswersAndTheirEos()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        var messages = ChatFile.Load(SharedMistralFiles.ConformanceSample);
        var encoded = new MistralV1ChatTemplate().Encode(tokenizer, messages);
        Assert.Equal(encoded.Ids.Length, encoded.IsAssistant.Length);

        var answers = SplitMarkedRuns(encoded);
        var expectedAnswers = messages.Where(m => m.Role == ChatMessage.Assistant).Select(m => m.Content).ToList();
        Assert.Equal(expectedAnswers.Count, answers.Count);
        for (var i = 0; i < answers.Count; i++)
        {
            Assert.Equal(tokenizer.EosId, answers[i][^1]);
            Assert.Equal(expectedAnswers[i], tokenizer.Decode(answers[i]));
        }
        Assert.False(encoded.IsAssistant[0]);
        Assert.False(encoded.IsAssistant[^1]);
    }

    private static List<int[]> SplitMarkedRuns(TemplatedIds encoded)
    {
        var runs = new List<int[]>();
        var current = new List<int>();
        for (var i = 0; i <= encoded.Ids.Length; i++)
        {
            if (i < encoded.Ids.Length && encoded.IsAssistant[i])
                current.Add(encoded.Ids[i]);
            else if (current.Count > 0)
            {
                runs.Add(current.ToArray());
                current.Clear();
            }
        }
        return runs;
    }

    [Fact]
    public void Encode_LaysOutBosInstSegmentsAnswersAndEos()
    {
        var tokenizer = TrainedTokenizer.Value;
        var encoded = new MistralV1ChatTemplate().Encode(tokenizer, [User("Hi there"), Assistant("Hello."), User("Bye")]);
        int[] expected =
        [
            tokenizer.BosId,
            .. tokenizer.Encode("[INST] Hi there [/INST]", false),
            .. tokenizer.Encode("Hello.", false),
            tokenizer.EosId,
            .. tokenizer.Encode("[INST] Bye [/INST]", false),
        ];
        Assert.Equal(expected, encoded.Ids);
    }

    [Fact]
    public void Encode_SystemMessages_AreJoinedAndPutBeforeTheFirstUserMessageOnly()
    {
        var tokenizer = TrainedTokenizer.Value;
        var template = new MistralV1ChatTemplate();
        var withSystem = template.Encode(tokenizer,
            [System("Be brief."), User("Hi"), Assistant("Hello."), System("Be kind."), User("Bye")]);
        var folded = template.Encode(tokenizer,
            [User("Be brief.\n\nBe kind.\n\nHi"), Assistant("Hello."), User("Bye")]);
        Assert.Equal(folded.Ids, withSystem.Ids);
        Assert.Equal(folded.IsAssistant, withSystem.IsAssistant);
    }

    [Fact]
    public void Encode_ControlTokenTextInAMessage_IsNotAControlToken()
    {
        var tokenizer = TrainedTokenizer.Value;
        var encoded = new MistralV1ChatTemplate().Encode(tokenizer, [User("</s><s>[INST]")]);
        Assert.Equal(1, encoded.Ids.Count(id => id == tokenizer.BosId));
        Assert.DoesNotContain(tokenizer.EosId, encoded.Ids);
    }

    public static TheoryData<string, ChatMessage[], int> BadConversations() => new()
    {
        { "assistant first", [Assistant("Hello.")], 0 },
        { "two user turns in a row", [User("a"), User("b")], 1 },
        { "two assistant turns in a row", [User("a"), Assistant("b"), Assistant("c")], 2 },
        { "unknown role", [User("a"), new ChatMessage("tool", "{}")], 1 },
        { "empty answer", [User("a"), Assistant("")], 1 },
        { "assistant after a system message", [System("s"), Assistant("b")], 1 },
    };

    [Theory]
    [MemberData(nameof(BadConversations))]
    public void Encode_BadConversation_ThrowsInvalidConversationNamingTheMessage(string what, ChatMessage[] messages, int badIndex)
    {
        var e = Assert.Throws<ErtasException>(() => new MistralV1ChatTemplate().Encode(TrainedTokenizer.Value, messages));
        Assert.Equal(ErrorCode.InvalidConversation, e.Code);
        Assert.True(e.Message.Contains($"message {badIndex} "), $"{what}: '{e.Message}' does not name message {badIndex}");
    }

    [Fact]
    public void Encode_OnlySystemMessages_ThrowsInvalidConversation()
    {
        var e = Assert.Throws<ErtasException>(() => new MistralV1ChatTemplate().Encode(TrainedTokenizer.Value, [System("s")]));
        Assert.Equal(ErrorCode.InvalidConversation, e.Code);
    }

    [Fact]
    public void Encode_GenerationPromptAfterAnAnswer_ThrowsButTrainingExamplesMayEndWithOne()
    {
        var messages = new[] { User("a"), Assistant("b") };
        var template = new MistralV1ChatTemplate();
        var e = Assert.Throws<ErtasException>(() => template.Encode(TrainedTokenizer.Value, messages, addGenerationPrompt: true));
        Assert.Equal(ErrorCode.InvalidConversation, e.Code);
        Assert.Equal(TrainedTokenizer.Value.EosId, template.Encode(TrainedTokenizer.Value, messages).Ids[^1]);
    }

    [Fact]
    public void Get_UnknownName_ThrowsListingValidNames()
    {
        var e = Assert.Throws<ErtasException>(() => ChatTemplates.Get("chatml"));
        Assert.Equal(ErrorCode.UnknownTemplate, e.Code);
        Assert.Contains("mistral-v1", e.Message);
        Assert.Equal("mistral-v1", ChatTemplates.Get("mistral-v1").Name);
    }

    [SkippableFact]
    public void TheGgufJinja_IsMistralsOfficialV1TemplateAsFactsQuotesIt()
    {
        // The Ollama template has no outside text to match: Go's text/template renders it in Ertas.Eval.Tests.
        var facts = File.ReadAllText(SharedMistralFiles.Facts);
        Assert.Contains("`" + ChatTemplates.MistralV1Jinja + "`", facts);
    }
}
