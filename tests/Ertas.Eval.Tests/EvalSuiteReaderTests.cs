using System.Text;
using Ertas.Core;
using Ertas.Data;
using Ertas.Eval;

namespace Ertas.Eval.Tests;

public sealed class EvalSuiteReaderTests
{
    private static (IReadOnlyList<EvalCase> Cases, List<DatasetDiagnostic> Diagnostics) Read(string text, string file = "evals/suite.jsonl")
    {
        var diagnostics = new List<DatasetDiagnostic>();
        var cases = EvalSuiteReader.Read(file, Encoding.UTF8.GetBytes(text), diagnostics);
        return (cases, diagnostics);
    }

    [Fact]
    public void TheIssuesExampleLines_ReadAsOneGeneratedAndOneMultipleChoiceCase()
    {
        var (cases, diagnostics) = Read("""
            {"id":"capital-fr","messages":[{"role":"user","content":"What is the capital of France?"}],"assert":[{"type":"contains","value":"Paris"}],"tags":["critical"],"max_tokens":24}
            {"id":"pick-1","messages":[{"role":"user","content":"Largest planet?"}],"choices":["Mars","Jupiter","Venus"],"answer":1}
            """);
        Assert.Empty(diagnostics);
        Assert.Equal(2, cases.Count);
        var (generated, choice) = (cases[0], cases[1]);
        Assert.Equal(("capital-fr", 1, 24), (generated.Id, generated.Line, generated.MaxTokens));
        Assert.True(generated.IsCritical);
        Assert.False(generated.IsMultipleChoice);
        Assert.Equal("contains", Assert.Single(generated.Asserts).Type);
        Assert.Equal((2, 1), (choice.Line, choice.Answer));
        Assert.Equal(["Mars", "Jupiter", "Venus"], choice.Choices);
    }

    [Fact]
    public void IdealAlone_IsAnExactMatchAssert_AndWithAssertsItIsKeptOnlyForTargetNll()
    {
        var (cases, diagnostics) = Read("""
            {"id":"a","prompt":"2+2=","ideal":"4"}
            {"id":"b","prompt":"2+2=","ideal":"4","assert":[{"type":"contains","value":"4"}]}
            """);
        Assert.Empty(diagnostics);
        var exact = Assert.Single(cases[0].Asserts);
        Assert.Equal(("exact_match", "4"), (exact.Type, exact.Value!.GetValue<string>()));
        Assert.Equal("contains", Assert.Single(cases[1].Asserts).Type);
        Assert.Equal("4", cases[1].Ideal);
    }

    [Fact]
    public void CaseHash_IgnoresKeyOrderAndWhitespace_ButChangesWithContent()
    {
        var (cases, _) = Read("""
            {"id":"a","prompt":"Hi","ideal":"Hello"}
            { "ideal" : "Hello", "prompt": "Hi", "id": "b" }
            {"id":"c","prompt":"Hi","ideal":"Hello!"}
            """);
        Assert.Equal(cases[0].Hash, Read("""{ "ideal":"Hello","prompt":"Hi","id":"a" }""").Cases[0].Hash);
        Assert.NotEqual(cases[0].Hash, cases[1].Hash); // another id
        Assert.NotEqual(cases[0].Hash, cases[2].Hash);
    }

    [Fact]
    public void EveryProblemInTheSuite_IsReportedAtOnce_AtItsLineAndColumn_AndNoCaseIsReturnedForABadLine()
    {
        var (cases, diagnostics) = Read("""
            {"id":"ok","prompt":"Hi","assert":[{"type":"contains","value":"Hello"}]}
            {"id":"bad-type","prompt":"Hi","assert":[{"type":"containz","value":"x"}]}
            {"id":"bad-regex","prompt":"Hi","assert":[{"type":"regex","value":"(unclosed"}]}
            {"id":"ok","prompt":"Hi","ideal":"x"}
            {"id":"range","messages":[{"role":"user","content":"Pick"}],"choices":["a","b"],"answer":2}
            {"id":"typo","prompt":"Hi","ideal":"x","max_token":3}
            {"id":"none","prompt":"Hi"}
            not json
            {"id":"both","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"ideal":"x"}
            {"id":"ends-with-answer","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}],"ideal":"x"}
            """);
        Assert.Single(cases);
        string Line(int line) => string.Join("\n", diagnostics.Where(d => d.Line == line).Select(d => d.ToDiagnostic()));
        Assert.Equal(10, diagnostics.Select(d => d.Line).Distinct().Count() + 1); // every bad line but line 1 (9 lines)
        Assert.StartsWith("evals/suite.jsonl(2,50): error ERTAS9006: unknown assert type \"containz\"", Line(2));
        Assert.Contains("error ERTAS9007: assert 0 (regex):", Line(3));
        Assert.StartsWith("evals/suite.jsonl(4,7): error ERTAS9008: duplicate id \"ok\": first used at evals/suite.jsonl(1)", Line(4));
        Assert.Contains("error ERTAS9009: \"answer\" is 2 but there are 2 choices", Line(5));
        Assert.Contains("error ERTAS9005: unknown key \"max_token\"", Line(6));
        Assert.Contains("error ERTAS9003: nothing to check", Line(7));
        Assert.Contains("error ERTAS9001: not valid JSON", Line(8));
        Assert.Contains("error ERTAS9004: a case has \"messages\" (chat) or \"prompt\" (raw completion), not both", Line(9));
        Assert.Contains("error ERTAS9013: the last message must be a user turn", Line(10));
    }

    [Fact]
    public void ADuplicateKey_IsInvalidJsonAtItsLine_NotAStackTrace()
    {
        var (cases, diagnostics) = Read("""{"id":"a","id":"b","prompt":"Hi","ideal":"x"}""" + "\n" + """{"id":"c","prompt":"Hi","assert":[{"type":"json_match","value":{"k":1,"k":2}}]}""");
        Assert.Empty(cases);
        Assert.Equal([(ErrorCode.EvalInvalidJson, 1), (ErrorCode.EvalInvalidJson, 2)], diagnostics.Select(d => (d.Code, d.Line)));
    }

    [Fact]
    public void Ids_AreUniqueAcrossTheProjectsSuites()
    {
        using var folder = new TempDirectory();
        var a = folder.Write("a.jsonl", """{"id":"x","prompt":"Hi","ideal":"a"}""");
        var b = folder.Write("b.jsonl", "\n" + """{"id":"x","prompt":"Ho","ideal":"b"}""");
        var diagnostics = new List<DatasetDiagnostic>();
        var cases = EvalSuiteReader.Read([a, b], diagnostics);
        Assert.Single(cases);
        var error = Assert.Single(diagnostics);
        Assert.Equal((ErrorCode.EvalDuplicateId, b, 2), (error.Code, error.File, error.Line));
        Assert.Contains($"first used at {a}(1)", error.Message);
    }

    [Fact]
    public void AnEmptySuite_IsAnError_AndBlankLinesAndABomAndCrlfAreAccepted()
    {
        Assert.Equal(ErrorCode.EvalNoCases, Assert.Single(Read("\n  \n").Diagnostics).Code);
        var (cases, diagnostics) = Read("\uFEFF" + """{"id":"a","prompt":"Hi","ideal":"x"}""" + "\r\n\r\n" + """{"id":"b","prompt":"Hi","ideal":"y"}""" + "\r\n");
        Assert.Empty(diagnostics);
        Assert.Equal([1, 3], cases.Select(c => c.Line));
    }
}

internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ertas-eval-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public string Write(string name, string text)
    {
        var file = Combine(name);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(file)!);
        File.WriteAllText(file, text);
        return file;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
