using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Ertas.Eval.Tests;

public class AssertionsTests
{
    /// <summary>An assert whose value is given as JSON text (null: no value).</summary>
    private static EvalAssert A(string type, string? valueJson, double weight = 1.0, double? threshold = null, bool ignoreCase = false) =>
        new(type, valueJson is null ? null : JsonNode.Parse(valueJson), weight, threshold, ignoreCase);

    private static AssertResult Run(EvalAssert assert, string output)
    {
        Assert.Null(Assertions.Validate(assert));
        return Assertions.Evaluate(assert, output);
    }

    private static void AssertPass(AssertResult result)
    {
        Assert.True(result.Pass, result.Detail);
        Assert.Equal(1.0, result.Score);
        Assert.Null(result.Detail);
    }

    private static void AssertFail(AssertResult result, double score = 0.0)
    {
        Assert.False(result.Pass);
        Assert.Equal(score, result.Score, 6);
        Assert.False(string.IsNullOrWhiteSpace(result.Detail));
    }

    // ---- exact_match -----------------------------------------------------------------------------------------------

    [Fact]
    public void ExactMatch_PassesWhenTrimmedOutputEqualsTrimmedValue()
    {
        var result = Run(A("exact_match", "\" Paris \""), "  Paris\n");
        AssertPass(result);
        Assert.Equal("exact_match", result.Type);
        Assert.Null(result.Metric);
    }

    [Fact]
    public void ExactMatch_FailsOnDifferentCaseUnlessIgnoreCase()
    {
        var failed = Run(A("exact_match", "\"Paris\""), "paris");
        AssertFail(failed);
        Assert.Contains("\"Paris\"", failed.Detail);
        Assert.Contains("\"paris\"", failed.Detail);

        AssertPass(Run(A("exact_match", "\"Paris\"", ignoreCase: true), "PARIS"));
    }

    [Fact]
    public void ExactMatch_FailsWhenOutputHasMoreThanTheValue()
    {
        AssertFail(Run(A("exact_match", "\"Paris\""), "Paris, France"));
    }

    // ---- starts_with -----------------------------------------------------------------------------------------------

    [Fact]
    public void StartsWith_PassesAfterLeadingWhitespace()
    {
        AssertPass(Run(A("starts_with", "\"Yes\""), "\n  Yes, it is."));
    }

    [Fact]
    public void StartsWith_FailsWhenPrefixIsElsewhereOrDifferentCase()
    {
        var result = Run(A("starts_with", "\"Yes\""), "Well, yes.");
        AssertFail(result);
        Assert.Contains("start with \"Yes\"", result.Detail);
        AssertFail(Run(A("starts_with", "\"Yes\""), "yes"));
        AssertPass(Run(A("starts_with", "\"Yes\"", ignoreCase: true), "yes"));
    }

    // ---- contains / icontains / not_contains -----------------------------------------------------------------------

    [Fact]
    public void Contains_PassesOnOrdinalSubstring()
    {
        AssertPass(Run(A("contains", "\"Paris\""), "The capital is Paris."));
    }

    [Fact]
    public void Contains_FailsOnDifferentCaseWithReadableDetail()
    {
        var result = Run(A("contains", "\"Paris\""), "the capital is paris");
        AssertFail(result);
        Assert.Equal("expected to contain \"Paris\"", result.Detail);
    }

    [Fact]
    public void Contains_WithIgnoreCaseBehavesLikeIcontains()
    {
        AssertPass(Run(A("contains", "\"Paris\"", ignoreCase: true), "the capital is PARIS"));
    }

    [Fact]
    public void Contains_ArrayNeedsEveryStringAndNamesTheMissingOnes()
    {
        AssertPass(Run(A("contains", "[\"Paris\", \"France\"]"), "Paris is in France."));
        var result = Run(A("contains", "[\"Paris\", \"France\", \"Seine\"]"), "Paris is in the north.");
        AssertFail(result);
        Assert.Contains("\"France\"", result.Detail);
        Assert.Contains("\"Seine\"", result.Detail);
        Assert.DoesNotContain("\"Paris\"", result.Detail);
    }

    [Fact]
    public void Icontains_IgnoresCaseAndFailsWhenAbsent()
    {
        AssertPass(Run(A("icontains", "\"paris\""), "PARIS it is"));
        AssertPass(Run(A("icontains", "[\"PARIS\", \"france\"]"), "Paris, France"));
        AssertFail(Run(A("icontains", "\"paris\""), "London"));
        AssertFail(Run(A("icontains", "[\"paris\", \"rome\"]"), "Paris"));
    }

    [Fact]
    public void NotContains_PassesWhenAbsentAndFailsWhenPresent()
    {
        AssertPass(Run(A("not_contains", "\"London\""), "Paris"));
        AssertPass(Run(A("not_contains", "\"London\""), "london (ordinal: different case is absent)"));
        var result = Run(A("not_contains", "\"London\""), "Not London.");
        AssertFail(result);
        Assert.Equal("expected not to contain \"London\"", result.Detail);
    }

    [Fact]
    public void NotContains_ArrayFailsWhenAnyStringOccurs()
    {
        AssertPass(Run(A("not_contains", "[\"London\", \"Rome\"]"), "Paris"));
        var result = Run(A("not_contains", "[\"London\", \"Rome\"]"), "Rome, I think");
        AssertFail(result);
        Assert.Contains("\"Rome\"", result.Detail);
        Assert.DoesNotContain("London", result.Detail);
    }

    // ---- regex -----------------------------------------------------------------------------------------------------

    [Fact]
    public void Regex_PassesWhenPatternMatchesAnywhere()
    {
        AssertPass(Run(A("regex", "\"\\\\b\\\\d{4}\\\\b\""), "It was built in 1889, I believe."));
    }

    [Fact]
    public void Regex_FailsWhenNoMatchAndIgnoreCaseWidensIt()
    {
        var result = Run(A("regex", "\"^answer: [a-d]$\""), "Answer: B");
        AssertFail(result);
        Assert.Contains("/^answer: [a-d]$/", result.Detail);
        AssertPass(Run(A("regex", "\"^answer: [a-d]$\"", ignoreCase: true), "Answer: B"));
    }

    [Fact]
    public void Regex_CatastrophicBacktrackingFailsWithTimeoutDetailAfterAboutOneSecond()
    {
        var assert = A("regex", "\"^(a+)+$\"");
        var output = new string('a', 40) + "!";
        var clock = Stopwatch.StartNew();
        var result = Run(assert, output);
        clock.Stop();

        AssertFail(result);
        Assert.Equal("regex timed out after 1 s", result.Detail);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.9, 10);
    }

    // ---- is_json ---------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("{\"a\": 1}")]
    [InlineData("  [1, 2, 3]\n")]
    [InlineData("42")]
    [InlineData("\"text\"")]
    [InlineData("```json\n{\"a\": [true, null]}\n```")]
    [InlineData("```\n{\"a\": 1}\n```")]
    public void IsJson_PassesOnStrictJsonBareOrInOneFence(string output)
    {
        AssertPass(Run(A("is_json", null), output));
    }

    [Theory]
    [InlineData("{\"a\": 1,}")]                      // trailing comma
    [InlineData("{\"a\": 1 /* note */}")]            // comment
    [InlineData("{'a': 1}")]                         // single quotes
    [InlineData("{\"a\": 1, \"a\": 2}")]             // duplicate property
    [InlineData("Here you go: {\"a\": 1}")]          // prose around it
    [InlineData("```json\n{\"a\": 1}\n```\n```json\n{}\n```")] // two fences
    [InlineData("")]
    public void IsJson_FailsOnAnythingButStrictJson(string output)
    {
        var result = Run(A("is_json", null), output);
        AssertFail(result);
        Assert.StartsWith("not valid JSON: ", result.Detail);
    }

    // ---- json_match ------------------------------------------------------------------------------------------------

    [Fact]
    public void JsonMatch_IgnoresKeyOrderAndComparesNumbersByValue()
    {
        var assert = A("json_match", "{\"name\": \"Ada\", \"age\": 36, \"tags\": [1, 2.5]}");
        AssertPass(Run(assert, "{\"tags\": [1.0, 25e-1], \"age\": 36.000, \"name\": \"Ada\"}"));
    }

    [Theory]
    [InlineData("1", "1.0")]
    [InlineData("1", "1e0")]
    [InlineData("100", "1E2")]
    [InlineData("0.1", "1e-1")]
    [InlineData("0", "-0.0")]
    [InlineData("123456789012345678901234567890", "1.23456789012345678901234567890e29")]
    public void JsonMatch_EqualDecimalValuesMatch(string value, string output)
    {
        AssertPass(Run(A("json_match", value), output));
    }

    [Theory]
    [InlineData("1", "1.0000000000000000000000000001")] // equal as doubles, not as decimals
    [InlineData("1", "\"1\"")]
    [InlineData("1", "-1")]
    [InlineData("true", "false")]
    public void JsonMatch_DifferentValuesFail(string value, string output)
    {
        AssertFail(Run(A("json_match", value), output));
    }

    [Fact]
    public void JsonMatch_ArraysCompareInOrder()
    {
        var result = Run(A("json_match", "[1, 2, 3]"), "[1, 3, 2]");
        AssertFail(result);
        Assert.Equal("JSON differs at $[1]: expected 2, got 3", result.Detail);
    }

    [Fact]
    public void JsonMatch_MissingOrExtraKeysFailWithThePath()
    {
        var missing = Run(A("json_match", "{\"a\": {\"b\": 1, \"c\": 2}}"), "{\"a\": {\"b\": 1}}");
        AssertFail(missing);
        Assert.Contains("$.a.c", missing.Detail);

        var extra = Run(A("json_match", "{\"a\": 1}"), "{\"a\": 1, \"b\": 2}");
        AssertFail(extra);
        Assert.Contains("$.b", extra.Detail);
    }

    [Fact]
    public void JsonMatch_StringsCompareOrdinally()
    {
        AssertFail(Run(A("json_match", "{\"city\": \"Paris\"}"), "{\"city\": \"paris\"}"));
        AssertPass(Run(A("json_match", "{\"city\": \"Paris\"}"), "{\"city\": \"\\u0050aris\"}"));
    }

    [Fact]
    public void JsonMatch_AcceptsFencedOutputAndFailsOnInvalidJson()
    {
        AssertPass(Run(A("json_match", "{\"ok\": true}"), "```json\n{\"ok\": true}\n```"));
        var result = Run(A("json_match", "{\"ok\": true}"), "ok: true");
        AssertFail(result);
        Assert.StartsWith("not valid JSON", result.Detail);
    }

    // ---- levenshtein -----------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("kitten", "sitting", 3)]
    [InlineData("", "abc", 3)]
    [InlineData("abc", "", 3)]
    [InlineData("flaw", "lawn", 2)]
    [InlineData("same", "same", 0)]
    [InlineData("👍🏽", "👍", 1)]        // emoji with a skin tone is one character
    [InlineData("e\u0301", "é", 1)]      // no normalization: combining and precomposed differ, by one character
    public void Levenshtein_CountsEditsInTextElements(string a, string b, int expected)
    {
        Assert.Equal(expected, TextMetrics.Levenshtein(a, b));
        Assert.Equal(expected, TextMetrics.Levenshtein(b, a));
    }

    [Fact]
    public void Levenshtein_DefaultThresholdIsFiveAndMetricIsTheDistance()
    {
        var pass = Run(A("levenshtein", "\"sitting\""), "  kitten \n");
        AssertPass(pass);
        Assert.Equal(3.0, pass.Metric);

        var fail = Run(A("levenshtein", "\"abcdef\""), "uvwxyz");
        AssertFail(fail);
        Assert.Equal(6.0, fail.Metric);
    }

    [Fact]
    public void Levenshtein_FailingGivesPartialScoreOneMinusDistanceOverValueLength()
    {
        var result = Run(A("levenshtein", "\"sitting\"", threshold: 2), "kitten");
        AssertFail(result, score: 1.0 - 3.0 / 7.0);
        Assert.Equal(3.0, result.Metric);
        Assert.Equal("edit distance 3 exceeds 2", result.Detail);
    }

    [Fact]
    public void Levenshtein_PartialScoreNeverGoesBelowZero()
    {
        var result = Run(A("levenshtein", "\"ab\"", threshold: 0), "xxxxxxxx");
        AssertFail(result, score: 0.0);
        Assert.Equal(8.0, result.Metric);
    }

    [Fact]
    public void Levenshtein_ThresholdZeroNeedsAnExactMatch()
    {
        AssertPass(Run(A("levenshtein", "\"Paris\"", threshold: 0), "Paris"));
        AssertFail(Run(A("levenshtein", "\"Paris\"", threshold: 0), "Pariss"), score: 0.8);
    }

    // ---- token_f1 --------------------------------------------------------------------------------------------------

    [Fact]
    public void Normalize_LowercasesDropsPunctuationArticlesAndExtraWhitespace()
    {
        Assert.Equal("cat sat on mat", TextMetrics.Normalize("  The cat, sat on\tthe MAT! "));
        Assert.Equal("theory another", TextMetrics.Normalize("A theory; an another."));
        Assert.Equal("", TextMetrics.Normalize("The a an ..."));
    }

    [Fact]
    public void TokenF1_ArticlesAndPunctuationDoNotCount()
    {
        // Both normalize to "cat sat on mat".
        Assert.Equal(1.0, TextMetrics.TokenF1("The cat sat on the mat.", "a cat sat on a mat"));
    }

    [Fact]
    public void TokenF1_WorkedExample()
    {
        // prediction → [cat, sat, on, mat], reference → [dog, sat, on, red, mat]; shared: sat, on, mat.
        // P = 3/4, R = 3/5, F1 = 2·(3/4)(3/5) / (3/4 + 3/5) = 0.9 / 1.35 = 2/3.
        Assert.Equal(2.0 / 3.0, TextMetrics.TokenF1("The cat sat on the mat.", "A dog sat on the red mat"), 12);
    }

    [Fact]
    public void TokenF1_CountsSharedTokensAsAMultiset()
    {
        // [cat, cat, cat] vs [cat, dog]: one shared. P = 1/3, R = 1/2, F1 = (1/3) / (5/6) = 0.4.
        Assert.Equal(0.4, TextMetrics.TokenF1("cat cat cat", "cat dog"), 12);
    }

    [Fact]
    public void TokenF1_EmptySides()
    {
        Assert.Equal(1.0, TextMetrics.TokenF1("", "the"));
        Assert.Equal(0.0, TextMetrics.TokenF1("", "Paris"));
        Assert.Equal(0.0, TextMetrics.TokenF1("Paris", "!!"));
        Assert.Equal(0.0, TextMetrics.TokenF1("London", "Paris"));
    }

    [Fact]
    public void TokenF1_AssertPassesAtDefaultThresholdAndReportsF1()
    {
        var result = Run(A("token_f1", "\"a cat sat on a mat\""), "The cat sat on the mat.");
        AssertPass(result);
        Assert.Equal(1.0, result.Metric);

        // F1 = 8/9 ≈ 0.889 ([cat, sat, on, mat] vs [cat, sat, on, mat, today]: P = 1, R = 4/5) clears the 0.8 default.
        AssertPass(Run(A("token_f1", "\"The cat sat on the mat today\""), "The cat sat on the mat."));
    }

    [Fact]
    public void TokenF1_FailingScoresItsF1()
    {
        var result = Run(A("token_f1", "\"A dog sat on the red mat\""), "The cat sat on the mat.");
        AssertFail(result, score: 2.0 / 3.0);
        Assert.Equal(2.0 / 3.0, result.Metric!.Value, 12);
        Assert.Equal("token F1 0.667 is below 0.8", result.Detail);

        AssertPass(Run(A("token_f1", "\"A dog sat on the red mat\"", threshold: 0.6), "The cat sat on the mat."));
    }

    // ---- Validate --------------------------------------------------------------------------------------------------

    [Fact]
    public void Validate_AcceptsWellFormedAssertsOfEveryType()
    {
        Assert.Null(Assertions.Validate(A("exact_match", "\"\"")));
        Assert.Null(Assertions.Validate(A("starts_with", "\"x\"", ignoreCase: true)));
        Assert.Null(Assertions.Validate(A("contains", "[\"x\", \"y\"]", weight: 2.5)));
        Assert.Null(Assertions.Validate(A("icontains", "\"x\"")));
        Assert.Null(Assertions.Validate(A("not_contains", "\"x\"")));
        Assert.Null(Assertions.Validate(A("regex", "\"^x+$\"", ignoreCase: true)));
        Assert.Null(Assertions.Validate(A("is_json", null)));
        Assert.Null(Assertions.Validate(A("json_match", "[]")));
        Assert.Null(Assertions.Validate(A("levenshtein", "\"x\"", threshold: 0)));
        Assert.Null(Assertions.Validate(A("token_f1", "\"x\"", threshold: 1)));
    }

    [Fact]
    public void Validate_UnknownTypeListsTheValidTypes()
    {
        var message = Assertions.Validate(A("llm_rubric", "\"x\""));
        Assert.NotNull(message);
        Assert.Contains("\"llm_rubric\"", message);
        foreach (var type in Assertions.Types)
            Assert.Contains(type, message);
        Assert.NotNull(Assertions.Validate(A("Contains", "\"x\""))); // types are case-sensitive
    }

    [Fact]
    public void Validate_InvalidRegexCarriesTheParserMessage()
    {
        var parserMessage = Assert.ThrowsAny<ArgumentException>(() => new Regex("(abc")).Message;
        var message = Assertions.Validate(A("regex", "\"(abc\""));
        Assert.NotNull(message);
        Assert.Contains("value", message);
        Assert.Contains(parserMessage, message);
    }

    [Theory]
    [InlineData("exact_match")]
    [InlineData("contains")]
    [InlineData("regex")]
    [InlineData("json_match")]
    [InlineData("levenshtein")]
    [InlineData("token_f1")]
    public void Validate_MissingValueIsAnError(string type)
    {
        var message = Assertions.Validate(A(type, null));
        Assert.NotNull(message);
        Assert.Contains("\"value\"", message);
    }

    [Theory]
    [InlineData("exact_match", "42", "must be a string, got a number")]
    [InlineData("starts_with", "[\"x\"]", "must be a string, got an array")]
    [InlineData("contains", "{\"x\": 1}", "must be a string or an array of strings, got an object")]
    [InlineData("icontains", "[\"x\", 1]", "\"value\"[1]")]
    [InlineData("not_contains", "[]", "empty")]
    [InlineData("contains", "\"\"", "empty")]
    [InlineData("regex", "true", "pattern string, got a boolean")]
    [InlineData("levenshtein", "3", "must be a string")]
    [InlineData("token_f1", "[\"x\"]", "must be a string")]
    [InlineData("is_json", "{}", "takes no \"value\"")]
    public void Validate_ValueOfTheWrongKindSaysWhatIsExpected(string type, string valueJson, string expected)
    {
        var message = Assertions.Validate(A(type, valueJson));
        Assert.NotNull(message);
        Assert.Contains(expected, message);
        Assert.Contains(type, message);
    }

    [Theory]
    [InlineData("levenshtein", -1.0)]
    [InlineData("levenshtein", 2.5)]
    [InlineData("levenshtein", double.NaN)]
    [InlineData("levenshtein", double.PositiveInfinity)]
    [InlineData("token_f1", -0.1)]
    [InlineData("token_f1", 1.5)]
    [InlineData("token_f1", double.NaN)]
    public void Validate_ThresholdOutOfRangeForTheTypeIsAnError(string type, double threshold)
    {
        var message = Assertions.Validate(A(type, "\"x\"", threshold: threshold));
        Assert.NotNull(message);
        Assert.Contains("\"threshold\"", message);
    }

    [Theory]
    [InlineData("exact_match")]
    [InlineData("contains")]
    [InlineData("regex")]
    public void Validate_ThresholdOnATypeWithoutOneIsAnError(string type)
    {
        var message = Assertions.Validate(A(type, "\"x\"", threshold: 0.5));
        Assert.NotNull(message);
        Assert.Contains("takes no \"threshold\"", message);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    public void Validate_WeightNotAboveZeroIsAnError(double weight)
    {
        var message = Assertions.Validate(A("contains", "\"x\"", weight: weight));
        Assert.NotNull(message);
        Assert.Contains("\"weight\"", message);
        Assert.Contains("> 0", message);
    }

    [Theory]
    [InlineData("icontains", "\"x\"")]
    [InlineData("not_contains", "\"x\"")]
    [InlineData("json_match", "{}")]
    [InlineData("levenshtein", "\"x\"")]
    [InlineData("token_f1", "\"x\"")]
    public void Validate_IgnoreCaseOnATypeThatDoesNotTakeItIsAnError(string type, string valueJson)
    {
        var message = Assertions.Validate(A(type, valueJson, ignoreCase: true));
        Assert.NotNull(message);
        Assert.Contains("\"ignore_case\"", message);
        Assert.Contains(type, message);
    }

    [Fact]
    public void Validate_IgnoreCaseOnIsJsonIsAnError()
    {
        Assert.Contains("\"ignore_case\"", Assertions.Validate(A("is_json", null, ignoreCase: true)));
    }

    // ---- tool_call -------------------------------------------------------------------------------------------------

    /// <summary>A tool_call assert as the suite reader builds it from "name" and (optionally) "arguments".</summary>
    private static EvalAssert Call(string name, string? argumentsJson = null) =>
        new(Assertions.ToolCall, Assertions.ToolCallValue(JsonValue.Create(name), argumentsJson is null ? null : JsonNode.Parse(argumentsJson), argumentsJson is not null));

    private const string ParisCall = """[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}]""";

    [Fact]
    public void ToolCall_PassesOnTheV3CallWithThatNameAndEqualArguments_KeyOrderAndNumberSpellingIgnored()
    {
        AssertPass(Run(Call("get_weather", """{"days": 1.0, "city": "Paris"}"""), ParisCall));
        AssertPass(Run(Call("get_weather", """{"city": "Paris", "days": 1}"""), "  " + ParisCall + "\n"));
    }

    [Fact]
    public void ToolCall_WithoutArguments_ChecksOnlyTheName()
    {
        AssertPass(Run(Call("get_weather"), ParisCall));
        AssertPass(Run(Call("get_weather"), """[TOOL_CALLS] [{"name": "get_weather", "arguments": {}, "id": "a1b2c3d4e"}]"""));
    }

    [Fact]
    public void ToolCall_PassesWhenAnyOfParallelCallsMatches()
    {
        const string output = """[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Lyon"}}, {"name": "get_weather", "arguments": {"city": "Paris"}}]""";
        AssertPass(Run(Call("get_weather", """{"city": "Paris"}"""), output));
        AssertPass(Run(Call("get_weather", """{"city": "Lyon"}"""), output));
    }

    [Fact]
    public void ToolCall_ReadsArgumentsSpelledAsAStringHoldingJson()
    {
        AssertPass(Run(Call("get_weather", """{"city": "Paris"}"""), """[TOOL_CALLS] [{"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}]"""));
    }

    [Fact]
    public void ToolCall_FailsOnAPlainAnswer_QuotingIt()
    {
        var result = Run(Call("get_weather"), "It is sunny in Paris.");
        AssertFail(result);
        Assert.Contains("[TOOL_CALLS]", result.Detail);
        Assert.Contains("\"It is sunny in Paris.\"", result.Detail);
    }

    [Fact]
    public void ToolCall_FailsWhenTheCallIsNotAJsonList_SayingSo()
    {
        var broken = Run(Call("get_weather"), """[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Par""");
        AssertFail(broken);
        Assert.Contains("not followed by valid JSON", broken.Detail);

        var notAList = Run(Call("get_weather"), """[TOOL_CALLS] {"name": "get_weather"}""");
        AssertFail(notAList);
        Assert.Contains("not a JSON list of calls", notAList.Detail);
    }

    [Fact]
    public void ToolCall_FailsOnAnotherFunction_NamingTheCallsMade()
    {
        var result = Run(Call("get_weather"), """[TOOL_CALLS] [{"name": "get_time", "arguments": {}}, {"name": "search", "arguments": {}}]""");
        AssertFail(result);
        Assert.Contains("no call to \"get_weather\"", result.Detail);
        Assert.Contains("\"get_time\", \"search\"", result.Detail);
        Assert.Contains("nothing", Run(Call("get_weather"), "[TOOL_CALLS] []").Detail);
    }

    [Fact]
    public void ToolCall_FailsOnOtherArguments_AtTheFirstDifference()
    {
        var wrongCity = Run(Call("get_weather", """{"city": "Paris", "days": 1}"""), ParisCall.Replace("Paris", "Lyon"));
        AssertFail(wrongCity);
        Assert.Contains("$.arguments.city: expected \"Paris\", got \"Lyon\"", wrongCity.Detail);

        var extra = Run(Call("get_weather", """{"city": "Paris"}"""), ParisCall);
        AssertFail(extra);
        Assert.Contains("$.arguments.days: not expected", extra.Detail);

        var none = Run(Call("get_weather", """{"city": "Paris"}"""), """[TOOL_CALLS] [{"name": "get_weather"}]""");
        AssertFail(none);
        Assert.Contains("no \"arguments\"", none.Detail);
    }

    [Fact]
    public void Validate_ToolCallNeedsAFunctionNameAndObjectArguments()
    {
        Assert.Contains("\"name\"", Assertions.Validate(new EvalAssert(Assertions.ToolCall, new JsonObject())));
        Assert.Contains("function name", Assertions.Validate(Call("get weather")));
        Assert.Contains("\"arguments\"", Assertions.Validate(Call("get_weather", "[\"Paris\"]")));
        Assert.Contains("\"arguments\"", Assertions.Validate(Call("get_weather", "null")));
        Assert.Contains("\"threshold\"", Assertions.Validate(new EvalAssert(Assertions.ToolCall, Call("f").Value, Threshold: 0.5)));
        Assert.Null(Assertions.Validate(Call("get_weather", "{}")));
    }
}
