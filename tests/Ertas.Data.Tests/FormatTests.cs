using Ertas.Core;
using Ertas.Mistral.Templates;

namespace Ertas.Data.Tests;

public sealed class FormatTests
{
    private static (string Role, string Content)[] Turns(DatasetExample example) => example.Messages.Select(m => (m.Role, m.Content)).ToArray();

    [Fact]
    public void ChatLines_ParseIntoTheirMessages_WithSystemKeptFirstForTheTemplate()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "chat.jsonl",
            [TestData.ChatLine(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello")),
             "{\"messages\":[{\"role\":\"user\",\"content\":\"2+2?\",\"extra\":1},{\"role\":\"assistant\",\"content\":\"4\",\"tool_calls\":null}],\"id\":7}"],
            withTokenizer: false);

        Assert.Empty(report.Diagnostics);
        Assert.Equal(2, report.Examples.Count);
        Assert.All(report.Examples, e => Assert.Equal(DatasetFormat.Chat, e.Format));
        Assert.Equal([("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello")], Turns(report.Examples[0]));
        Assert.Equal([("user", "2+2?"), ("assistant", "4")], Turns(report.Examples[1]));
        Assert.Equal([1, 2], report.Examples.Select(e => e.Line));
    }

    [Fact]
    public void ShareGptLines_MapHumanGptAndSystemToChatRoles()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "sharegpt.jsonl",
            ["{\"conversations\":[{\"from\":\"system\",\"value\":\"Be kind.\"},{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\"Hello\"},{\"from\":\"human\",\"value\":\"Bye\"},{\"from\":\"gpt\",\"value\":\"Bye!\"}]}"],
            withTokenizer: false);

        Assert.Empty(report.Diagnostics);
        var example = Assert.Single(report.Examples);
        Assert.Equal(DatasetFormat.ShareGpt, example.Format);
        Assert.Equal([("system", "Be kind."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Bye"), ("assistant", "Bye!")], Turns(example));
    }

    [Fact]
    public void AlpacaLines_JoinInstructionAndNonEmptyInputWithABlankLine()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "alpaca.jsonl",
            ["{\"instruction\":\"Add the numbers.\",\"input\":\"2 and 3\",\"output\":\"5\"}",
             "{\"instruction\":\"Say hi.\",\"input\":\"\",\"output\":\"Hi!\"}",
             "{\"instruction\":\"Say bye.\",\"output\":\"Bye!\"}",
             "{\"instruction\":\"Count.\",\"input\":null,\"output\":\"1 2 3\"}"],
            withTokenizer: false);

        Assert.Empty(report.Diagnostics);
        Assert.All(report.Examples, e => Assert.Equal(DatasetFormat.Alpaca, e.Format));
        Assert.Equal([("user", "Add the numbers.\n\n2 and 3"), ("assistant", "5")], Turns(report.Examples[0]));
        Assert.Equal([("user", "Say hi."), ("assistant", "Hi!")], Turns(report.Examples[1]));
        Assert.Equal([("user", "Say bye."), ("assistant", "Bye!")], Turns(report.Examples[2]));
        Assert.Equal([("user", "Count."), ("assistant", "1 2 3")], Turns(report.Examples[3]));
    }

    [Fact]
    public void CompletionLines_BecomeBosTextEos_AllTrained()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "text.jsonl", ["{\"text\":\"Once upon a time there was a fox.\"}"]);

        Assert.Empty(report.Diagnostics);
        var example = Assert.Single(report.Examples);
        Assert.Equal(DatasetFormat.Completion, example.Format);
        Assert.Equal("Once upon a time there was a fox.", example.Text);
        var encoded = Assert.Single(report.Encoded!);
        var tokenizer = TestData.TinyTokenizer;
        Assert.Equal([.. tokenizer.Encode("Once upon a time there was a fox.", addBos: true), tokenizer.EosId], encoded.Ids);
        Assert.All(encoded.Trained, Assert.True);
    }

    [Fact]
    public void AutoDetection_PicksEachFilesFormatFromItsFirstValidLine_IndependentlyPerFile()
    {
        using var scratch = new ScratchFolder();
        var chat = scratch.WriteLines("a.jsonl", ["not json", TestData.ChatLine(("user", "a"), ("assistant", "b"))]);
        var alpaca = scratch.WriteLines("b.jsonl", ["{\"instruction\":\"x\",\"output\":\"y\"}"]);
        var text = scratch.WriteLines("c.jsonl", ["", "{\"text\":\"z\"}"]);
        var share = scratch.WriteLines("d.jsonl", ["{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"r\"}]}"]);

        var report = DatasetValidator.Validate([chat, alpaca, text, share], null, TestData.Options());

        Assert.Equal(ErrorCode.DatasetInvalidJson, Assert.Single(report.Diagnostics).Code);
        Assert.Equal([DatasetFormat.Chat, DatasetFormat.Alpaca, DatasetFormat.Completion, DatasetFormat.ShareGpt], report.Examples.Select(e => e.Format));
    }

    [Fact]
    public void FormatOverride_ReadsTheNamedKeys_EvenWhenAutoDetectionWouldPickAnother()
    {
        using var scratch = new ScratchFolder();
        string[] lines = ["{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}],\"text\":\"raw text\"}"];

        var auto = TestData.Validate(scratch, "auto.jsonl", lines, withTokenizer: false);
        var forced = TestData.Validate(scratch, "forced.jsonl", lines, TestData.Options() with { Format = DatasetFormat.Completion }, withTokenizer: false);

        Assert.Equal(DatasetFormat.Chat, Assert.Single(auto.Examples).Format);
        Assert.Equal("raw text", Assert.Single(forced.Examples).Text);
    }

    [Fact]
    public void FormatOverride_ReportsLinesOfAnotherFormat_AsMixedFormats()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "x.jsonl", ["{\"text\":\"a\"}", TestData.ChatLine(("user", "a"), ("assistant", "b"))],
            TestData.Options() with { Format = DatasetFormat.Completion }, withTokenizer: false);

        var error = Assert.Single(report.Diagnostics);
        Assert.Equal((ErrorCode.DatasetMixedFormats, 2), (error.Code, error.Line));
        Assert.Contains("set to completion", error.Message);
    }

    [Fact]
    public void Utf8ByteOrderMarkAndCrlfLineEnds_AreAccepted()
    {
        using var scratch = new ScratchFolder();
        var path = scratch.WriteBytes("bom.jsonl", [0xEF, 0xBB, 0xBF, .. "{\"text\":\"a\"}\r\n{\"text\":\"b\"}\r\n"u8.ToArray()]);

        var report = DatasetValidator.Validate([path], null, TestData.Options());

        Assert.Empty(report.Diagnostics);
        Assert.Equal(["a", "b"], report.Examples.Select(e => e.Text));
    }
}
