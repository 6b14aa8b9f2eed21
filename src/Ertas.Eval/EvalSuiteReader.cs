using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral.Templates;

namespace Ertas.Eval;

/// <summary>
/// Reads eval suites (JSON Lines, one case per line) and checks every case before anything is scored. Every problem
/// in every file is reported at once, at its line and column, as dataset validation does; only a suite set with no
/// errors yields cases.
/// </summary>
public sealed class EvalSuiteReader
{
    public static IReadOnlyList<string> Keys { get; } =
        ["id", "messages", "tools", "prompt", "ideal", "assert", "tags", "max_tokens", "choices", "answer", "threshold"];

    private static IReadOnlyList<string> AssertKeys { get; } = ["type", "value", "weight", "threshold", "ignore_case", "name", "arguments"];

    private readonly List<DatasetDiagnostic> _diagnostics;
    private readonly Dictionary<string, (string File, int Line)> _ids = new(StringComparer.Ordinal);
    private string _file = "";
    private int _line;
    private byte[] _current = [];

    private EvalSuiteReader(List<DatasetDiagnostic> diagnostics) => _diagnostics = diagnostics;

    /// <summary>
    /// Cases of <paramref name="files"/> in file order then line order; problems go to <paramref name="diagnostics"/>.
    /// Ids are unique across all the files. Files are named in diagnostics exactly as given.
    /// </summary>
    public static IReadOnlyList<EvalCase> Read(IReadOnlyList<string> files, List<DatasetDiagnostic> diagnostics, CancellationToken cancellationToken = default)
    {
        var reader = new EvalSuiteReader(diagnostics);
        var cases = new List<EvalCase>();
        foreach (var file in files)
        {
            cancellationToken.ThrowIfCancellationRequested();
            byte[] content;
            try
            {
                content = File.ReadAllBytes(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.EvalFileUnreadable, file, 0, 0,
                    $"cannot read the eval suite: {e.Message}"));
                continue;
            }
            cases.AddRange(reader.ReadFile(file, content));
        }
        return cases;
    }

    /// <summary>Cases of one suite's bytes (tests and in-memory callers).</summary>
    public static IReadOnlyList<EvalCase> Read(string file, ReadOnlySpan<byte> content, List<DatasetDiagnostic> diagnostics) =>
        new EvalSuiteReader(diagnostics).ReadFile(file, content);

    private List<EvalCase> ReadFile(string file, ReadOnlySpan<byte> content)
    {
        _file = file;
        var cases = new List<EvalCase>();
        var nonBlank = 0;
        var lines = new JsonLines(content);
        while (lines.MoveNext())
        {
            _line = lines.Number;
            if (lines.IsBlank)
                continue;
            nonBlank++;
            _current = lines.Current.ToArray();
            if (ReadCase(lines.Current) is { } evalCase)
                cases.Add(evalCase);
        }
        if (nonBlank == 0)
        {
            _line = 0;
            Error(ErrorCode.EvalNoCases, -1, "the suite holds no cases (it is empty or only blank lines)");
        }
        return cases;
    }

    private EvalCase? ReadCase(ReadOnlySpan<byte> line)
    {
        if (JsonLines.InvalidUtf8At(line) is var valid and >= 0)
        {
            Error(ErrorCode.EvalInvalidUtf8, valid, $"invalid UTF-8 at byte {valid + 1} of the line; save the suite as UTF-8");
            return null;
        }
        JsonLineNode shape;
        JsonNode? node;
        try
        {
            shape = JsonLineParser.Parse(line);
            // Duplicate keys are an error here, as in strict JSON readers: otherwise one of the two values wins silently.
            node = JsonNode.Parse(line, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            Error(ErrorCode.EvalInvalidJson, (int)(e.BytePositionInLine ?? 0), $"not valid JSON: {JsonLines.TrimReaderPosition(e.Message)}");
            return null;
        }
        if (shape is not JsonLineObject obj || node is not JsonObject json)
        {
            Error(ErrorCode.EvalInvalidJson, shape.Offset, $"each line must be one JSON object (a case), but this one is {shape.Kind}");
            return null;
        }

        var errorsBefore = ErrorCount();
        foreach (var (key, value) in obj.Properties)
            if (!Keys.Contains(key))
                Error(ErrorCode.EvalUnknownKey, value.Offset, $"unknown key \"{key}\"; a case takes {string.Join(", ", Keys)}");

        var id = RequiredString(obj, json, "id");
        if (id is not null)
        {
            if (id.Trim().Length == 0)
                Error(ErrorCode.EvalInvalidField, obj["id"]!.Offset, "\"id\" must not be blank");
            else if (_ids.TryGetValue(id, out var first))
                Error(ErrorCode.EvalDuplicateId, obj["id"]!.Offset,
                    $"duplicate id \"{id}\": first used at {first.File}({first.Line}); ids must be unique across the project's suites");
            else
                _ids[id] = (_file, _line);
        }

        var messages = ReadMessages(obj, json);
        var tools = ReadTools(obj);
        var prompt = OptionalString(obj, json, "prompt");
        if (obj["messages"] is not null && obj["prompt"] is not null)
            Error(ErrorCode.EvalInvalidField, obj["prompt"]!.Offset, "a case has \"messages\" (chat) or \"prompt\" (raw completion), not both");
        else if (obj["messages"] is null && obj["prompt"] is null)
            Error(ErrorCode.EvalMissingField, 0, "missing \"messages\" (a chat ending with a user turn) or \"prompt\" (raw completion text)");
        if (prompt is { Length: 0 })
            Error(ErrorCode.EvalInvalidField, obj["prompt"]!.Offset, "\"prompt\" must not be empty");

        var ideal = OptionalString(obj, json, "ideal");
        var tags = ReadTags(obj, json);
        var maxTokens = OptionalInt(obj, json, "max_tokens", min: 1, max: 1 << 20);
        var threshold = OptionalNumber(obj, json, "threshold", 0, 1) ?? 1.0;
        var choices = ReadChoices(obj, json);
        var answer = OptionalInt(obj, json, "answer", min: int.MinValue, max: int.MaxValue);
        var asserts = ReadAsserts(obj, json);

        if (choices is not null)
        {
            if (answer is null && obj["answer"] is null)
                Error(ErrorCode.EvalMissingField, obj["choices"]!.Offset, "a multiple-choice case needs \"answer\", the 0-based index of the right choice");
            else if (answer is { } a && (a < 0 || a >= choices.Count))
                Error(ErrorCode.EvalAnswerOutOfRange, obj["answer"]!.Offset,
                    $"\"answer\" is {a} but there are {choices.Count} choices; it is the 0-based index of the right one (0..{choices.Count - 1})");
            if (obj["assert"] is not null)
                Error(ErrorCode.EvalInvalidField, obj["assert"]!.Offset, "a multiple-choice case is scored by the likelihood of its choices; it takes no \"assert\"");
            if (obj["ideal"] is not null)
                Error(ErrorCode.EvalInvalidField, obj["ideal"]!.Offset, "a multiple-choice case takes no \"ideal\"; its right answer is \"answer\"");
            if (obj["max_tokens"] is not null)
                Error(ErrorCode.EvalInvalidField, obj["max_tokens"]!.Offset, "a multiple-choice case generates nothing; remove \"max_tokens\"");
        }
        else
        {
            if (obj["answer"] is not null)
                Error(ErrorCode.EvalInvalidField, obj["answer"]!.Offset, "\"answer\" needs \"choices\" (a multiple-choice case)");
            if (asserts.Count == 0 && ideal is null && obj["assert"] is null && id is not null)
                Error(ErrorCode.EvalMissingField, 0, "nothing to check: give \"assert\" (a list of checks), \"ideal\" (the exact answer) or \"choices\" + \"answer\"");
            if (obj["assert"] is JsonLineArray { Items.Count: 0 })
                Error(ErrorCode.EvalInvalidField, obj["assert"]!.Offset, "\"assert\" is empty; give at least one check or remove it");
        }

        if (ErrorCount() > errorsBefore)
            return null;
        // "ideal" alone is the shorthand for exact_match; with explicit asserts it serves target_nll only.
        if (choices is null && asserts.Count == 0 && ideal is not null)
            asserts = [new EvalAssert("exact_match", JsonValue.Create(ideal)) { Column = Column(obj["ideal"]!.Offset) }];
        return new EvalCase
        {
            Id = id!,
            File = _file,
            Line = _line,
            Messages = messages,
            Tools = tools,
            ToolsColumn = obj["tools"] is { } toolsShape ? Column(toolsShape.Offset) : 0,
            Prompt = prompt,
            Ideal = ideal,
            Asserts = asserts,
            Tags = tags,
            MaxTokens = maxTokens,
            Choices = choices,
            Answer = answer,
            Threshold = threshold,
            Hash = CaseHash(json),
        };
    }

    /// <summary>SHA-256 of the case's JSON with keys sorted and no whitespace: reformatting a line or moving it keeps
    /// its hash, any change of content gives a new one.</summary>
    public static string CaseHash(JsonNode json)
    {
        var text = Canonical(json)!.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
    }

    private static JsonNode? Canonical(JsonNode? node) => node switch
    {
        JsonObject o => new JsonObject(o.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => KeyValuePair.Create(p.Key, Canonical(p.Value)))),
        JsonArray a => new JsonArray(a.Select(Canonical).ToArray()),
        null => null,
        _ => node.DeepClone(),
    };

    private List<ChatMessage>? ReadMessages(JsonLineObject obj, JsonObject json)
    {
        if (obj["messages"] is not { } shape)
            return null;
        if (shape is not JsonLineArray array || json["messages"] is not JsonArray values)
        {
            Error(ErrorCode.EvalInvalidField, shape.Offset, $"\"messages\" must be an array of {{\"role\",\"content\"}} objects, not {shape.Kind}");
            return null;
        }
        if (array.Items.Count == 0)
        {
            Error(ErrorCode.EvalInvalidField, shape.Offset, "\"messages\" is empty; a chat case needs at least one user message");
            return null;
        }
        var messages = new List<ChatMessage>();
        var ok = true;
        var usesToolTurns = false;
        for (var i = 0; i < array.Items.Count; i++)
        {
            if (array.Items[i] is not JsonLineObject m || values[i] is not JsonObject)
            {
                Error(ErrorCode.EvalInvalidField, array.Items[i].Offset, $"message {i} must be an object with \"role\" and \"content\"");
                ok = false;
                continue;
            }
            var role = m["role"] is JsonLineString r ? r.Value : null;
            var callsTools = m["tool_calls"] is JsonLineArray { Items.Count: > 0 };
            // An assistant turn that calls tools has no text (OpenAI writes null or leaves it out).
            var content = m["content"] is JsonLineString c ? c.Value
                : callsTools && m["content"] is null or JsonLineScalar { TokenType: JsonTokenType.Null } ? "" : null;
            if (role is null || content is null)
            {
                Error(ErrorCode.EvalMissingField, m.Offset, $"message {i} needs a string \"role\" and a string \"content\"");
                ok = false;
                continue;
            }
            if (role is not (ChatMessage.System or ChatMessage.User or ChatMessage.Assistant or ChatMessage.Tool))
            {
                Error(ErrorCode.EvalInvalidField, m["role"]!.Offset, $"message {i} has role \"{role}\"; use system, user, assistant or tool");
                ok = false;
                continue;
            }
            if (m["tool_calls"] is { } calls and not JsonLineScalar { TokenType: JsonTokenType.Null } && (role != ChatMessage.Assistant || calls is not JsonLineArray))
            {
                Error(ErrorCode.EvalInvalidField, calls.Offset, role == ChatMessage.Assistant
                    ? $"message {i}: \"tool_calls\" must be an array of {{\"id\", \"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}"
                    : $"message {i} is a {role} message with \"tool_calls\"; only assistant messages call tools");
                ok = false;
                continue;
            }
            if (role == ChatMessage.Tool && m["tool_call_id"] is not JsonLineString)
            {
                Error(ErrorCode.EvalMissingField, (m["tool_call_id"] ?? m).Offset, $"message {i} is a tool result; it needs a string \"tool_call_id\" naming the call it answers");
                ok = false;
                continue;
            }
            usesToolTurns |= callsTools || role == ChatMessage.Tool;
            messages.Add(new ChatMessage(role, content));
        }
        if (!ok)
            return null;
        if (messages[^1].Role is not (ChatMessage.User or ChatMessage.Tool) || messages[^1].Role == ChatMessage.Tool && !usesToolTurns)
        {
            Error(ErrorCode.EvalInvalidConversation, array.Items[^1].Offset,
                "the last message must be a user turn (or a tool result): the model's answer to it is what the case scores");
            return null;
        }
        if (!usesToolTurns)
            return messages;
        // Tool calls and results are read by the parser training and `ertas tokenize --chat` use, so an eval prompt
        // is spelled exactly as the training conversations were.
        try
        {
            return ChatFile.ParseDocument(_current, _file, _line).Messages.ToList();
        }
        catch (ErtasException e)
        {
            // ChatFile's column counts bytes from 1; ours counts characters.
            Error(ErrorCode.EvalInvalidConversation, e.Line == _line ? e.Column - 1 : -1, e.Message);
            return null;
        }
    }

    /// <summary>
    /// OpenAI's <c>tools</c>: <c>[{"type":"function","function":{"name":..,"description":..,"parameters":{...}}}]</c>,
    /// checked field by field so each problem has its column, then read by the parser training uses.
    /// </summary>
    private List<ChatTool> ReadTools(JsonLineObject obj)
    {
        if (obj["tools"] is not { } shape)
            return [];
        const string Example = "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {...}}}";
        if (shape is not JsonLineArray array)
        {
            Error(ErrorCode.EvalInvalidField, shape.Offset, $"\"tools\" must be an array of {Example}, not {shape.Kind}");
            return [];
        }
        if (array.Items.Count == 0)
        {
            Error(ErrorCode.EvalInvalidField, shape.Offset, "\"tools\" is empty; offer at least one function or remove it");
            return [];
        }
        if (obj["prompt"] is not null)
            Error(ErrorCode.EvalInvalidField, shape.Offset, "\"tools\" are put in the prompt by the chat template; they need \"messages\", not \"prompt\"");
        var before = ErrorCount();
        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < array.Items.Count; i++)
        {
            if (array.Items[i] is not JsonLineObject tool || tool["function"] is not JsonLineObject function)
            {
                Error(ErrorCode.EvalInvalidField, array.Items[i].Offset, $"tool {i} must be {Example}");
                continue;
            }
            if (tool["type"] is { } type && type is not JsonLineString { Value: "function" })
                Error(ErrorCode.EvalInvalidField, type.Offset, $"tool {i}: \"type\" must be \"function\" (the only kind of tool)");
            if (function["name"] is not JsonLineString { Value: var name } || !Assertions.IsFunctionName(name))
                Error(function["name"] is null ? ErrorCode.EvalMissingField : ErrorCode.EvalInvalidField, (function["name"] ?? function).Offset,
                    $"tool {i}: \"function.name\" must be 1 to 64 letters, digits, underscores or dashes");
            else if (names.TryGetValue(name, out var first))
                Error(ErrorCode.EvalInvalidField, function["name"]!.Offset, $"tool {i} repeats the name \"{name}\" of tool {first}");
            else
                names[name] = i;
            if (function["description"] is { } description and not JsonLineString and not JsonLineScalar { TokenType: JsonTokenType.Null })
                Error(ErrorCode.EvalInvalidField, description.Offset, $"tool {i}: \"function.description\" must be a string, not {description.Kind}");
            if (function["parameters"] is { } parameters and not JsonLineObject and not JsonLineScalar { TokenType: JsonTokenType.Null })
                Error(ErrorCode.EvalInvalidField, parameters.Offset, $"tool {i}: \"function.parameters\" must be a JSON Schema object, not {parameters.Kind}");
        }
        if (ErrorCount() > before)
            return [];
        try
        {
            return ChatFile.ParseDocument(_current, _file, _line).Tools.ToList();
        }
        catch (ErtasException)
        {
            // The messages' own problems are reported where they are read.
            return [];
        }
    }

    private List<string> ReadTags(JsonLineObject obj, JsonObject json)
    {
        if (obj["tags"] is not { } shape)
            return [];
        if (shape is not JsonLineArray array || array.Items.Any(t => t is not JsonLineString))
        {
            Error(ErrorCode.EvalInvalidField, shape.Offset, "\"tags\" must be an array of strings, e.g. [\"critical\"]");
            return [];
        }
        _ = json;
        return array.Items.Cast<JsonLineString>().Select(t => t.Value).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
    }

    private List<string>? ReadChoices(JsonLineObject obj, JsonObject json)
    {
        if (obj["choices"] is not { } shape)
            return null;
        _ = json;
        if (shape is not JsonLineArray array || array.Items.Any(t => t is not JsonLineString))
        {
            Error(ErrorCode.EvalInvalidField, shape.Offset, "\"choices\" must be an array of strings");
            return null;
        }
        var choices = array.Items.Cast<JsonLineString>().Select(t => t.Value).ToList();
        if (choices.Count < 2)
        {
            Error(ErrorCode.EvalInvalidField, shape.Offset, "\"choices\" needs at least two choices");
            return null;
        }
        for (var i = 0; i < choices.Count; i++)
        {
            if (choices[i].Length == 0)
                Error(ErrorCode.EvalInvalidField, array.Items[i].Offset, $"choice {i} is empty");
            else if (choices.IndexOf(choices[i]) < i)
                Error(ErrorCode.EvalInvalidField, array.Items[i].Offset, $"choice {i} repeats choice {choices.IndexOf(choices[i])} (\"{choices[i]}\")");
        }
        return choices;
    }

    private List<EvalAssert> ReadAsserts(JsonLineObject obj, JsonObject json)
    {
        var asserts = new List<EvalAssert>();
        if (obj["assert"] is not { } shape)
            return asserts;
        if (shape is not JsonLineArray array || json["assert"] is not JsonArray values)
        {
            Error(ErrorCode.EvalInvalidField, shape.Offset, $"\"assert\" must be an array of {{\"type\",\"value\"}} objects, not {shape.Kind}");
            return asserts;
        }
        for (var i = 0; i < array.Items.Count; i++)
        {
            if (array.Items[i] is not JsonLineObject a || values[i] is not JsonObject av)
            {
                Error(ErrorCode.EvalInvalidField, array.Items[i].Offset, $"assert {i} must be an object such as {{\"type\":\"contains\",\"value\":\"Paris\"}}");
                continue;
            }
            var before = ErrorCount();
            foreach (var (key, value) in a.Properties)
                if (!AssertKeys.Contains(key))
                    Error(ErrorCode.EvalUnknownKey, value.Offset, $"assert {i} has an unknown key \"{key}\"; an assert takes {string.Join(", ", AssertKeys)}");
            if (a["type"] is not JsonLineString type)
            {
                Error(ErrorCode.EvalMissingField, a.Offset, $"assert {i} needs a string \"type\", one of {string.Join(", ", Assertions.Types)}");
                continue;
            }
            if (!Assertions.Types.Contains(type.Value))
            {
                Error(ErrorCode.EvalUnknownAssert, type.Offset, $"unknown assert type \"{type.Value}\"; valid types: {string.Join(", ", Assertions.Types)}");
                continue;
            }
            var weight = NumberOf(av, a, "weight", $"assert {i}") ?? 1.0;
            var threshold = NumberOf(av, a, "threshold", $"assert {i}");
            var ignoreCase = false;
            if (a["ignore_case"] is { } ic)
            {
                if (av["ignore_case"] is JsonValue icv && icv.TryGetValue<bool>(out var b)) ignoreCase = b;
                else Error(ErrorCode.EvalInvalidField, ic.Offset, $"assert {i}: \"ignore_case\" must be true or false");
            }
            if (ErrorCount() > before)
                continue;
            var isToolCall = type.Value == Assertions.ToolCall;
            if ((isToolCall ? a["value"] : a["name"] ?? a["arguments"]) is { } misplaced)
            {
                Error(ErrorCode.EvalInvalidAssert, misplaced.Offset, isToolCall
                    ? $"assert {i} (tool_call): give the function as \"name\" and its arguments as \"arguments\", not \"value\""
                    : $"assert {i} ({type.Value}): only a tool_call assert takes \"name\" and \"arguments\"");
                continue;
            }
            var expected = isToolCall ? Assertions.ToolCallValue(av["name"]?.DeepClone(), av["arguments"]?.DeepClone(), a["arguments"] is not null) : av["value"]?.DeepClone();
            var assert = new EvalAssert(type.Value, expected, weight, threshold, ignoreCase) { Column = Column(a.Offset) };
            if (Assertions.Validate(assert) is { } problem)
            {
                var at = isToolCall ? (problem.Contains("\"arguments\"", StringComparison.Ordinal) ? a["arguments"] : a["name"]) : a["value"];
                Error(ErrorCode.EvalInvalidAssert, (at ?? a).Offset, $"assert {i} ({type.Value}): {problem}");
                continue;
            }
            asserts.Add(assert);
        }
        return asserts;
    }

    private double? NumberOf(JsonObject values, JsonLineObject shape, string key, string owner)
    {
        if (shape[key] is not { } node)
            return null;
        if (values[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
            return v.GetValue<double>();
        Error(ErrorCode.EvalInvalidField, node.Offset, $"{owner}: \"{key}\" must be a number, not {node.Kind}");
        return null;
    }

    private string? RequiredString(JsonLineObject obj, JsonObject json, string key)
    {
        if (obj[key] is null)
        {
            Error(ErrorCode.EvalMissingField, 0, $"missing \"{key}\"");
            return null;
        }
        return OptionalString(obj, json, key);
    }

    private string? OptionalString(JsonLineObject obj, JsonObject json, string key)
    {
        _ = json;
        if (obj[key] is not { } node)
            return null;
        if (node is JsonLineString s)
            return s.Value;
        Error(ErrorCode.EvalInvalidField, node.Offset, $"\"{key}\" must be a string, not {node.Kind}");
        return null;
    }

    private int? OptionalInt(JsonLineObject obj, JsonObject json, string key, int min, int max)
    {
        if (obj[key] is not { } node)
            return null;
        if (json[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var i))
        {
            if (i >= min && i <= max)
                return i;
            Error(ErrorCode.EvalInvalidField, node.Offset, $"\"{key}\" must be at least {min}, got {i}");
            return null;
        }
        Error(ErrorCode.EvalInvalidField, node.Offset, $"\"{key}\" must be a whole number, not {(node is JsonLineScalar { TokenType: JsonTokenType.Number } ? "a fraction" : node.Kind)}");
        return null;
    }

    private double? OptionalNumber(JsonLineObject obj, JsonObject json, string key, double min, double max)
    {
        if (obj[key] is not { } node)
            return null;
        if (json[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
        {
            var d = v.GetValue<double>();
            if (d >= min && d <= max)
                return d;
            Error(ErrorCode.EvalInvalidField, node.Offset, $"\"{key}\" must be between {min} and {max}, got {d}");
            return null;
        }
        Error(ErrorCode.EvalInvalidField, node.Offset, $"\"{key}\" must be a number, not {node.Kind}");
        return null;
    }

    private int ErrorCount() => _diagnostics.Count(d => d.Severity == DiagnosticSeverity.Error);

    private int Column(int byteOffset) => JsonLines.CharacterColumn(_current, byteOffset);

    private void Error(ErrorCode code, int byteOffset, string message) =>
        _diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, code, _file, _line,
            byteOffset < 0 ? 0 : Column(byteOffset), message));
}
