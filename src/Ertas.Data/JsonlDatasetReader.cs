using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using Ertas.Core;
using Ertas.Mistral.Templates;

namespace Ertas.Data;

/// <summary>
/// Reads one JSON Lines dataset file from its raw bytes and reports every problem it finds (it never stops at the
/// first). Bytes, not a decoding reader: a <see cref="StreamReader"/> would silently replace invalid UTF-8.
/// Blank lines are skipped; a UTF-8 byte order mark on the first line is allowed; CRLF line ends are accepted.
/// </summary>
internal sealed class JsonlDatasetReader
{
    private readonly string _file;
    private readonly List<DatasetDiagnostic> _diagnostics;
    private byte[] _currentLine = [];
    private int _lineNumber;

    private JsonlDatasetReader(string file, List<DatasetDiagnostic> diagnostics)
    {
        _file = file;
        _diagnostics = diagnostics;
    }

    /// <summary>
    /// Parses <paramref name="content"/>; diagnostics go to <paramref name="diagnostics"/>; only lines without
    /// errors come back as examples.
    /// </summary>
    public static List<DatasetExample> Read(ReadOnlySpan<byte> content, string file, DatasetFormat format,
        List<DatasetDiagnostic> diagnostics, CancellationToken cancellationToken = default) =>
        new JsonlDatasetReader(file, diagnostics).ReadAll(content, format, cancellationToken);

    private List<DatasetExample> ReadAll(ReadOnlySpan<byte> content, DatasetFormat requested, CancellationToken cancellationToken)
    {
        var examples = new List<DatasetExample>();
        DatasetFormat? fileFormat = requested == DatasetFormat.Auto ? null : requested;
        var detectedOnLine = 0;
        var nonBlankLines = 0;
        var lines = new JsonLines(content);
        while (lines.MoveNext())
        {
            cancellationToken.ThrowIfCancellationRequested();
            var line = lines.Current;
            _lineNumber = lines.Number;
            if (lines.IsBlank)
                continue;
            nonBlankLines++;
            _currentLine = line.ToArray();
            var example = ReadLine(line, requested, ref fileFormat, ref detectedOnLine);
            if (example is not null)
                examples.Add(example);
        }
        if (nonBlankLines == 0)
        {
            _lineNumber = 0;
            Error(ErrorCode.DatasetNoExamples, -1, "the file holds no examples (it is empty or only blank lines)");
        }
        return examples;
    }

    private DatasetExample? ReadLine(ReadOnlySpan<byte> line, DatasetFormat requested, ref DatasetFormat? fileFormat, ref int detectedOnLine)
    {
        if (JsonLines.InvalidUtf8At(line) is var validBytes and >= 0)
        {
            Error(ErrorCode.DatasetInvalidUtf8, validBytes,
                $"invalid UTF-8 at byte {validBytes + 1} of the line (0x{line[validBytes]:X2}); save the file as UTF-8");
            return null;
        }

        JsonLineNode root;
        try
        {
            root = JsonLineParser.Parse(line);
        }
        catch (JsonException e)
        {
            Error(ErrorCode.DatasetInvalidJson, (int)(e.BytePositionInLine ?? 0), $"not valid JSON: {JsonLines.TrimReaderPosition(e.Message)}");
            return null;
        }
        if (root is not JsonLineObject obj)
        {
            Error(ErrorCode.DatasetInvalidJson, root.Offset, $"each line must be one JSON object, but this one is {root.Kind}");
            return null;
        }

        var lineFormat = Detect(obj);
        if (requested == DatasetFormat.Auto)
        {
            if (lineFormat is null)
            {
                Error(ErrorCode.DatasetUnknownFormat, 0,
                    "no known dataset keys: expected \"messages\" (chat), \"conversations\" (ShareGPT), \"instruction\"/\"output\" (Alpaca) or \"text\" (completion)");
                return null;
            }
            if (fileFormat is null)
            {
                fileFormat = lineFormat;
                detectedOnLine = _lineNumber;
            }
            else if (lineFormat != fileFormat)
            {
                Error(ErrorCode.DatasetMixedFormats, 0,
                    $"this line is {Describe(lineFormat.Value)} but the file is {Describe(fileFormat.Value)} (detected from line {detectedOnLine}); use one format per file");
                return null;
            }
        }
        else if (lineFormat is not null && lineFormat != requested && !HasKeyOf(obj, requested))
        {
            Error(ErrorCode.DatasetMixedFormats, 0,
                $"this line is {Describe(lineFormat.Value)} but the file's format is set to {Describe(requested)}");
            return null;
        }

        return fileFormat!.Value switch
        {
            DatasetFormat.Chat when UsesTools(obj) => ReadToolConversation(obj, line),
            DatasetFormat.Chat => ReadConversation(obj, DatasetFormat.Chat, "messages", "role", "content", MapChatRole),
            DatasetFormat.ShareGpt => ReadConversation(obj, DatasetFormat.ShareGpt, "conversations", "from", "value", MapShareGptRole),
            DatasetFormat.Alpaca => ReadAlpaca(obj),
            DatasetFormat.Completion => ReadCompletion(obj),
            _ => throw new InvalidOperationException($"unexpected format {fileFormat}"),
        };
    }

    /// <summary>The format a line's keys announce; the first match wins, so extra keys never confuse it.</summary>
    public static DatasetFormat? Detect(IReadOnlyDictionary<string, JsonLineNode> properties) =>
        properties.ContainsKey("messages") ? DatasetFormat.Chat
        : properties.ContainsKey("conversations") ? DatasetFormat.ShareGpt
        : properties.ContainsKey("instruction") || properties.ContainsKey("output") ? DatasetFormat.Alpaca
        : properties.ContainsKey("text") ? DatasetFormat.Completion
        : null;

    private static DatasetFormat? Detect(JsonLineObject obj) => Detect(obj.Properties);

    private static bool HasKeyOf(JsonLineObject obj, DatasetFormat format) => format switch
    {
        DatasetFormat.Chat => obj["messages"] is not null,
        DatasetFormat.ShareGpt => obj["conversations"] is not null,
        DatasetFormat.Alpaca => obj["instruction"] is not null || obj["output"] is not null,
        DatasetFormat.Completion => obj["text"] is not null,
        _ => false,
    };

    public static string Describe(DatasetFormat format) => format switch
    {
        DatasetFormat.Chat => "chat (\"messages\")",
        DatasetFormat.ShareGpt => "ShareGPT (\"conversations\")",
        DatasetFormat.Alpaca => "Alpaca (\"instruction\"/\"output\")",
        DatasetFormat.Completion => "completion (\"text\")",
        _ => format.ToString(),
    };

    private static string? MapChatRole(string role) => role switch
    {
        ChatMessage.System or ChatMessage.User or ChatMessage.Assistant => role,
        _ => null,
    };

    private static string? MapShareGptRole(string from) => from switch
    {
        "system" => ChatMessage.System,
        "human" or "user" => ChatMessage.User,
        "gpt" or "assistant" => ChatMessage.Assistant,
        _ => null,
    };

    private DatasetExample? ReadConversation(JsonLineObject obj, DatasetFormat format, string listKey, string roleKey, string contentKey,
        Func<string, string?> mapRole)
    {
        var errorsBefore = _diagnostics.Count;
        if (obj[listKey] is not JsonLineArray list)
        {
            if (obj[listKey] is null)
                Error(ErrorCode.DatasetMissingField, obj.Offset, $"no \"{listKey}\" array");
            else
                Error(ErrorCode.DatasetInvalidField, obj[listKey]!.Offset, $"\"{listKey}\" must be an array, not {obj[listKey]!.Kind}");
            return null;
        }
        if (list.Items.Count == 0)
        {
            Error(ErrorCode.DatasetMissingField, list.Offset, $"\"{listKey}\" is empty");
            return null;
        }

        // (message index, mapped role or null when unusable, content, offset of the message)
        var turns = new List<(int Index, string? Role, string Content, int Offset)>();
        for (var i = 0; i < list.Items.Count; i++)
        {
            if (list.Items[i] is not JsonLineObject message)
            {
                Error(ErrorCode.DatasetInvalidField, list.Items[i].Offset, $"message {i} must be an object, not {list.Items[i].Kind}");
                continue;
            }
            var roleText = RequireString(message, roleKey, $"message {i}", allowEmpty: true);
            var content = RequireString(message, contentKey, $"message {i}", allowEmpty: false);
            string? role = null;
            if (roleText is not null)
            {
                role = mapRole(roleText);
                if (role is null)
                    Error(ErrorCode.DatasetUnknownRole, message[roleKey]!.Offset,
                        $"message {i} has {roleKey} \"{roleText}\"; {(format == DatasetFormat.Chat ? "use system, user or assistant" : "use system, human or gpt")}");
            }
            turns.Add((i, role, content ?? "", message.Offset));
        }

        CheckTurnOrder(turns, roleKey);
        if (_diagnostics.Count != errorsBefore)
            return null;
        return new DatasetExample(_file, _lineNumber, format, turns.Select(t => new ChatMessage(t.Role!, t.Content)).ToArray(), null);
    }

    /// <summary>A chat line with a <c>tools</c> list, an assistant's <c>tool_calls</c> or a <c>tool</c> message.</summary>
    private static bool UsesTools(JsonLineObject obj) =>
        obj["tools"] is not null
        || obj["messages"] is JsonLineArray messages && messages.Items.OfType<JsonLineObject>().Any(m =>
            m["tool_calls"] is not null and not JsonLineScalar { TokenType: JsonTokenType.Null }
            || m["role"] is JsonLineString { Value: ChatMessage.Tool });

    /// <summary>
    /// A function-calling conversation (OpenAI's format): checked here for what a reader of the file can fix at its
    /// place (roles, order, each tool result answering a call made just before it, arguments that are JSON), then read
    /// with the same parser as <c>ertas tokenize --chat</c>, so training and serving see one reading of a conversation.
    /// </summary>
    private DatasetExample? ReadToolConversation(JsonLineObject obj, ReadOnlySpan<byte> line)
    {
        var errorsBefore = _diagnostics.Count;
        if (obj["tools"] is { } tools and not JsonLineArray)
            Error(ErrorCode.DatasetInvalidField, tools.Offset, $"\"tools\" must be an array of {{\"type\": \"function\", \"function\": {{...}}}}, not {tools.Kind}");
        else if (obj["tools"] is JsonLineArray list)
        {
            for (var i = 0; i < list.Items.Count; i++)
            {
                if (list.Items[i] is not JsonLineObject tool || tool["function"] is not JsonLineObject function || function["name"] is not JsonLineString { Value.Length: > 0 })
                    Error(ErrorCode.DatasetInvalidField, list.Items[i].Offset, $"tool {i} must be {{\"type\": \"function\", \"function\": {{\"name\": ..., \"parameters\": {{...}}}}}}");
            }
        }
        if (obj["messages"] is not JsonLineArray messages || messages.Items.Count == 0)
        {
            Error(obj["messages"] is null ? ErrorCode.DatasetMissingField : ErrorCode.DatasetInvalidField, obj["messages"]?.Offset ?? obj.Offset,
                "\"messages\" must be a non-empty array");
            return null;
        }

        // The calls the last assistant turn made that no tool result has answered yet (id, or null when it gave none).
        var pending = new List<string?>();
        string? previous = null;
        var dialogue = 0;
        var orderReported = false;
        for (var i = 0; i < messages.Items.Count; i++)
        {
            if (messages.Items[i] is not JsonLineObject message)
            {
                Error(ErrorCode.DatasetInvalidField, messages.Items[i].Offset, $"message {i} must be an object, not {messages.Items[i].Kind}");
                continue;
            }
            var role = RequireString(message, "role", $"message {i}", allowEmpty: true);
            if (role is null)
                continue;
            var calls = message["tool_calls"] as JsonLineArray;
            if (role is ChatMessage.User or ChatMessage.Assistant or ChatMessage.Tool)
            {
                // user -> assistant; an assistant's answer -> user; its tool calls -> their results -> assistant.
                var expected = previous switch
                {
                    null => [ChatMessage.User],
                    ChatMessage.User => [ChatMessage.Assistant],
                    ChatMessage.Assistant when pending.Count > 0 => [ChatMessage.Tool],
                    ChatMessage.Assistant => [ChatMessage.User],
                    _ /* tool */ => pending.Count > 0 ? new[] { ChatMessage.Tool } : [ChatMessage.Assistant],
                };
                if (!expected.Contains(role) && !orderReported && !(role == ChatMessage.Tool && pending.Count == 0))
                {
                    Error(ErrorCode.DatasetRolesNotAlternating, message.Offset,
                        $"message {i} is {Article(role)} {role} turn where {string.Join(" or ", expected.Select(e => Article(e) + " " + e))} turn was expected: user, then assistant; an assistant's tool calls are followed by one tool result each, then the assistant again");
                    orderReported = true;
                }
            }
            switch (role)
            {
                case ChatMessage.System:
                    if (dialogue > 0)
                        Error(ErrorCode.DatasetMisplacedSystem, message.Offset,
                            $"message {i} is a system message after the conversation started; put system messages first (the template puts them with the last user turn)");
                    RequireString(message, "content", $"message {i}", allowEmpty: false);
                    continue;
                case ChatMessage.User:
                    RequireString(message, "content", $"message {i}", allowEmpty: false);
                    break;
                case ChatMessage.Assistant:
                    if (calls is null || calls.Items.Count == 0)
                        RequireString(message, "content", $"message {i}", allowEmpty: false);
                    else
                        CheckToolCalls(calls, i);
                    break;
                case ChatMessage.Tool:
                    CheckToolResult(message, i, pending);
                    break;
                default:
                    Error(ErrorCode.DatasetUnknownRole, message["role"]!.Offset, $"message {i} has role \"{role}\"; use system, user, assistant or tool");
                    continue;
            }

            if (role == ChatMessage.Assistant)
            {
                pending.Clear();
                if (calls is not null)
                    pending.AddRange(calls.Items.OfType<JsonLineObject>().Select(c => (c["id"] as JsonLineString)?.Value));
            }
            previous = role;
            dialogue++;
        }
        if (!orderReported && previous is not null && previous != ChatMessage.Assistant && _diagnostics.Count == errorsBefore)
            Error(ErrorCode.DatasetRolesNotAlternating, messages.Items[^1].Offset,
                $"the conversation ends with a {previous} turn; a training example must end with an assistant answer or tool call");
        if (_diagnostics.Count != errorsBefore)
            return null;

        ChatDocument document;
        try
        {
            document = ChatFile.ParseDocument(line, _file, _lineNumber);
        }
        catch (ErtasException e)
        {
            _diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.DatasetInvalidField, _file, _lineNumber, e.Column, e.Message));
            return null;
        }
        return new DatasetExample(_file, _lineNumber, DatasetFormat.Chat, document.Messages, null) { Tools = document.Tools };
    }

    private void CheckToolCalls(JsonLineArray calls, int index)
    {
        for (var c = 0; c < calls.Items.Count; c++)
        {
            var what = $"message {index}, tool call {c}";
            if (calls.Items[c] is not JsonLineObject call || call["function"] is not JsonLineObject function)
            {
                Error(ErrorCode.DatasetInvalidField, calls.Items[c].Offset, $"{what} must be {{\"id\": ..., \"type\": \"function\", \"function\": {{\"name\": ..., \"arguments\": ...}}}}");
                continue;
            }
            RequireString(function, "name", what, allowEmpty: false);
            switch (function["arguments"])
            {
                case JsonLineString text when text.Value.Length > 0 && !IsJsonObject(text.Value):
                    Error(ErrorCode.DatasetInvalidField, text.Offset, $"{what}: \"arguments\" is not a JSON object: {Shorten(text.Value)}");
                    break;
                case null or JsonLineString or JsonLineObject or JsonLineScalar { TokenType: JsonTokenType.Null }:
                    break;
                case var other:
                    Error(ErrorCode.DatasetInvalidField, other.Offset, $"{what}: \"arguments\" must be a JSON object or a string holding one, not {other.Kind}");
                    break;
            }
        }
    }

    private void CheckToolResult(JsonLineObject message, int index, List<string?> pending)
    {
        if (message["content"] is not JsonLineString)
            RequireString(message, "content", $"message {index}", allowEmpty: true);
        var id = message["tool_call_id"] as JsonLineString;
        if (pending.Count == 0)
        {
            Error(ErrorCode.DatasetRolesNotAlternating, message.Offset,
                $"message {index} is a tool result with no tool call before it: it answers the assistant's tool_calls just above it");
            return;
        }
        var at = id is null ? pending.IndexOf(null) : pending.IndexOf(id.Value);
        if (at < 0)
        {
            var known = string.Join(", ", pending.Select(p => p is null ? "(no id)" : $"\"{p}\""));
            Error(ErrorCode.DatasetInvalidField, (id ?? (JsonLineNode)message).Offset, id is null
                ? $"message {index} has no \"tool_call_id\"; it must name the call it answers ({known})"
                : $"message {index} answers tool_call_id \"{id.Value}\", which no open tool call has ({known})");
            // Counted as an answer all the same: one wrong id is one error, not one for every turn after it.
            pending.RemoveAt(0);
            return;
        }
        pending.RemoveAt(at);
    }

    private static bool IsJsonObject(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static string Article(string role) => role == ChatMessage.Assistant ? "an" : "a";

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..57] + "...";

    /// <summary>
    /// Mistral v1's rules: system messages only before the first user turn (the template folds them into it), then
    /// user/assistant alternating, starting with user and, for training, ending with assistant. Only the first
    /// break in alternation is reported: every later turn would be "wrong" only because of it.
    /// </summary>
    private void CheckTurnOrder(List<(int Index, string? Role, string Content, int Offset)> turns, string roleKey)
    {
        var dialogueTurns = 0;
        var alternationReported = false;
        (int Index, string? Role, string Content, int Offset)? last = null;
        foreach (var turn in turns)
        {
            if (turn.Role is null)
            {
                // Already reported; let it hold its slot so the turns after it are not blamed for it.
                dialogueTurns++;
                continue;
            }
            if (turn.Role == ChatMessage.System)
            {
                if (dialogueTurns > 0)
                    Error(ErrorCode.DatasetMisplacedSystem, turn.Offset,
                        $"message {turn.Index} is a system message after the conversation started; put system messages first (they are folded into the first user turn)");
                continue;
            }
            var expected = dialogueTurns % 2 == 0 ? ChatMessage.User : ChatMessage.Assistant;
            if (turn.Role != expected && !alternationReported)
            {
                Error(ErrorCode.DatasetRolesNotAlternating, turn.Offset,
                    $"message {turn.Index} is a{(turn.Role == ChatMessage.Assistant ? "n" : "")} {turn.Role} turn where a{(expected == ChatMessage.Assistant ? "n" : "")} {expected} turn was expected: roles must alternate user/assistant/user/..., starting with user (system messages aside)");
                alternationReported = true;
            }
            dialogueTurns++;
            last = turn;
        }
        if (turns.Any(t => t.Role is null) || alternationReported)
            return;
        if (last is null)
            Error(ErrorCode.DatasetRolesNotAlternating, 0, "the conversation has no user or assistant turn");
        else if (last.Value.Role != ChatMessage.Assistant)
            Error(ErrorCode.DatasetRolesNotAlternating, last.Value.Offset,
                $"the conversation ends with a {last.Value.Role} turn (message {last.Value.Index}); a training example must end with an assistant answer");
    }

    private DatasetExample? ReadAlpaca(JsonLineObject obj)
    {
        var errorsBefore = _diagnostics.Count;
        var instruction = RequireString(obj, "instruction", "the example", allowEmpty: false);
        string input = "";
        switch (obj["input"])
        {
            case null or JsonLineScalar { TokenType: JsonTokenType.Null }:
                break;
            case JsonLineString s:
                input = s.Value;
                break;
            case var other:
                Error(ErrorCode.DatasetInvalidField, other.Offset, $"\"input\" must be a string, not {other.Kind}");
                break;
        }
        var output = RequireString(obj, "output", "the example", allowEmpty: false);
        if (_diagnostics.Count != errorsBefore)
            return null;
        var user = string.IsNullOrWhiteSpace(input) ? instruction! : instruction + "\n\n" + input;
        return new DatasetExample(_file, _lineNumber, DatasetFormat.Alpaca,
            [new ChatMessage(ChatMessage.User, user), new ChatMessage(ChatMessage.Assistant, output!)], null);
    }

    private DatasetExample? ReadCompletion(JsonLineObject obj)
    {
        var text = RequireString(obj, "text", "the example", allowEmpty: false);
        return text is null ? null : new DatasetExample(_file, _lineNumber, DatasetFormat.Completion, [], text);
    }

    /// <summary>The string value of <paramref name="key"/>, or null after reporting why it is unusable.</summary>
    private string? RequireString(JsonLineObject obj, string key, string owner, bool allowEmpty)
    {
        switch (obj[key])
        {
            case null:
                Error(ErrorCode.DatasetMissingField, obj.Offset, $"{owner} has no \"{key}\"");
                return null;
            case JsonLineString s:
                if (!allowEmpty && string.IsNullOrWhiteSpace(s.Value))
                {
                    Error(ErrorCode.DatasetEmptyContent, s.Offset, $"{owner} has an empty \"{key}\"");
                    return null;
                }
                return s.Value;
            case var other:
                Error(ErrorCode.DatasetInvalidField, other.Offset, $"{owner}: \"{key}\" must be a string, not {other.Kind}");
                return null;
        }
    }

    /// <summary>Adds an error at a byte offset of the current line (-1: no column).</summary>
    private void Error(ErrorCode code, int byteOffset, string message) =>
        _diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, code, _file, _lineNumber,
            byteOffset < 0 ? 0 : JsonLines.CharacterColumn(_currentLine, byteOffset), message));
}
