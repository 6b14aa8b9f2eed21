using System.Text;
using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral.Presets;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Eval.Tests;

/// <summary>
/// Eval cases that offer tools: read and checked at their columns, put in the prompt by the template, refused at the
/// tools' column for a model whose template has no tool tokens. Built-in vocabularies stand in for Mistral's real
/// tokenizers (the v3 one with v3's control pieces where Mistral has them), so nothing here needs ../shared.
/// </summary>
public sealed class EvalToolsTests
{
    private const string Tool = """{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}""";
    private const string Question = """[{"role":"user","content":"What is the weather in Paris?"}]""";
    private const string CallAssert = """[{"type":"tool_call","name":"get_weather","arguments":{"city":"Paris"}}]""";

    private static readonly Lazy<MistralTokenizer> V1 = new(() => MistralTokenizer.FromModel(SentencePieceBpeTrainer.TrainDefault(512)));
    private static readonly Lazy<MistralTokenizer> V3 = new(() => MistralTokenizer.FromModel(BaseModelFactory.WithV3ControlPieces(SentencePieceBpeTrainer.TrainDefault(1024))));

    private static readonly DecodeSettings Decode = new(2048, 512, 2, 32);

    private static (IReadOnlyList<EvalCase> Cases, List<DatasetDiagnostic> Diagnostics) Read(string text)
    {
        var diagnostics = new List<DatasetDiagnostic>();
        return (EvalSuiteReader.Read("evals/tools.jsonl", Encoding.UTF8.GetBytes(text), diagnostics), diagnostics);
    }

    private static string Lines(List<DatasetDiagnostic> diagnostics, int line) =>
        string.Join("\n", diagnostics.Where(d => d.Line == line).Select(d => d.ToDiagnostic()));

    [Fact]
    public void ACaseWithToolsAndAToolCallAssert_ReadsTheToolsAndTheExpectedCall()
    {
        var (cases, diagnostics) = Read($$"""{"id":"weather","tools":[{{Tool}}],"messages":{{Question}},"assert":{{CallAssert}}}""");
        Assert.Empty(diagnostics);
        var c = Assert.Single(cases);
        var tool = Assert.Single(c.Tools);
        Assert.Equal(("get_weather", "Current weather in a city"), (tool.Name, tool.Description));
        Assert.Contains("\"city\"", tool.ParametersJson);
        Assert.Equal(25, c.ToolsColumn);
        var assert = Assert.Single(c.Asserts);
        Assert.Equal(Assertions.ToolCall, assert.Type);
        Assert.Equal("""{"name":"get_weather","arguments":{"city":"Paris"}}""", assert.Value!.ToJsonString());
    }

    [Fact]
    public void ToolsAreHashedWithTheCase_SoChangingThemScoresTheCaseAgain()
    {
        var (cases, _) = Read($$"""
            {"id":"a","tools":[{{Tool}}],"messages":{{Question}},"assert":{{CallAssert}}}
            {"id":"b","tools":[{{Tool.Replace("Current weather", "Weather")}}],"messages":{{Question}},"assert":{{CallAssert}}}
            """);
        Assert.NotEqual(cases[0].Hash, cases[1].Hash);
    }

    [Fact]
    public void ACaseMayEndWithAToolResult_SoTheModelsFinalAnswerIsScored()
    {
        var (cases, diagnostics) = Read($$$"""
            {"id":"answer","tools":[{{{Tool}}}],"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","tool_calls":[{"id":"a1b2c3d4e","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},{"role":"tool","tool_call_id":"a1b2c3d4e","name":"get_weather","content":"{\"temperature\": 21}"}],"assert":[{"type":"contains","value":"21"}]}
            """);
        Assert.Empty(diagnostics);
        var messages = Assert.Single(cases).Messages!;
        Assert.Equal([ChatMessage.User, ChatMessage.Assistant, ChatMessage.Tool], messages.Select(m => m.Role));
        Assert.Equal(new ChatToolCall("a1b2c3d4e", "get_weather", """{"city": "Paris"}"""), Assert.Single(messages[1].ToolCalls!));
        Assert.Equal("a1b2c3d4e", messages[2].ToolCallId);
    }

    [Fact]
    public void BadToolsAndToolCallAsserts_AreReportedAtTheirColumns()
    {
        var (cases, diagnostics) = Read($$$"""
            {"id":"not-a-list","tools":{"name":"get_weather"},"messages":{{{Question}}},"assert":{{{CallAssert}}}}
            {"id":"no-name","tools":[{"type":"function","function":{"description":"x"}}],"messages":{{{Question}}},"assert":{{{CallAssert}}}}
            {"id":"bad-name","tools":[{"type":"function","function":{"name":"get weather"}}],"messages":{{{Question}}},"assert":{{{CallAssert}}}}
            {"id":"bad-params","tools":[{"type":"function","function":{"name":"f","parameters":"city"}}],"messages":{{{Question}}},"assert":{{{CallAssert}}}}
            {"id":"on-prompt","tools":[{{{Tool}}}],"prompt":"Weather in Paris?","assert":{{{CallAssert}}}}
            {"id":"value","messages":{{{Question}}},"assert":[{"type":"tool_call","value":"get_weather"}]}
            {"id":"no-call-name","messages":{{{Question}}},"assert":[{"type":"tool_call","arguments":{"city":"Paris"}}]}
            {"id":"list-args","messages":{{{Question}}},"assert":[{"type":"tool_call","name":"get_weather","arguments":["Paris"]}]}
            {"id":"name-on-contains","messages":{{{Question}}},"assert":[{"type":"contains","value":"x","name":"get_weather"}]}
            {"id":"empty","tools":[],"messages":{{{Question}}},"assert":{{{CallAssert}}}}
            {"id":"orphan-result","tools":[{{{Tool}}}],"messages":[{"role":"user","content":"Hi"},{"role":"tool","content":"{}"}],"assert":{{{CallAssert}}}}
            """);
        Assert.Empty(cases);
        Assert.StartsWith("evals/tools.jsonl(1,28): error ERTAS9004: \"tools\" must be an array", Lines(diagnostics, 1));
        Assert.StartsWith("evals/tools.jsonl(2,56): error ERTAS9003: tool 0: \"function.name\" must be 1 to 64 letters", Lines(diagnostics, 2));
        Assert.StartsWith("evals/tools.jsonl(3,65): error ERTAS9004: tool 0: \"function.name\"", Lines(diagnostics, 3));
        Assert.StartsWith("evals/tools.jsonl(4,84): error ERTAS9004: tool 0: \"function.parameters\" must be a JSON Schema object", Lines(diagnostics, 4));
        Assert.Contains("error ERTAS9004: \"tools\" are put in the prompt by the chat template; they need \"messages\"", Lines(diagnostics, 5));
        Assert.Contains("error ERTAS9007: assert 0 (tool_call): give the function as \"name\"", Lines(diagnostics, 6));
        Assert.Contains("error ERTAS9007: assert 0 (tool_call): a tool_call assert needs \"name\"", Lines(diagnostics, 7));
        Assert.Contains("error ERTAS9007: assert 0 (tool_call): \"arguments\" of a tool_call assert must be a JSON object", Lines(diagnostics, 8));
        Assert.Contains("error ERTAS9007: assert 0 (contains): only a tool_call assert takes \"name\"", Lines(diagnostics, 9));
        Assert.Contains("error ERTAS9004: \"tools\" is empty", Lines(diagnostics, 10));
        Assert.Contains("error ERTAS9003: message 1 is a tool result; it needs a string \"tool_call_id\"", Lines(diagnostics, 11));
    }

    [Fact]
    public void ToolsOnASuiteRunAgainstAV1Tokenizer_AreAnErrorAtTheToolsColumn()
    {
        var (cases, _) = Read($$"""
            {"id":"plain","messages":{{Question}},"assert":[{"type":"contains","value":"Paris"}]}
            {"id":"weather","tools":[{{Tool}}],"messages":{{Question}},"assert":{{CallAssert}}}
            """);
        var diagnostics = new List<DatasetDiagnostic>();
        var prepared = EvalScorer.Prepare(cases, V1.Value, ChatTemplates.For(V1.Value), Decode, diagnostics);
        Assert.Equal("plain", Assert.Single(prepared).Case.Id);
        var error = Assert.Single(diagnostics);
        Assert.Equal(ErrorCode.EvalToolsUnsupported, error.Code);
        Assert.StartsWith("evals/tools.jsonl(2,25): error ERTAS9014: case \"weather\" offers tools, but this model's template is mistral-v1", error.ToDiagnostic());
        Assert.Contains("Mistral's v3 tokenizer", error.Message);
    }

    [Fact]
    public void OnAV3Tokenizer_ThePromptIsTheTemplatesEncodingWithTheTools_EndingWhereTheModelSpeaks()
    {
        var (cases, _) = Read($$"""{"id":"weather","tools":[{{Tool}}],"messages":{{Question}},"assert":{{CallAssert}}}""");
        var tokenizer = V3.Value;
        var template = ChatTemplates.For(tokenizer);
        var diagnostics = new List<DatasetDiagnostic>();
        var prepared = Assert.Single(EvalScorer.Prepare(cases, tokenizer, template, Decode, diagnostics));
        Assert.Empty(diagnostics);
        Assert.Equal(template.Encode(tokenizer, cases[0].Messages!, addGenerationPrompt: true, cases[0].Tools).Ids, prepared.Prompt);
        Assert.Equal(tokenizer.ControlId(MistralV3ChatTemplate.BeginAvailableTools), prepared.Prompt[1]);
        Assert.Equal(tokenizer.ControlId(MistralV3ChatTemplate.EndInst), prepared.Prompt[^1]);
    }

    [Fact]
    public void GeneratedControlTokens_AreDecodedAsTheirPieces_SoAToolCallAssertSeesTheCall()
    {
        var tokenizer = V3.Value;
        var call = """[{"name": "get_weather", "arguments": {"city": "Paris"}}]""";
        int[] ids = [tokenizer.ControlId(MistralV3ChatTemplate.ToolCalls), .. tokenizer.Encode(call, addBos: false), tokenizer.EosId];
        var output = tokenizer.DecodeWithControlPieces(ids);
        Assert.Equal("[TOOL_CALLS] " + call, output);
        Assert.Equal(call, tokenizer.Decode(ids)); // the plain decoding drops the control token
        Assert.True(Assertions.Evaluate(new EvalAssert(Assertions.ToolCall,
            Assertions.ToolCallValue(System.Text.Json.Nodes.JsonValue.Create("get_weather"), System.Text.Json.Nodes.JsonNode.Parse("""{"city":"Paris"}"""), true)), output).Pass);
        Assert.Equal("Sunny.", tokenizer.DecodeWithControlPieces([tokenizer.BosId, .. tokenizer.Encode("Sunny.", addBos: false), tokenizer.EosId]));
    }
}
