using System.Text;
using System.Text.Json;
using Ertas.Core;

namespace Ertas.Mistral.Templates;

/// <summary>
/// Reads a conversation in the OpenAI/mistral-common shape, <c>{"messages":[{"role":..,"content":..}, ...],
/// "tools":[...]}</c>, with assistant <c>tool_calls</c> and <c>tool</c> messages (<c>tool_call_id</c>, <c>name</c>).
/// Other properties are ignored. Errors point at the file, line and column.
/// </summary>
public static class ChatFile
{
    private static readonly JsonReaderOptions ReaderOptions = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
    };

    public static IReadOnlyList<ChatMessage> Load(string path) => LoadDocument(path).Messages;

    /// <summary>The messages and the <c>tools</c> list beside them (empty when the file has none).</summary>
    public static ChatDocument LoadDocument(string path)
    {
        if (!File.Exists(path))
            throw new ErtasException(ErrorCode.FileNotFound, $"chat file '{path}' does not exist", path);
        return ParseDocument(File.ReadAllBytes(path), path);
    }

    /// <summary>
    /// Parses one conversation. <paramref name="firstLine"/> is the line the text starts on in
    /// <paramref name="source"/>, so a JSON Lines reader can report real line numbers.
    /// </summary>
    public static IReadOnlyList<ChatMessage> Parse(ReadOnlySpan<byte> utf8Json, string source, int firstLine = 1) =>
        ParseDocument(utf8Json, source, firstLine).Messages;

    public static IReadOnlyList<ChatMessage> Parse(string json, string source, int firstLine = 1) =>
        Parse(Encoding.UTF8.GetBytes(json), source, firstLine);

    /// <summary><see cref="Parse(ReadOnlySpan{byte}, string, int)"/> with the <c>tools</c> list.</summary>
    public static ChatDocument ParseDocument(ReadOnlySpan<byte> utf8Json, string source, int firstLine = 1)
    {
        var json = utf8Json.StartsWith(Encoding.UTF8.Preamble) ? utf8Json[Encoding.UTF8.Preamble.Length..] : utf8Json;
        try
        {
            return ParseCore(json, source, firstLine);
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.ChatFileInvalidJson, $"not valid JSON: {e.Message}", source,
                firstLine + (int)(e.LineNumber ?? 0), (int)(e.BytePositionInLine ?? 0) + 1, e);
        }
    }

    public static ChatDocument ParseDocument(string json, string source, int firstLine = 1) =>
        ParseDocument(Encoding.UTF8.GetBytes(json), source, firstLine);

    private static ChatDocument ParseCore(ReadOnlySpan<byte> json, string source, int firstLine)
    {
        var reader = new Utf8JsonReader(json, ReaderOptions);
        var origin = new Origin(source, firstLine);

        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, "expected a JSON object with a \"messages\" array", reader.TokenStartIndex);
        List<ChatMessage>? messages = null;
        var tools = new List<ChatTool>();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isMessages = reader.ValueTextEquals("messages"u8);
            var isTools = reader.ValueTextEquals("tools"u8);
            reader.Read();
            if (isTools && reader.TokenType != JsonTokenType.Null)
            {
                ReadTools(ref reader, json, origin, tools);
                continue;
            }
            if (!isMessages)
            {
                reader.Skip();
                continue;
            }
            if (reader.TokenType != JsonTokenType.StartArray)
                throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, "\"messages\" must be an array", reader.TokenStartIndex);
            messages = [];
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                messages.Add(ReadMessage(ref reader, json, origin, messages.Count));
        }
        if (messages is null)
            throw origin.Fail(json, ErrorCode.ChatFileMissingField, "no \"messages\" array", 0);
        if (messages.Count == 0)
            throw origin.Fail(json, ErrorCode.ChatFileMissingField, "\"messages\" is empty", 0);
        return new ChatDocument(messages, tools);
    }

    private static ChatMessage ReadMessage(ref Utf8JsonReader reader, ReadOnlySpan<byte> json, Origin origin, int index)
    {
        var messageStart = reader.TokenStartIndex;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"message {index} must be a JSON object", messageStart);
        string? role = null, content = null, toolCallId = null, name = null;
        var contentIsNull = false;
        List<ChatToolCall>? toolCalls = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var property = reader.GetString()!;
            reader.Read();
            switch (property)
            {
                case "role":
                    role = RequireString(ref reader, json, origin, $"message {index}: \"role\"");
                    break;
                case "content" when reader.TokenType == JsonTokenType.Null:
                    contentIsNull = true;
                    break;
                case "content":
                    content = RequireString(ref reader, json, origin, $"message {index}: \"content\"");
                    break;
                case "tool_call_id" when reader.TokenType != JsonTokenType.Null:
                    toolCallId = RequireString(ref reader, json, origin, $"message {index}: \"tool_call_id\"");
                    break;
                case "name" when reader.TokenType == JsonTokenType.String:
                    name = reader.GetString();
                    break;
                case "tool_calls" when reader.TokenType == JsonTokenType.StartArray:
                    toolCalls = [];
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                        toolCalls.Add(ReadToolCall(ref reader, json, origin, $"message {index}, tool call {toolCalls.Count}"));
                    break;
                case "tool_calls" when reader.TokenType != JsonTokenType.Null:
                    throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"message {index}: \"tool_calls\" must be an array", reader.TokenStartIndex);
                default:
                    reader.Skip();
                    break;
            }
        }
        if (role is null)
            throw origin.Fail(json, ErrorCode.ChatFileMissingField, $"message {index} has no \"role\"", messageStart);
        // An assistant turn that calls tools has no text (OpenAI writes null or leaves it out); any other turn needs it.
        var callsTools = toolCalls is { Count: > 0 };
        if (content is null && !callsTools)
            throw contentIsNull
                ? origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"message {index}: \"content\" must be a string", messageStart)
                : origin.Fail(json, ErrorCode.ChatFileMissingField, $"message {index} has no \"content\"", messageStart);
        return new ChatMessage(role, content ?? "", toolCalls, toolCallId, name);
    }

    /// <summary>OpenAI's <c>{"id":..,"type":"function","function":{"name":..,"arguments":"{...}"}}</c>; arguments may also be an object.</summary>
    private static ChatToolCall ReadToolCall(ref Utf8JsonReader reader, ReadOnlySpan<byte> json, Origin origin, string what)
    {
        var start = reader.TokenStartIndex;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"{what} must be a JSON object", start);
        string? id = null, name = null, arguments = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var property = reader.GetString()!;
            reader.Read();
            if (property == "id" && reader.TokenType != JsonTokenType.Null)
            {
                id = RequireString(ref reader, json, origin, $"{what}: \"id\"");
            }
            else if (property == "function" && reader.TokenType == JsonTokenType.StartObject)
            {
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var inner = reader.GetString()!;
                    reader.Read();
                    if (inner == "name")
                        name = RequireString(ref reader, json, origin, $"{what}: \"function.name\"");
                    else if (inner == "arguments")
                        arguments = reader.TokenType switch
                        {
                            JsonTokenType.String => reader.GetString(),
                            JsonTokenType.Null => null,
                            _ => RawValue(ref reader, json),
                        };
                    else
                        reader.Skip();
                }
            }
            else
            {
                reader.Skip();
            }
        }
        if (name is null)
            throw origin.Fail(json, ErrorCode.ChatFileMissingField, $"{what} has no \"function\" with a \"name\"", start);
        // mistral-common turns missing or empty arguments into {}.
        return new ChatToolCall(id, name, string.IsNullOrEmpty(arguments) ? "{}" : arguments);
    }

    /// <summary>OpenAI's tool list: <c>[{"type":"function","function":{"name":..,"description":..,"parameters":{...}}}]</c>.</summary>
    private static void ReadTools(ref Utf8JsonReader reader, ReadOnlySpan<byte> json, Origin origin, List<ChatTool> tools)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, "\"tools\" must be an array", reader.TokenStartIndex);
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            var what = $"tool {tools.Count}";
            var start = reader.TokenStartIndex;
            if (reader.TokenType != JsonTokenType.StartObject)
                throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"{what} must be a JSON object", start);
            string? name = null, description = null, parameters = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var property = reader.GetString()!;
                reader.Read();
                if (property == "type" && reader.TokenType == JsonTokenType.String && reader.GetString() != "function")
                    throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"{what} has type '{reader.GetString()}'; only \"function\" tools exist", reader.TokenStartIndex);
                if (property != "function" || reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var inner = reader.GetString()!;
                    reader.Read();
                    if (inner == "name")
                        name = RequireString(ref reader, json, origin, $"{what}: \"function.name\"");
                    else if (inner == "description" && reader.TokenType != JsonTokenType.Null)
                        description = RequireString(ref reader, json, origin, $"{what}: \"function.description\"");
                    else if (inner == "parameters" && reader.TokenType == JsonTokenType.StartObject)
                        parameters = RawValue(ref reader, json);
                    else if (inner == "parameters" && reader.TokenType != JsonTokenType.Null)
                        throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"{what}: \"function.parameters\" must be a JSON object", reader.TokenStartIndex);
                    else
                        reader.Skip();
                }
            }
            if (name is null)
                throw origin.Fail(json, ErrorCode.ChatFileMissingField, $"{what} has no \"function\" with a \"name\"", start);
            // mistral-common's Tool.from_openai: a missing description is "", missing parameters are {}.
            tools.Add(new ChatTool(name, description ?? "", parameters ?? "{}"));
        }
    }

    private static string RequireString(ref Utf8JsonReader reader, ReadOnlySpan<byte> json, Origin origin, string what) =>
        reader.TokenType == JsonTokenType.String
            ? reader.GetString()!
            : throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"{what} must be a string", reader.TokenStartIndex);

    /// <summary>The source text of the value under the reader (an object or array), for Python-style re-spelling later.</summary>
    private static string RawValue(ref Utf8JsonReader reader, ReadOnlySpan<byte> json)
    {
        var start = (int)reader.TokenStartIndex;
        reader.Skip();
        return Encoding.UTF8.GetString(json[start..(int)reader.BytesConsumed]);
    }

    private readonly record struct Origin(string Source, int FirstLine)
    {
        /// <summary>An error at a byte offset, turned into a line (counted from FirstLine) and a 1-based column.</summary>
        public ErtasException Fail(ReadOnlySpan<byte> json, ErrorCode code, string message, long offset)
        {
            var before = json[..(int)Math.Min(offset, json.Length)];
            var line = FirstLine + before.Count((byte)'\n');
            var column = before.Length - before.LastIndexOf((byte)'\n');
            return new ErtasException(code, message, Source, line, column);
        }
    }
}
