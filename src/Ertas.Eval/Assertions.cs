using System.Globalization;
using System.Numerics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Ertas.Eval;

/// <summary>
/// The assert types, all local (no grader model):
/// <list type="bullet">
/// <item><c>exact_match</c>: the trimmed output equals the string value (trimmed); <c>ignore_case</c> allowed.</item>
/// <item><c>starts_with</c>: the output, leading whitespace trimmed, starts with the string value; <c>ignore_case</c> allowed.</item>
/// <item><c>contains</c> / <c>icontains</c> / <c>not_contains</c>: substring tests (ordinal / ignoring case / absent);
/// the value is a string or an array of strings (all must occur / all must occur / none may occur).
/// <c>contains</c> takes <c>ignore_case</c>, which makes it <c>icontains</c>.</item>
/// <item><c>regex</c>: the .NET pattern matches anywhere in the output (culture-invariant, 1 s match timeout, after
/// which the assert fails); <c>ignore_case</c> allowed.</item>
/// <item><c>is_json</c>: the trimmed output, or the body of one fenced <c>```json</c> (or unlabelled) block that is the whole output,
/// is strict JSON (no comments, trailing commas or duplicate property names). Takes no value.</item>
/// <item><c>json_match</c>: the output is JSON as for <c>is_json</c> and deeply equal to the value: objects as
/// unordered key sets, arrays in order, numbers by decimal value (1 equals 1.0), strings ordinally.</item>
/// <item><c>levenshtein</c>: the edit distance between the trimmed output and the string value, in text elements, is
/// at most the threshold (a whole number; default 5, as promptfoo).</item>
/// <item><c>token_f1</c>: the openai/evals token F1 (<see cref="TextMetrics.TokenF1"/>) of the output against the
/// string value is at least the threshold (in [0, 1]; default 0.8: 1.0 would fail any rewording).</item>
/// <item><c>tool_call</c>: <c>{"type":"tool_call","name":"get_weather","arguments":{"city":"Paris"}}</c>. The output is
/// a Mistral v3 tool call, <c>[TOOL_CALLS]</c> then a JSON list of <c>{"name", "arguments"}</c> objects, and ANY call
/// in the list has that name and, when <c>arguments</c> is given, arguments equal to it as json_match compares
/// (arguments spelled as a string holding JSON, OpenAI's way, are read as that JSON). Any, not the first: parallel
/// calls come in no fixed order, and a case that needs two calls gives two asserts.</item>
/// </list>
/// A passing assert scores 1. A failing one scores 0, except levenshtein (1 − distance / length of the value, at
/// least 0 and below 1) and token_f1 (its F1), which give partial credit.
/// </summary>
public static partial class Assertions
{
    public static IReadOnlyList<string> Types { get; } =
        ["exact_match", "starts_with", "contains", "icontains", "not_contains", "regex", "is_json", "json_match", "levenshtein", "token_f1", ToolCall];

    public const string ToolCall = "tool_call";

    /// <summary>The control piece a Mistral v3 model starts its function calls with.</summary>
    private const string ToolCallsPiece = "[TOOL_CALLS]";

    /// <summary>A tool_call assert's expectation as one value, <c>{"name":..,"arguments":..}</c> (arguments only when
    /// the suite gave them: then the model must pass exactly those), so it is stored and hashed like any other.</summary>
    public static JsonObject ToolCallValue(JsonNode? name, JsonNode? arguments, bool argumentsGiven)
    {
        var value = new JsonObject { ["name"] = name };
        if (argumentsGiven)
            value["arguments"] = arguments;
        return value;
    }

    /// <summary>The most edits a levenshtein assert allows when it gives no threshold (promptfoo's default).</summary>
    internal const int DefaultLevenshteinThreshold = 5;

    /// <summary>The least F1 a token_f1 assert needs when it gives no threshold.</summary>
    internal const double DefaultTokenF1Threshold = 0.8;

    internal static readonly TimeSpan RegexTimeout = TimeSpan.FromSeconds(1);

    private static IReadOnlyList<string> IgnoreCaseTypes { get; } = ["exact_match", "starts_with", "contains", "regex"];

    /// <summary>Longest stretch of an output or value quoted in a <see cref="AssertResult.Detail"/>.</summary>
    private const int QuoteLength = 80;

    /// <summary>Checks an assert's own fields before anything runs; the problem in words, or null when it is valid.</summary>
    public static string? Validate(EvalAssert assert)
    {
        ArgumentNullException.ThrowIfNull(assert);
        var type = assert.Type;
        if (type is null || !Types.Contains(type, StringComparer.Ordinal))
            return $"unknown assert type {Quote(type ?? "")}; expected one of {string.Join(", ", Types)}";

        return ValidateValue(type, assert.Value)
            ?? ValidateThreshold(type, assert.Threshold)
            ?? ValidateWeight(type, assert.Weight)
            ?? ValidateIgnoreCase(type, assert.IgnoreCase);
    }

    /// <summary>Scores <paramref name="output"/> (the generated answer text) against <paramref name="assert"/>.</summary>
    public static AssertResult Evaluate(EvalAssert assert, string output)
    {
        ArgumentNullException.ThrowIfNull(assert);
        ArgumentNullException.ThrowIfNull(output);
        return assert.Type switch
        {
            "exact_match" => ExactMatch(assert, output),
            "starts_with" => StartsWith(assert, output),
            "contains" => Contains(assert, output, assert.IgnoreCase),
            "icontains" => Contains(assert, output, ignoreCase: true),
            "not_contains" => NotContains(assert, output),
            "regex" => MatchesRegex(assert, output),
            "is_json" => IsJson(assert, output),
            "json_match" => JsonMatch(assert, output),
            "levenshtein" => LevenshteinWithin(assert, output),
            "token_f1" => TokenF1AtLeast(assert, output),
            ToolCall => CallsTool(assert, output),
            _ => throw new ArgumentException($"unknown assert type {Quote(assert.Type ?? "")}", nameof(assert)),
        };
    }

    // ---- Validation ----------------------------------------------------------------------------------------------

    private static string? ValidateValue(string type, JsonNode? value)
    {
        switch (type)
        {
            case "exact_match" or "levenshtein" or "token_f1":
                return IsString(value) ? null : $"\"value\" of a {type} assert must be a string, got {KindOf(value)}";

            case "starts_with":
                if (!IsString(value))
                    return $"\"value\" of a {type} assert must be a string, got {KindOf(value)}";
                return value!.GetValue<string>().Length == 0 ? $"\"value\" of a {type} assert must not be empty" : null;

            case "contains" or "icontains" or "not_contains":
                if (IsString(value))
                    return value!.GetValue<string>().Length == 0 ? $"\"value\" of a {type} assert must not be empty" : null;
                if (value is JsonArray array)
                {
                    if (array.Count == 0)
                        return $"\"value\" of a {type} assert must not be an empty array";
                    for (var i = 0; i < array.Count; i++)
                    {
                        if (!IsString(array[i]))
                            return $"\"value\"[{i}] of a {type} assert must be a string, got {KindOf(array[i])}";
                        if (array[i]!.GetValue<string>().Length == 0)
                            return $"\"value\"[{i}] of a {type} assert must not be empty";
                    }
                    return null;
                }
                return $"\"value\" of a {type} assert must be a string or an array of strings, got {KindOf(value)}";

            case "regex":
                if (!IsString(value))
                    return $"\"value\" of a regex assert must be a pattern string, got {KindOf(value)}";
                var pattern = value!.GetValue<string>();
                if (pattern.Length == 0)
                    return "\"value\" of a regex assert must not be an empty pattern";
                try
                {
                    _ = new Regex(pattern, RegexOptions.CultureInvariant, RegexTimeout);
                    return null;
                }
                catch (ArgumentException e)
                {
                    return $"\"value\" of a regex assert is not a valid .NET regular expression: {e.Message}";
                }

            case "is_json":
                return value is null ? null : $"an is_json assert takes no \"value\" (got {KindOf(value)}); use json_match to compare";

            case "json_match":
                return value is null ? "\"value\" of a json_match assert is required (the expected JSON; null is not allowed)" : null;

            case ToolCall:
                if (value is not JsonObject call || !IsString(call["name"]))
                    return "a tool_call assert needs \"name\", the function the model should call, as a string";
                if (!IsFunctionName(call["name"]!.GetValue<string>()))
                    return "\"name\" of a tool_call assert must be a function name: 1 to 64 letters, digits, underscores or dashes";
                return call.ContainsKey("arguments") && call["arguments"] is not JsonObject
                    ? $"\"arguments\" of a tool_call assert must be a JSON object (the arguments the call should pass), got {KindOf(call["arguments"])}; leave it out to check only the name"
                    : null;

            default:
                throw new ArgumentException($"unknown assert type {Quote(type)}", nameof(type));
        }
    }

    private static string? ValidateThreshold(string type, double? threshold)
    {
        switch (type)
        {
            case "levenshtein":
                if (threshold is { } most && !(double.IsFinite(most) && most >= 0 && Math.Floor(most) == most))
                    return $"\"threshold\" of a levenshtein assert is the most edits allowed and must be a whole number >= 0, got {Number(most)}";
                return null;
            case "token_f1":
                if (threshold is { } least && !(least >= 0 && least <= 1))
                    return $"\"threshold\" of a token_f1 assert is the least F1 and must be between 0 and 1, got {Number(least)}";
                return null;
            default:
                return threshold is { } given
                    ? $"a {type} assert takes no \"threshold\" (got {Number(given)}); only levenshtein and token_f1 do"
                    : null;
        }
    }

    private static string? ValidateWeight(string type, double weight) =>
        double.IsFinite(weight) && weight > 0 ? null : $"\"weight\" of a {type} assert must be a number > 0, got {Number(weight)}";

    private static string? ValidateIgnoreCase(string type, bool ignoreCase)
    {
        if (!ignoreCase || IgnoreCaseTypes.Contains(type, StringComparer.Ordinal))
            return null;
        var hint = type == "icontains" ? " (icontains already ignores case)" : "";
        return $"\"ignore_case\" is not allowed on a {type} assert{hint}; only on {string.Join(", ", IgnoreCaseTypes)}";
    }

    private static bool IsString(JsonNode? node) => node is JsonValue v && v.GetValueKind() == JsonValueKind.String;

    private static string KindOf(JsonNode? node) => node?.GetValueKind() switch
    {
        null or JsonValueKind.Null => "nothing",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Number => "a number",
        JsonValueKind.String => "a string",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        var other => other.ToString()!.ToLowerInvariant(),
    };

    private static string Number(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    // ---- The types -----------------------------------------------------------------------------------------------

    private static AssertResult ExactMatch(EvalAssert assert, string output)
    {
        var expected = StringValue(assert).Trim();
        var actual = output.Trim();
        var comparison = assert.IgnoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        return string.Equals(actual, expected, comparison)
            ? Passed(assert)
            : Failed(assert, $"expected exactly {Quote(expected)}{CaseNote(assert)}, got {Quote(actual)}");
    }

    private static AssertResult StartsWith(EvalAssert assert, string output)
    {
        var prefix = StringValue(assert);
        var actual = output.TrimStart();
        var comparison = assert.IgnoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        return actual.StartsWith(prefix, comparison)
            ? Passed(assert)
            : Failed(assert, $"expected to start with {Quote(prefix)}{CaseNote(assert)}, got {Quote(actual)}");
    }

    private static AssertResult Contains(EvalAssert assert, string output, bool ignoreCase)
    {
        var comparison = ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var missing = StringValues(assert).Where(s => !output.Contains(s, comparison)).ToList();
        return missing.Count == 0
            ? Passed(assert)
            : Failed(assert, $"expected to contain {string.Join(", ", missing.Select(Quote))}{(ignoreCase ? " (ignoring case)" : "")}");
    }

    private static AssertResult NotContains(EvalAssert assert, string output)
    {
        var found = StringValues(assert).Where(s => output.Contains(s, StringComparison.Ordinal)).ToList();
        return found.Count == 0
            ? Passed(assert)
            : Failed(assert, $"expected not to contain {string.Join(", ", found.Select(Quote))}");
    }

    private static AssertResult MatchesRegex(EvalAssert assert, string output)
    {
        var pattern = StringValue(assert);
        var options = RegexOptions.CultureInvariant | (assert.IgnoreCase ? RegexOptions.IgnoreCase : RegexOptions.None);
        try
        {
            return new Regex(pattern, options, RegexTimeout).IsMatch(output)
                ? Passed(assert)
                : Failed(assert, $"expected to match /{Truncate(pattern)}/{(assert.IgnoreCase ? "i" : "")}");
        }
        catch (RegexMatchTimeoutException)
        {
            return Failed(assert, "regex timed out after 1 s");
        }
    }

    private static AssertResult IsJson(EvalAssert assert, string output)
    {
        if (!TryParseJson(output, out var document, out var error))
            return Failed(assert, $"not valid JSON: {error}");
        document.Dispose();
        return Passed(assert);
    }

    private static AssertResult JsonMatch(EvalAssert assert, string output)
    {
        if (!TryParseJson(output, out var actualDocument, out var error))
            return Failed(assert, $"not valid JSON: {error}");
        using (actualDocument)
        using (var expectedDocument = JsonDocument.Parse(assert.Value!.ToJsonString()))
        {
            var difference = FirstDifference(expectedDocument.RootElement, actualDocument.RootElement, "$");
            return difference is null ? Passed(assert) : Failed(assert, $"JSON differs at {difference}");
        }
    }

    private static AssertResult CallsTool(EvalAssert assert, string output)
    {
        var name = assert.Value!["name"]!.GetValue<string>();
        var text = output.TrimStart();
        if (!text.StartsWith(ToolCallsPiece, StringComparison.Ordinal))
            return Failed(assert, $"expected a call to {Quote(name)}: {ToolCallsPiece} followed by a JSON list of calls, got {Quote(output.Trim())}");
        JsonDocument calls;
        try
        {
            calls = JsonDocument.Parse(text[ToolCallsPiece.Length..].Trim(), StrictJson);
        }
        catch (JsonException e)
        {
            return Failed(assert, $"{ToolCallsPiece} is not followed by valid JSON: {e.Message}");
        }
        using (calls)
        {
            if (calls.RootElement.ValueKind != JsonValueKind.Array)
                return Failed(assert, $"{ToolCallsPiece} is followed by {Truncate(calls.RootElement.GetRawText())}, not a JSON list of calls");
            var named = calls.RootElement.EnumerateArray()
                .Where(c => c.ValueKind == JsonValueKind.Object && c.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() == name)
                .ToList();
            if (named.Count == 0)
            {
                var made = calls.RootElement.EnumerateArray()
                    .Select(c => c.ValueKind == JsonValueKind.Object && c.TryGetProperty("name", out var n) ? n.GetRawText() : Truncate(c.GetRawText()))
                    .ToList();
                return Failed(assert, $"no call to {Quote(name)}; the output calls {(made.Count == 0 ? "nothing (an empty list)" : string.Join(", ", made))}");
            }
            if (assert.Value["arguments"] is not { } arguments)
                return Passed(assert);
            using var expected = JsonDocument.Parse(arguments.ToJsonString());
            string? difference = null;
            foreach (var call in named)
            {
                difference = ArgumentsDifference(expected.RootElement, call);
                if (difference is null)
                    return Passed(assert);
            }
            return Failed(assert, named.Count == 1
                ? $"{Quote(name)} is called with other arguments: {difference}"
                : $"none of the {named.Count} calls to {Quote(name)} has the expected arguments; the last differs: {difference}");
        }
    }

    /// <summary>Where a call's arguments differ from <paramref name="expected"/>, or null when they are equal.</summary>
    private static string? ArgumentsDifference(JsonElement expected, JsonElement call)
    {
        if (!call.TryGetProperty("arguments", out var actual))
            return "the call has no \"arguments\"";
        if (actual.ValueKind != JsonValueKind.String)
            return FirstDifference(expected, actual, "$.arguments");
        try
        {
            using var parsed = JsonDocument.Parse(actual.GetString()!, StrictJson);
            return FirstDifference(expected, parsed.RootElement, "$.arguments");
        }
        catch (JsonException)
        {
            return $"$.arguments: expected {Truncate(expected.GetRawText())}, got the string {Truncate(actual.GetRawText())}";
        }
    }

    private static AssertResult LevenshteinWithin(EvalAssert assert, string output)
    {
        var expected = StringValue(assert);
        var most = assert.Threshold ?? DefaultLevenshteinThreshold;
        var distance = TextMetrics.Levenshtein(output.Trim(), expected);
        if (distance <= most)
            return Passed(assert, distance);
        var score = Math.Min(Math.Max(0.0, 1.0 - (double)distance / Math.Max(TextMetrics.TextLength(expected), 1)), 0.9999);
        return Failed(assert, $"edit distance {distance} exceeds {Number(most)}", score, distance);
    }

    private static AssertResult TokenF1AtLeast(EvalAssert assert, string output)
    {
        var least = assert.Threshold ?? DefaultTokenF1Threshold;
        var f1 = TextMetrics.TokenF1(output, StringValue(assert));
        return f1 >= least
            ? Passed(assert, f1)
            : Failed(assert, $"token F1 {f1.ToString("0.###", CultureInfo.InvariantCulture)} is below {Number(least)}", f1, f1);
    }

    private static AssertResult Passed(EvalAssert assert, double? metric = null) => new(assert.Type, true, 1.0, metric, null);

    private static AssertResult Failed(EvalAssert assert, string detail, double score = 0.0, double? metric = null) =>
        new(assert.Type, false, score, metric, detail);

    private static string StringValue(EvalAssert assert) => assert.Value!.GetValue<string>();

    private static IEnumerable<string> StringValues(EvalAssert assert) =>
        assert.Value is JsonArray array ? array.Select(n => n!.GetValue<string>()) : [StringValue(assert)];

    private static string CaseNote(EvalAssert assert) => assert.IgnoreCase ? " (ignoring case)" : "";

    // ---- JSON ----------------------------------------------------------------------------------------------------

    private static readonly JsonDocumentOptions StrictJson = new()
    {
        AllowTrailingCommas = false,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowDuplicateProperties = false,
    };

    /// <summary>Parses the trimmed output, or the body of a single fenced <c>```json</c> block that is all of it.</summary>
    private static bool TryParseJson(string output, out JsonDocument document, out string error)
    {
        var text = output.Trim();
        var fence = FencedJson().Match(text);
        if (fence.Success)
            text = fence.Groups["body"].Value;
        try
        {
            document = JsonDocument.Parse(text, StrictJson);
            error = "";
            return true;
        }
        catch (JsonException e)
        {
            document = null!;
            error = e.Message;
            return false;
        }
    }

    /// <summary>The path of the first place <paramref name="actual"/> differs from <paramref name="expected"/>, with
    /// both sides, or null when they are equal.</summary>
    private static string? FirstDifference(JsonElement expected, JsonElement actual, string path)
    {
        string Differs() => $"{path}: expected {Truncate(expected.GetRawText())}, got {Truncate(actual.GetRawText())}";

        var expectedKind = Kind(expected.ValueKind);
        if (expectedKind != Kind(actual.ValueKind))
            return Differs();

        switch (expected.ValueKind)
        {
            case JsonValueKind.Object:
                var actualProperties = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
                foreach (var property in actual.EnumerateObject())
                    actualProperties[property.Name] = property.Value;
                var expectedNames = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in expected.EnumerateObject())
                {
                    expectedNames.Add(property.Name);
                    var childPath = $"{path}.{property.Name}";
                    if (!actualProperties.TryGetValue(property.Name, out var actualValue))
                        return $"{childPath}: missing (expected {Truncate(property.Value.GetRawText())})";
                    if (FirstDifference(property.Value, actualValue, childPath) is { } inner)
                        return inner;
                }
                foreach (var name in actualProperties.Keys)
                    if (!expectedNames.Contains(name))
                        return $"{path}.{name}: not expected (got {Truncate(actualProperties[name].GetRawText())})";
                return null;

            case JsonValueKind.Array:
                var expectedLength = expected.GetArrayLength();
                var actualLength = actual.GetArrayLength();
                for (var i = 0; i < Math.Min(expectedLength, actualLength); i++)
                    if (FirstDifference(expected[i], actual[i], $"{path}[{i}]") is { } inner)
                        return inner;
                return expectedLength == actualLength
                    ? null
                    : $"{path}: expected {expectedLength} elements, got {actualLength}";

            case JsonValueKind.String:
                return string.Equals(expected.GetString(), actual.GetString(), StringComparison.Ordinal) ? null : Differs();

            case JsonValueKind.Number:
                return DecimalValue(expected.GetRawText()) == DecimalValue(actual.GetRawText()) ? null : Differs();

            case JsonValueKind.True or JsonValueKind.False:
                return expected.ValueKind == actual.ValueKind ? null : Differs();

            default: // null
                return null;
        }

        static JsonValueKind Kind(JsonValueKind k) => k == JsonValueKind.False ? JsonValueKind.True : k;
    }

    /// <summary>
    /// A JSON number's exact decimal value in a canonical form (sign, significant digits without leading or trailing
    /// zeros, power of ten), so 1, 1.0, 10e-1 and 0.1E1 compare equal and -0 equals 0, however many digits they have.
    /// </summary>
    private static (bool Negative, string Digits, BigInteger Exponent) DecimalValue(string json)
    {
        var negative = json.StartsWith('-');
        var unsigned = negative ? json[1..] : json;
        var e = unsigned.IndexOfAny(['e', 'E']);
        var mantissa = e < 0 ? unsigned : unsigned[..e];
        var exponent = e < 0 ? BigInteger.Zero : BigInteger.Parse(unsigned[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);

        var dot = mantissa.IndexOf('.');
        var digits = dot < 0 ? mantissa : string.Concat(mantissa.AsSpan(0, dot), mantissa.AsSpan(dot + 1));
        if (dot >= 0)
            exponent -= mantissa.Length - dot - 1;

        digits = digits.TrimStart('0');
        if (digits.Length == 0)
            return (false, "0", BigInteger.Zero);
        var significant = digits.TrimEnd('0');
        exponent += digits.Length - significant.Length;
        return (negative, significant, exponent);
    }

    /// <summary>Mistral's rule for a function name (mistral-common refuses any other).</summary>
    internal static bool IsFunctionName(string name) => FunctionName().IsMatch(name);

    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial Regex FunctionName();

    [GeneratedRegex(@"\A```(?:json)?[ \t]*\r?\n(?<body>.*?)\r?\n?```\z", RegexOptions.Singleline | RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex FencedJson();

    // ---- Details -------------------------------------------------------------------------------------------------

    /// <summary>A string as a JSON literal (escaped, in double quotes), cut short when long.</summary>
    private static string Quote(string text) => JsonSerializer.Serialize(Truncate(text), QuoteOptions);

    private static readonly JsonSerializerOptions QuoteOptions = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static string Truncate(string text)
    {
        if (text.Length <= QuoteLength)
            return text;
        var cut = char.IsHighSurrogate(text[QuoteLength - 1]) ? QuoteLength - 1 : QuoteLength; // never split a pair
        return string.Concat(text.AsSpan(0, cut), "…");
    }
}
