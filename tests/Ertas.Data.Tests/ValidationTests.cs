using System.Text;
using Ertas.Core;

namespace Ertas.Data.Tests;

public sealed class ValidationTests
{
    private static readonly string ValidChat = TestData.ChatLine(("user", "Hi"), ("assistant", "Hello"));

    [Fact]
    public void AFileWithManyProblems_ReportsEveryOne_WithItsLineColumnAndCode()
    {
        string[] lines =
        [
            ValidChat,                                                                                              // 1 ok, fixes the format
            "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},]}",                                              // 2 bad JSON
            "{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]}",      // 3 unknown role
            "{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"},{\"role\":\"user\",\"content\":\"y\"}]}",     // 4 starts with assistant
            "{\"messages\":[{\"role\":\"user\",\"content\":\" \"},{\"role\":\"assistant\",\"content\":\"y\"}]}",     // 5 empty content
            "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",                                                // 6 ends with user
            "{\"messages\":[{\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}",                       // 7 missing role
            "",                                                                                                     // 8 blank: skipped
            "{\"text\":\"hello\"}",                                                                                 // 9 mixed formats
            "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"assistant\",\"content\":\"b\"}]}", // 10 system later
            "{\"messages\":[{\"role\":\"user\",\"content\":5},{\"role\":\"assistant\",\"content\":\"b\"}]}",         // 11 content not a string
            "[1,2]",                                                                                                // 12 not an object
            "{\"foo\":1}",                                                                                          // 13 no known keys
            ValidChat,                                                                                              // 14 duplicate of 1
            "{\"messages\":\"x\"}",                                                                                 // 15 messages not an array
            "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"},{\"role\":\"user\",\"content\":\"c\"}]}", // 16 user twice
        ];
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "many.jsonl", lines);

        int Col(int line, string marker) => lines[line - 1].IndexOf(marker, StringComparison.Ordinal) + 1;
        (DiagnosticSeverity, ErrorCode, int, int)[] expected =
        [
            (DiagnosticSeverity.Error, ErrorCode.DatasetInvalidJson, 2, Col(2, ",]") + 1),
            (DiagnosticSeverity.Error, ErrorCode.DatasetUnknownRole, 3, Col(3, "\"bot\"")),
            (DiagnosticSeverity.Error, ErrorCode.DatasetRolesNotAlternating, 4, Col(4, "{\"role\":\"assistant\"")),
            (DiagnosticSeverity.Error, ErrorCode.DatasetEmptyContent, 5, Col(5, "\" \"")),
            (DiagnosticSeverity.Error, ErrorCode.DatasetRolesNotAlternating, 6, Col(6, "{\"role\":\"user\"")),
            (DiagnosticSeverity.Error, ErrorCode.DatasetMissingField, 7, Col(7, "{\"content\"")),
            (DiagnosticSeverity.Error, ErrorCode.DatasetMixedFormats, 9, 1),
            (DiagnosticSeverity.Error, ErrorCode.DatasetMisplacedSystem, 10, Col(10, "{\"role\":\"system\"")),
            (DiagnosticSeverity.Error, ErrorCode.DatasetInvalidField, 11, Col(11, "5}")),
            (DiagnosticSeverity.Error, ErrorCode.DatasetInvalidJson, 12, 1),
            (DiagnosticSeverity.Error, ErrorCode.DatasetUnknownFormat, 13, 1),
            (DiagnosticSeverity.Warning, ErrorCode.DatasetDuplicateExample, 14, 0),
            (DiagnosticSeverity.Error, ErrorCode.DatasetInvalidField, 15, Col(15, "\"x\"")),
            (DiagnosticSeverity.Error, ErrorCode.DatasetRolesNotAlternating, 16, Col(16, "{\"role\":\"user\",\"content\":\"b\"")),
        ];
        Assert.Equal(expected, report.Diagnostics.Select(d => (d.Severity, d.Code, d.Line, d.Column)));
        Assert.All(report.Diagnostics, d => Assert.Equal(scratch.File("many.jsonl"), d.File));
        Assert.Equal([1, 14], report.Examples.Select(e => e.Line));
        Assert.True(report.HasErrors);
    }

    [Fact]
    public void Diagnostics_AreOneLineInMsBuildFormat()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "roles.jsonl",
            [ValidChat, "{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]}", ValidChat]);
        var path = scratch.File("roles.jsonl");

        Assert.Equal(
            [
                $"{path}(2,22): error ERTAS6007: message 0 has role \"bot\"; use system, user or assistant",
                $"{path}(3,1): warning ERTAS6012: this example duplicates the one at line 1; kept (DuplicatePolicy Warn); set it to Drop or Error to change that",
            ],
            report.Diagnostics.Select(d => d.ToDiagnostic()));
    }

    [Fact]
    public void ThrowIfErrors_ThrowsErtas6020AtTheFirstError_CountingTheRest()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "bad.jsonl", [ValidChat, "{oops", "{\"messages\":[]}"]);

        var error = Assert.Throws<ErtasException>(report.ThrowIfErrors);
        Assert.Equal(ErrorCode.DatasetHasErrors, error.Code);
        Assert.Equal((scratch.File("bad.jsonl"), 2, 2), (error.File, error.Line, error.Column));
        Assert.StartsWith($"{scratch.File("bad.jsonl")}(2,2): error ERTAS6020: the dataset has errors, so nothing is trained from it: ERTAS6001: not valid JSON", error.ToDiagnostic());
        Assert.EndsWith("(and 1 more error; each is reported on its own line)", error.Message);
    }

    [Fact]
    public void InvalidUtf8_IsReportedAtItsLineAndCharacterColumn_FromTheRawBytes()
    {
        using var scratch = new ScratchFolder();
        byte[] content =
        [
            .. "{\"text\":\"fine\"}\n"u8,
            .. "{\"text\":\"ok too\"}\n"u8,
            .. "{\"text\":\"ab"u8, 0xFF, .. "cd\"}\n"u8,             // line 3: a byte that is never UTF-8
            .. "{\"text\":\"h\u00e9 "u8, 0xC3, 0x28, .. "\"}\n"u8,  // line 4: a lead byte followed by a non-continuation
            .. "{\"text\":\"end "u8, 0xE2, 0x82,                    // line 5: a sequence cut short by the end of the file
        ];
        var path = scratch.WriteBytes("utf8.jsonl", content);

        var report = DatasetValidator.Validate([path], null, TestData.Options());

        Assert.Equal(
            [(3, 12), (4, 13), (5, 14)],
            report.Diagnostics.Select(d => { Assert.Equal(ErrorCode.DatasetInvalidUtf8, d.Code); return (d.Line, d.Column); }));
        Assert.Equal(["fine", "ok too"], report.Examples.Select(e => e.Text));
        Assert.Contains("0xFF", report.Diagnostics[0].Message);
    }

    [Theory]
    [InlineData(DuplicatePolicy.Warn, DiagnosticSeverity.Warning, 3)]
    [InlineData(DuplicatePolicy.Drop, DiagnosticSeverity.Warning, 2)]
    [InlineData(DuplicatePolicy.Error, DiagnosticSeverity.Error, 2)]
    public void ExactDuplicates_AreReportedAgainstTheFirstOccurrence_PerPolicy(DuplicatePolicy policy, DiagnosticSeverity severity, int kept)
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "dup.jsonl",
            [ValidChat, TestData.ChatLine(("user", "Other"), ("assistant", "Answer")), "{\"messages\": [ {\"role\":\"user\", \"content\":\"Hi\"}, {\"role\":\"assistant\",\"content\":\"Hello\"} ]}"],
            TestData.Options() with { DuplicatePolicy = policy });

        var diagnostic = Assert.Single(report.Diagnostics);
        Assert.Equal((severity, ErrorCode.DatasetDuplicateExample, 3), (diagnostic.Severity, diagnostic.Code, diagnostic.Line));
        Assert.Contains("duplicates the one at line 1", diagnostic.Message);
        Assert.Equal(kept, report.Examples.Count);
    }

    [Fact]
    public void Duplicates_AcrossFilesAndFormats_NameTheFirstFile()
    {
        using var scratch = new ScratchFolder();
        var chat = scratch.WriteLines("chat.jsonl", [TestData.ChatLine(("user", "Say hi."), ("assistant", "Hi!"))]);
        var alpaca = scratch.WriteLines("alpaca.jsonl", ["{\"instruction\":\"Say hi.\",\"input\":\"\",\"output\":\"Hi!\"}"]);

        var report = DatasetValidator.Validate([chat, alpaca], null, TestData.Options() with { DuplicatePolicy = DuplicatePolicy.Drop });

        var duplicate = Assert.Single(report.Diagnostics);
        Assert.Equal((alpaca, 1), (duplicate.File, duplicate.Line));
        Assert.Contains($"{chat} line 1", duplicate.Message);
        Assert.Single(report.Examples);
    }

    [Fact]
    public void LengthPolicyError_ReportsTheTooLongExampleAsAnError()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "long.jsonl", ["{\"text\":\"short\"}", LongCompletion], TestData.Options(16));

        var error = Assert.Single(report.Diagnostics);
        Assert.Equal((DiagnosticSeverity.Error, ErrorCode.DatasetExampleTooLong, 2), (error.Severity, error.Code, error.Line));
        Assert.Contains("longer than the sequence length 16", error.Message);
    }

    [Fact]
    public void LengthPolicyDrop_LeavesTheExampleOutWithAWarning()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "long.jsonl", ["{\"text\":\"short\"}", LongCompletion],
            TestData.Options(16) with { LengthPolicy = LengthPolicy.Drop });

        var warning = Assert.Single(report.Diagnostics);
        Assert.Equal((DiagnosticSeverity.Warning, ErrorCode.DatasetExampleTooLong, 2), (warning.Severity, warning.Code, warning.Line));
        Assert.Equal([1], report.Encoded!.Select(e => e.Source.Line));
        Assert.False(report.HasErrors);
    }

    [Fact]
    public void LengthPolicyTruncate_KeepsTheFirstSequenceLengthIds_AndDropsExamplesLeftWithNothingToTrain()
    {
        using var scratch = new ScratchFolder();
        var longPrompt = TestData.ChatLine(("user", string.Join(' ', Enumerable.Repeat("tell me a long story", 10))), ("assistant", "No."));
        var longAnswer = TestData.ChatLine(("user", "Story?"), ("assistant", string.Join(' ', Enumerable.Repeat("once upon a time", 10))));
        var report = TestData.Validate(scratch, "long.jsonl", [longAnswer, longPrompt],
            TestData.Options(40) with { LengthPolicy = LengthPolicy.Truncate });

        Assert.Equal([(DiagnosticSeverity.Warning, 1), (DiagnosticSeverity.Warning, 2)], report.Diagnostics.Select(d => (d.Severity, d.Line)));
        Assert.Contains("truncated to its first 40 tokens", report.Diagnostics[0].Message);
        Assert.Contains("nothing to train on", report.Diagnostics[1].Message);
        var kept = Assert.Single(report.Encoded!);
        var full = ExampleEncoder.Encode(kept.Source, TestData.TinyTokenizer, Mistral.Templates.ChatTemplates.Get("mistral-v1"), false);
        Assert.True(kept.Truncated);
        Assert.Equal(full.Ids[..40], kept.Ids);
        Assert.Equal(full.Trained[..40], kept.Trained);
    }

    [Fact]
    public void AFileWithNoExamples_IsAnError()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "empty.jsonl", ["", "  "]);

        var error = Assert.Single(report.Diagnostics);
        Assert.Equal((ErrorCode.DatasetNoExamples, 0), (error.Code, error.Line));
    }

    [Fact]
    public void AMissingDataFile_IsReportedAsUnreadable()
    {
        using var scratch = new ScratchFolder();
        var report = DatasetValidator.Validate([scratch.File("absent.jsonl")], null, TestData.Options());

        var error = Assert.Single(report.Diagnostics);
        Assert.Equal((ErrorCode.DatasetFileUnreadable, scratch.File("absent.jsonl")), (error.Code, error.File));
        Assert.Contains("does not exist", error.Message);
    }

    [Fact]
    public void ColumnsCountCharacters_NotBytes_AfterNonAsciiText()
    {
        using var scratch = new ScratchFolder();
        var line = "{\"messages\":[{\"role\":\"user\",\"content\":\"Grüße 日本\"},{\"role\":\"robot\",\"content\":\"y\"}]}";
        var report = TestData.Validate(scratch, "cols.jsonl", [line], withTokenizer: false);

        var error = Assert.Single(report.Diagnostics);
        Assert.Equal(ErrorCode.DatasetUnknownRole, error.Code);
        Assert.Equal(line.IndexOf("\"robot\"", StringComparison.Ordinal) + 1, error.Column);
        Assert.NotEqual(Encoding.UTF8.GetByteCount(line[..line.IndexOf("\"robot\"", StringComparison.Ordinal)]) + 1, error.Column);
    }

    private static readonly string LongCompletion =
        "{\"text\":" + TestData.Quote(string.Join(' ', Enumerable.Repeat("the quick brown fox jumps over the lazy dog", 4))) + "}";
}
