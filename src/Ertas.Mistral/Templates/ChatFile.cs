using System.Text;
using System.Text.Json;
using Ertas.Core;

namespace Ertas.Mistral.Templates;

/// <summary>
/// Reads a conversation in the OpenAI/mistral-common shape, <c>{"messages":[{"role":..,"content":..}, ...]}</c>.
/// Other properties (<c>tools</c>, <c>tool_calls</c>, ...) are ignored. Errors point at the file, line and column.
/// </summary>
public static class ChatFile
{
    private static readonly JsonReaderOptions ReaderOptions = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
    };

    public static IReadOnlyList<ChatMessage> Load(string path)
    {
        if (!File.Exists(path))
            throw new ErtasException(ErrorCode.FileNotFound, $"chat file '{path}' does not exist", path);
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>
    /// Parses one conversation. <paramref name="firstLine"/> is the line the text starts on in
    /// <paramref name="source"/>, so a JSON Lines reader can report real line numbers.
    /// </summary>
    public static IReadOnlyList<ChatMessage> Parse(ReadOnlySpan<byte> utf8Json, string source, int firstLine = 1)
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

    public static IReadOnlyList<ChatMessage> Parse(string json, string source, int firstLine = 1) =>
        Parse(Encoding.UTF8.GetBytes(json), source, firstLine);

    private static List<ChatMessage> ParseCore(ReadOnlySpan<byte> json, string source, int firstLine)
    {
        var reader = new Utf8JsonReader(json, ReaderOptions);
        var origin = new Origin(source, firstLine);

        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, "expected a JSON object with a \"messages\" array", reader.TokenStartIndex);
        List<ChatMessage>? messages = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isMessages = reader.ValueTextEquals("messages"u8);
            reader.Read();
            if (!isMessages)
            {
                reader.Skip();
                continue;
            }
            if (reader.TokenType != JsonTokenType.StartArray)
                throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, "\"messages\" must be an array", reader.TokenStartIndex);
            messages = [];
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                var messageStart = reader.TokenStartIndex;
                if (reader.TokenType != JsonTokenType.StartObject)
                    throw origin.Fail(json, ErrorCode.ChatFileInvalidJson, $"message {messages.Count} must be a JSON object", messageStart);
                string? role = null, content = null;
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var isRole = reader.ValueTextEquals("role"u8);
                    var isContent = reader.ValueTextEquals("content"u8);
                    reader.Read();
                    if (isRole || isContent)
                    {
                        if (reader.TokenType != JsonTokenType.String)
                            throw origin.Fail(json, ErrorCode.ChatFileInvalidJson,
                                $"message {messages.Count}: \"{(isRole ? "role" : "content")}\" must be a string", reader.TokenStartIndex);
                        if (isRole)
                            role = reader.GetString();
                        else
                            content = reader.GetString();
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                if (role is null || content is null)
                    throw origin.Fail(json, ErrorCode.ChatFileMissingField,
                        $"message {messages.Count} has no \"{(role is null ? "role" : "content")}\"", messageStart);
                messages.Add(new ChatMessage(role, content));
            }
        }
        if (messages is null)
            throw origin.Fail(json, ErrorCode.ChatFileMissingField, "no \"messages\" array", 0);
        if (messages.Count == 0)
            throw origin.Fail(json, ErrorCode.ChatFileMissingField, "\"messages\" is empty", 0);
        return messages;
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
