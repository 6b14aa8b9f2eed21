using Ertas.Mistral.Templates;

namespace Ertas.Mistral.Tests.Tokenization;

/// <summary>
/// The JSON text mistral-common tokenizes is Python's json.dumps(json.loads(...), ensure_ascii=False); each expected
/// value below is what CPython 3 prints for that input.
/// </summary>
public class PythonJsonTests
{
    [Theory]
    [InlineData("{\"location\":\"Paris, France\",\"format\":\"celsius\"}", "{\"location\": \"Paris, France\", \"format\": \"celsius\"}")]
    [InlineData("  [1,2 ,\n3]  ", "[1, 2, 3]")]
    [InlineData("{}", "{}")]
    [InlineData("[]", "[]")]
    [InlineData("22", "22")]
    [InlineData("-0", "0")]
    [InlineData("123456789012345678901234567890", "123456789012345678901234567890")]
    [InlineData("1.0", "1.0")]
    [InlineData("1e5", "100000.0")]
    [InlineData("1E16", "1e+16")]
    [InlineData("1.5e300", "1.5e+300")]
    [InlineData("0.0001", "0.0001")]
    [InlineData("0.00001", "1e-05")]
    [InlineData("123.4560", "123.456")]
    [InlineData("-0.0", "-0.0")]
    [InlineData("1e400", "Infinity")]
    [InlineData("NaN", "NaN")]
    [InlineData("-Infinity", "-Infinity")]
    [InlineData("0.1", "0.1")]
    [InlineData("1234567890123456.7", "1234567890123456.8")]
    [InlineData("true", "true")]
    [InlineData("null", "null")]
    [InlineData("{\"a\": 1, \"b\": 2, \"a\": 3}", "{\"a\": 3, \"b\": 2}")]
    [InlineData("\"caf\\u00e9 \\ud83d\\ude00 \\/ \\u0001\"", "\"café 😀 / \\u0001\"")]
    [InlineData("\"tab\\there\\nline \\\"q\\\" back\\\\\"", "\"tab\\there\\nline \\\"q\\\" back\\\\\"")]
    public void TryCanonicalize_SpellsWhatPythonsJsonDumpsPrints(string input, string python)
    {
        Assert.True(PythonJson.TryCanonicalize(input, out var canonical));
        Assert.Equal(python, canonical);
    }

    [Theory]
    [InlineData("Email sent to manager@company.com")]
    [InlineData("")]
    [InlineData("{\"a\": 1,}")]
    [InlineData("[1] // comment")]
    [InlineData("01")]
    [InlineData("1.")]
    [InlineData(".5")]
    [InlineData("{'a': 1}")]
    [InlineData("\"raw\ttab\"")]
    [InlineData("[1] [2]")]
    [InlineData("\ufeff[1]")]
    public void TryCanonicalize_RejectsWhatPythonsJsonLoadsRejects(string input)
    {
        Assert.False(PythonJson.TryCanonicalize(input, out _));
    }

    [Fact]
    public void DumpParsedOrString_KeepsNonJsonAsAQuotedString()
    {
        Assert.Equal("\"Email sent to manager@company.com\"", PythonJson.DumpParsedOrString("Email sent to manager@company.com"));
        Assert.Equal("22", PythonJson.DumpParsedOrString("22"));
    }
}
