using Ertas.Core;
using Ertas.Mistral.Presets;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Tests.Tokenization;

/// <summary>
/// The mistral-v3 rules on a v3-layout vocabulary built here (the built-in BPE with v3's control pieces at v3's
/// ids), so they hold without ../shared; the conformance tests check the same code against mistral-common.
/// </summary>
public partial class MistralV3ChatTemplateTests
{
    private static readonly Lazy<MistralTokenizer> LazyV3Layout = new(() =>
        MistralTokenizer.FromModel(BaseModelFactory.WithV3ControlPieces(SentencePieceBpeTrainer.TrainDefault(512))));
    private static readonly Lazy<MistralTokenizer> LazyV1Layout = new(() => MistralTokenizer.FromModel(SentencePieceBpeTrainer.TrainDefault(512)));

    private static MistralTokenizer V3Layout => LazyV3Layout.Value;
    private static readonly MistralV3ChatTemplate Template = new();

    private static readonly ChatTool Weather = new("get_weather", "Get the weather", "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}");

    private static ChatMessage Call(string id, string arguments = "{\"city\":\"Paris\"}") =>
        new(ChatMessage.Assistant, "", [new ChatToolCall(id, "get_weather", arguments)]);

    private static ChatMessage Result(string id, string content) => new(ChatMessage.Tool, content, ToolCallId: id, Name: "get_weather");

    /// <summary>The pieces as text; the small vocabulary spells '[' and '{' as byte pieces, shown as the characters.</summary>
    private static string Render(IEnumerable<int> ids) =>
        ByteOfPrintable().Replace(string.Concat(ids.Select(V3Layout.IdToPiece)), m => ((char)Convert.ToInt32(m.Groups[1].Value, 16)).ToString())
            .Replace('▁', ' ');

    private static string Render(TemplatedIds ids) => Render(ids.Ids);

    [System.Text.RegularExpressions.GeneratedRegex("<0x([2-7][0-9A-F])>")]
    private static partial System.Text.RegularExpressions.Regex ByteOfPrintable();

    [Fact]
    public void WithV3ControlPieces_PutsV3sControlTokensAtV3sIds()
    {
        Assert.Equal(Enumerable.Range(3, 7), MistralV3ChatTemplate.ControlPieces.Select(V3Layout.ControlId));
        Assert.Equal(770, V3Layout.Model.IdOf("[REFERENCE_DOC_0]"));
        Assert.Equal(SentencePieceType.Byte, V3Layout.Model.Types[771]);
    }

    [Fact]
    public void Encode_ToolConversation_FollowsTheV3Layout()
    {
        var ids = Template.Encode(V3Layout,
        [
            new(ChatMessage.System, "Be brief."),
            new(ChatMessage.User, "Weather?"),
            Call("a1b2c3d4e"),
            Result("a1b2c3d4e", "{\"temp\": 1e1}"),
            new(ChatMessage.Assistant, "Hot.  "),
        ], tools: [Weather]);
        Assert.Equal(
            "<s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", "
            + "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}][/AVAILABLE_TOOLS]"
            + "[INST] Be brief.<0x0A><0x0A>Weather?[/INST]"
            + "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}]</s>"
            + "[TOOL_RESULTS] {\"content\": {\"temp\": 10.0}, \"call_id\": \"a1b2c3d4e\"}[/TOOL_RESULTS]"
            + " Hot.</s>",
            Render(ids));
    }

    [Fact]
    public void Encode_SystemPromptAndTools_GoWithTheLastUserMessageOnly()
    {
        var text = Render(Template.Encode(V3Layout,
        [
            new(ChatMessage.System, "S1"), new(ChatMessage.System, "S2"), new(ChatMessage.User, "first"), new(ChatMessage.Assistant, "a"),
            new(ChatMessage.User, "last"),
        ], tools: [Weather]));
        Assert.StartsWith("<s>[INST] first[/INST] a</s>[AVAILABLE_TOOLS]", text);
        Assert.EndsWith("[/AVAILABLE_TOOLS][INST] S1<0x0A><0x0A>S2<0x0A><0x0A>last[/INST]", text);
    }

    [Fact]
    public void Encode_NoIdAndUnparsableArguments_AreLeftOutAndQuotedAsMistralCommonDoes()
    {
        var text = Render(Template.Encode(V3Layout, [new(ChatMessage.User, "q"), Call("null", "not json")]));
        Assert.EndsWith("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": \"not json\"}]</s>", text);
    }

    [Fact]
    public void Encode_ConsecutiveUserMessages_MergeWithABlankLine()
    {
        var text = Render(Template.Encode(V3Layout, [new(ChatMessage.User, "a"), new(ChatMessage.User, "b"), new(ChatMessage.Assistant, "c")]));
        Assert.Equal("<s>[INST] a<0x0A><0x0A>b[/INST] c</s>", text);
    }

    [Fact]
    public void LossMask_CoversAnswersAndToolCalls_NeverToolResultsToolListOrPrompt()
    {
        var templated = Template.Encode(V3Layout,
            [new(ChatMessage.User, "Weather?"), Call("a1b2c3d4e"), Result("a1b2c3d4e", "sunny"), new(ChatMessage.Assistant, "Sunny.")], tools: [Weather]);
        var trained = Render(templated.Ids.Where((_, i) => templated.IsAssistant[i]));
        Assert.Equal("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}]</s> Sunny.</s>", trained);
    }

    [Fact]
    public void GenerationPrompt_AfterAToolResult_EndsAtTheResultWithNoInstBeforeTheAnswer()
    {
        var templated = Template.Encode(V3Layout, [new(ChatMessage.User, "Weather?"), Call("a1b2c3d4e"), Result("a1b2c3d4e", "sunny")],
            addGenerationPrompt: true, tools: [Weather]);
        Assert.Equal(V3Layout.ControlId("[/TOOL_RESULTS]"), templated.Ids[^1]);
        var afterAnswer = Template.Encode(V3Layout, [new(ChatMessage.User, "q"), new(ChatMessage.Assistant, "a")]);
        Assert.Throws<ErtasException>(() => Template.Encode(V3Layout, [new(ChatMessage.User, "q"), new(ChatMessage.Assistant, "a")], addGenerationPrompt: true));
        Assert.Equal(2, afterAnswer.Ids[^1]);
    }

    public static TheoryData<string, ErrorCode> InvalidConversations() => new()
    {
        { "result-without-call", ErrorCode.InvalidToolCall },
        { "answer-before-results", ErrorCode.InvalidToolCall },
        { "bad-call-id", ErrorCode.InvalidToolCall },
        { "result-without-id", ErrorCode.InvalidToolCall },
        { "bad-function-name", ErrorCode.InvalidToolCall },
        { "content-and-calls", ErrorCode.InvalidConversation },
        { "empty-answer", ErrorCode.InvalidConversation },
        { "unknown-role", ErrorCode.InvalidConversation },
        { "user-after-tool", ErrorCode.InvalidConversation },
    };

    [Theory]
    [MemberData(nameof(InvalidConversations))]
    public void Encode_ConversationMistralCommonRefuses_IsRefusedWithItsCode(string name, ErrorCode code)
    {
        ChatMessage user = new(ChatMessage.User, "q");
        ChatMessage[] messages = name switch
        {
            "result-without-call" => [user, new(ChatMessage.Assistant, "a"), Result("a1b2c3d4e", "x")],
            "answer-before-results" => [user, Call("a1b2c3d4e"), new(ChatMessage.Assistant, "a")],
            "bad-call-id" => [user, Call("call_1")],
            "result-without-id" => [user, Call("a1b2c3d4e"), new(ChatMessage.Tool, "x")],
            "bad-function-name" => [user, new(ChatMessage.Assistant, "", [new ChatToolCall(null, "get weather", "{}")])],
            "content-and-calls" => [user, new(ChatMessage.Assistant, "text", [new ChatToolCall(null, "f", "{}")])],
            "empty-answer" => [user, new(ChatMessage.Assistant, "")],
            "unknown-role" => [user, new("critic", "x")],
            "user-after-tool" => [user, Call("a1b2c3d4e"), Result("a1b2c3d4e", "x"), user],
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };
        Assert.Equal(code, Assert.Throws<ErtasException>(() => Template.Encode(V3Layout, messages)).Code);
    }

    [Fact]
    public void Auto_PicksV3WhenTheControlTokensExistAndV1Otherwise()
    {
        Assert.IsType<MistralV3ChatTemplate>(ChatTemplates.Get(ChatTemplates.AutoName, V3Layout));
        Assert.IsType<MistralV1ChatTemplate>(ChatTemplates.Get(ChatTemplates.AutoName, LazyV1Layout.Value));
        Assert.Equal(ChatTemplates.MistralV1Jinja, ChatTemplates.JinjaFor(LazyV1Layout.Value));
        Assert.Equal(ChatTemplates.MistralV3Jinja, ChatTemplates.JinjaFor(V3Layout));
        Assert.Equal(ChatTemplates.MistralV1Ollama, ChatTemplates.OllamaFor(LazyV1Layout.Value));
        Assert.Equal(ChatTemplates.MistralV3Ollama, ChatTemplates.OllamaFor(V3Layout));
        // Before a tokenizer is known, auto is a valid name that resolves when it encodes.
        var auto = ChatTemplates.Get(ChatTemplates.AutoName);
        Assert.Equal(Template.Encode(V3Layout, [new(ChatMessage.User, "q")]).Ids, auto.Encode(V3Layout, [new(ChatMessage.User, "q")]).Ids);
    }

    [Fact]
    public void ExplicitTemplateThatDoesNotFitTheVocabulary_IsTemplateTokenizerMismatch()
    {
        Assert.Equal(ErrorCode.TemplateTokenizerMismatch,
            Assert.Throws<ErtasException>(() => ChatTemplates.Get(ChatTemplates.MistralV3Name, LazyV1Layout.Value)).Code);
        Assert.Equal(ErrorCode.TemplateTokenizerMismatch,
            Assert.Throws<ErtasException>(() => ChatTemplates.Get(ChatTemplates.MistralV1Name, V3Layout)).Code);
    }

    [Fact]
    public void V1Template_GivenToolsOrToolMessages_IsTemplateHasNoTools()
    {
        var v1 = new MistralV1ChatTemplate();
        var tokenizer = LazyV1Layout.Value;
        Assert.Equal(ErrorCode.TemplateHasNoTools,
            Assert.Throws<ErtasException>(() => v1.Encode(tokenizer, [new(ChatMessage.User, "q")], tools: [Weather])).Code);
        Assert.Equal(ErrorCode.TemplateHasNoTools,
            Assert.Throws<ErtasException>(() => v1.Encode(tokenizer, [new(ChatMessage.User, "q"), Call("a1b2c3d4e")])).Code);
    }

    [Fact]
    public void ParseSpecial_OnAV3Layout_MakesControlTextControlIdsWithNoPrefixBeforeALeadingOne()
    {
        var hi = V3Layout.Encode("hi", addBos: false);
        Assert.Equal([1, 3, .. hi, 4], V3Layout.Encode("<s>[INST] hi[/INST]", addBos: false, parseSpecial: true));
        Assert.Equal([1, .. V3Layout.Encode("x", addBos: false), 2], V3Layout.Encode("x</s>", addBos: true, parseSpecial: true));
        Assert.DoesNotContain(3, V3Layout.Encode("[INST] hi", addBos: false));
    }
}
