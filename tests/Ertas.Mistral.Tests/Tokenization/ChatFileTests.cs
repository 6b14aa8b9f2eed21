using Ertas.Core;
using Ertas.Mistral.Templates;

namespace Ertas.Mistral.Tests.Tokenization;

public class ChatFileTests
{
    [SkippableFact]
    public void Load_ConformanceSample_ReadsAllMessagesIgnoringToolFields()
    {
        var messages = ChatFile.Load(SharedMistralFiles.ConformanceSample);
        Assert.Equal(7, messages.Count);
        Assert.Equal(new ChatMessage("user", "What's the result of 5 + 5?"), messages[0]);
        Assert.Equal(new ChatMessage("assistant", "Sure! The result of 10 x 8 is 80."), messages[5]);
        Assert.Equal(new ChatMessage("user", "Thanks"), messages[6]);
    }

    [Fact]
    public void Parse_BadJson_ReportsTheLine()
    {
        const string json = "{\n  \"messages\": [\n    {\"role\": \"user\", \"content\": \"hi\"},\n    {\"role\": \"user\" \"content\": \"x\"}\n  ]\n}";
        var e = Assert.Throws<ErtasException>(() => ChatFile.Parse(json, "chat.json"));
        Assert.Equal(ErrorCode.ChatFileInvalidJson, e.Code);
        Assert.Equal("chat.json", e.File);
        Assert.Equal(4, e.Line);
    }

    [Fact]
    public void Parse_MessageWithoutContent_ReportsTheMessageLineAndColumn()
    {
        const string json = "{\"messages\": [\n  {\"role\": \"user\", \"content\": \"hi\"},\n  {\"role\": \"assistant\"}\n]}";
        var e = Assert.Throws<ErtasException>(() => ChatFile.Parse(json, "chat.json"));
        Assert.Equal(ErrorCode.ChatFileMissingField, e.Code);
        Assert.Equal((3, 3), (e.Line, e.Column));
        Assert.Contains("content", e.Message);
        Assert.Contains("message 1", e.Message);
    }

    [Fact]
    public void Parse_FirstLineOffset_ShiftsReportedLines()
    {
        var e = Assert.Throws<ErtasException>(() => ChatFile.Parse("{\"messages\": [{\"content\": \"x\"}]}", "data.jsonl", firstLine: 41));
        Assert.Equal(41, e.Line);
        Assert.Contains("role", e.Message);
    }

    public static TheoryData<string, ErrorCode> Invalid() => new()
    {
        { "[]", ErrorCode.ChatFileInvalidJson },
        { "{\"messages\": {}}", ErrorCode.ChatFileInvalidJson },
        { "{\"messages\": [\"hi\"]}", ErrorCode.ChatFileInvalidJson },
        { "{\"messages\": [{\"role\": \"user\", \"content\": null}]}", ErrorCode.ChatFileInvalidJson },
        { "{\"messages\": [{\"role\": 1, \"content\": \"x\"}]}", ErrorCode.ChatFileInvalidJson },
        { "{\"tools\": []}", ErrorCode.ChatFileMissingField },
        { "{\"messages\": []}", ErrorCode.ChatFileMissingField },
        { "{\"messages\": [", ErrorCode.ChatFileInvalidJson },
        { "", ErrorCode.ChatFileInvalidJson },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Parse_InvalidShape_ThrowsWithTheFile(string json, ErrorCode expected)
    {
        var e = Assert.Throws<ErtasException>(() => ChatFile.Parse(json, "chat.json"));
        Assert.Equal(expected, e.Code);
        Assert.Equal("chat.json", e.File);
        Assert.True(e.Line >= 1);
    }

    [Fact]
    public void Parse_ExtraPropertiesAndBom_AreAccepted()
    {
        byte[] bytes =
        [
            .. System.Text.Encoding.UTF8.Preamble,
            .. "{\"id\": 7, \"messages\": [{\"role\": \"user\", \"name\": {\"a\": [1]}, \"content\": \"hi\"}], \"tools\": []}"u8,
        ];
        Assert.Equal([new ChatMessage("user", "hi")], ChatFile.Parse(bytes, "chat.json"));
    }

    [Fact]
    public void Load_MissingFile_ThrowsFileNotFound()
    {
        using var folder = new ScratchFolder();
        var e = Assert.Throws<ErtasException>(() => ChatFile.Load(folder.File("chat.json")));
        Assert.Equal(ErrorCode.FileNotFound, e.Code);
    }
}

/// <summary>Tool fields in OpenAI's shape, which mistral-common reads and the v3 conformance samples use.</summary>
public class ChatFileToolTests
{
    [Fact]
    public void ParseDocument_ToolsToolCallsAndToolMessages_AreRead()
    {
        const string json = """
            {"messages": [
              {"role": "user", "content": "Weather?"},
              {"role": "assistant", "content": null, "tool_calls": [{"id": "a1b2c3d4e", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
              {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"b": [1, 2.50]}}}]},
              {"role": "tool", "tool_call_id": "a1b2c3d4e", "name": "get_weather", "content": "22"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}
            """;
        var document = ChatFile.ParseDocument(json, "chat.json");
        Assert.Equal(new ChatToolCall("a1b2c3d4e", "get_weather", "{\"city\": \"Paris\"}"), document.Messages[1].ToolCalls!.Single());
        Assert.Equal("", document.Messages[1].Content);
        Assert.Equal(new ChatToolCall(null, "f", "{\"b\": [1, 2.50]}"), document.Messages[2].ToolCalls!.Single());
        Assert.Equal(new ChatMessage(ChatMessage.Tool, "22", null, "a1b2c3d4e", "get_weather"), document.Messages[3]);
        Assert.Equal(new ChatTool("get_weather", "", "{\"type\": \"object\"}"), document.Tools.Single());
    }

    [Fact]
    public void ParseDocument_ToolWithoutAName_IsMissingFieldAtTheTool()
    {
        var e = Assert.Throws<ErtasException>(() => ChatFile.ParseDocument("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}],\n\"tools\": [{\"function\": {}}]}", "chat.json"));
        Assert.Equal(ErrorCode.ChatFileMissingField, e.Code);
        Assert.Equal((2, 11), (e.Line, e.Column));
    }

    [Fact]
    public void ParseDocument_NullContentWithoutToolCalls_IsStillInvalid()
    {
        var e = Assert.Throws<ErtasException>(() => ChatFile.ParseDocument("{\"messages\": [{\"role\": \"assistant\", \"content\": null, \"tool_calls\": []}]}", "chat.json"));
        Assert.Equal(ErrorCode.ChatFileInvalidJson, e.Code);
    }
}
