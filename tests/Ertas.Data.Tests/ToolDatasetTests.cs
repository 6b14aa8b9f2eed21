using Ertas.Core;
using Ertas.Mistral.Presets;
using Ertas.Mistral.Tokenization;

namespace Ertas.Data.Tests;

/// <summary>
/// Function-calling datasets (OpenAI's format: per-line <c>tools</c>, assistant <c>tool_calls</c>, <c>tool</c>
/// results) on a v3-layout vocabulary: checked at file:line, templated as mistral-v3, trained on the answers and
/// the calls but never on the tool list or the results.
/// </summary>
public sealed class ToolDatasetTests : IDisposable
{
    // The built-in BPE with v3's control pieces at v3's ids, as `base create --preset tiny --tokenizer v3` would have.
    private static readonly Lazy<MistralTokenizer> V3 = new(() =>
        MistralTokenizer.FromModel(BaseModelFactory.WithV3ControlPieces(SentencePieceBpeTrainer.TrainDefault(1024))));

    private const string Tools =
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather for a city\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";

    private const string Call = "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a1b2c3d4e\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]}";
    private const string User = "{\"role\":\"user\",\"content\":\"Weather in Paris?\"}";
    private const string Result = "{\"role\":\"tool\",\"tool_call_id\":\"a1b2c3d4e\",\"name\":\"get_weather\",\"content\":\"{\\\"temp\\\": 21}\"}";
    private const string Answer = "{\"role\":\"assistant\",\"content\":\"It is 21 degrees.\"}";

    private readonly ScratchFolder _scratch = new();

    public void Dispose() => _scratch.Dispose();

    private static string Line(params string[] messages) => "{" + Tools + ",\"messages\":[" + string.Join(",", messages) + "]}";

    private ValidationReport Validate(string line, MistralTokenizer? tokenizer = null) =>
        DatasetValidator.Validate([_scratch.WriteLines("tools.jsonl", ["{\"messages\":[" + User + "," + Answer + "]}", line])],
            tokenizer ?? V3.Value, TestData.Options(512));

    [Fact]
    public void ToolConversation_TrainsOnTheCallAndTheAnswer_NeverOnTheToolListOrTheResult()
    {
        var report = Validate(Line(User, Call, Result, Answer));
        Assert.Empty(report.Diagnostics);
        var encoded = report.Encoded![1];
        Assert.Equal(2, encoded.Source.Line);
        Assert.Equal("get_weather", Assert.Single(encoded.Source.Tools).Name);
        var tokenizer = V3.Value;
        int At(string piece) => Array.IndexOf(encoded.Ids, tokenizer.ControlId(piece));
        Assert.True(encoded.Trained[At("[TOOL_CALLS]")], "the model must learn to emit [TOOL_CALLS]");
        foreach (var prompt in new[] { "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]" })
            Assert.False(encoded.Trained[At(prompt)], prompt);
        // Everything between [TOOL_RESULTS] and [/TOOL_RESULTS] is the tool's, not the model's.
        Assert.All(Enumerable.Range(At("[TOOL_RESULTS]"), At("[/TOOL_RESULTS]") - At("[TOOL_RESULTS]") + 1), i => Assert.False(encoded.Trained[i]));
        // The call and the answer each end with a trained </s>.
        Assert.Equal(2, encoded.Ids.Select((id, i) => (id, i)).Count(p => p.id == tokenizer.EosId && encoded.Trained[p.i]));
    }

    [Theory]
    [InlineData("result-without-call", "ERTAS6008", "message 1 is a tool result with no tool call before it")]
    [InlineData("unknown-call-id", "ERTAS6006", "message 2 answers tool_call_id \"zzzzzzzzz\", which no open tool call has (\"a1b2c3d4e\")")]
    [InlineData("arguments-not-json", "ERTAS6006", "message 1, tool call 0: \"arguments\" is not a JSON object: {city: Paris}")]
    [InlineData("user-before-result", "ERTAS6008", "message 2 is a user turn where a tool turn was expected")]
    [InlineData("ends-with-result", "ERTAS6008", "the conversation ends with a tool turn")]
    [InlineData("unknown-role", "ERTAS6007", "message 1 has role \"function\"; use system, user, assistant or tool")]
    public void ABrokenToolConversation_IsAnErrorAtItsLineAndField(string broken, string code, string message)
    {
        var line = broken switch
        {
            "result-without-call" => Line(User, Result, Answer),
            "unknown-call-id" => Line(User, Call, Result.Replace("a1b2c3d4e", "zzzzzzzzz"), Answer),
            "arguments-not-json" => Line(User, Call.Replace("{\\\"city\\\": \\\"Paris\\\"}", "{city: Paris}"), Result, Answer),
            "user-before-result" => Line(User, Call, User, Answer),
            "ends-with-result" => Line(User, Call, Result),
            "unknown-role" => Line(User, "{\"role\":\"function\",\"content\":\"x\"}", Answer),
            _ => throw new ArgumentOutOfRangeException(nameof(broken)),
        };
        var report = Validate(line);
        var error = Assert.Single(report.Diagnostics);
        Assert.Equal(2, error.Line);
        Assert.True(error.Column > 1, $"column {error.Column} should point into the line");
        Assert.Contains($"error {code}: {message}", error.ToString());
        Assert.DoesNotContain(report.Encoded ?? [], e => e.Source.Line == 2);
    }

    [Fact]
    public void Tools_OnAV1Tokenizer_AreAnErrorAtTheLine_SayingTheTemplateHasNoToolTokens()
    {
        var report = Validate(Line(User, Call, Result, Answer), TestData.TinyTokenizer);
        var error = Assert.Single(report.Diagnostics);
        Assert.Equal(2, error.Line);
        Assert.Contains("ERTAS3015", error.ToString());
    }
}
