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
