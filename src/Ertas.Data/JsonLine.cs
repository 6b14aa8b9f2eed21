using System.Text.Json;

namespace Ertas.Data;

/// <summary>
/// A parsed JSON value that remembers the byte offset it started at within its line, so diagnostics can point at
/// the message or field that is wrong rather than at the start of the line.
/// </summary>
internal abstract record JsonLineNode(int Offset)
{
    public string Kind => this switch
    {
        JsonLineObject => "an object",
        JsonLineArray => "an array",
        JsonLineString => "a string",
        JsonLineScalar { TokenType: JsonTokenType.Null } => "null",
        JsonLineScalar { TokenType: JsonTokenType.Number } => "a number",
        _ => "a boolean",
    };
}

internal sealed record JsonLineObject(int Offset, IReadOnlyDictionary<string, JsonLineNode> Properties) : JsonLineNode(Offset)
{
    public JsonLineNode? this[string name] => Properties.GetValueOrDefault(name);
}

internal sealed record JsonLineArray(int Offset, IReadOnlyList<JsonLineNode> Items) : JsonLineNode(Offset);

internal sealed record JsonLineString(int Offset, string Value) : JsonLineNode(Offset);

internal sealed record JsonLineScalar(int Offset, JsonTokenType TokenType) : JsonLineNode(Offset);

internal static class JsonLineParser
{
    // JSON Lines is strict JSON: no comments, no trailing commas, exactly one value per line.
    private static readonly JsonReaderOptions Strict = new() { MaxDepth = 64 };

    /// <summary>Parses one line; throws <see cref="JsonException"/> (with its byte position) when it is not JSON.</summary>
    public static JsonLineNode Parse(ReadOnlySpan<byte> line)
    {
        var reader = new Utf8JsonReader(line, isFinalBlock: true, new JsonReaderState(Strict));
        if (!reader.Read())
            throw new JsonException("the line holds no JSON value", null, 0, 0);
        var node = ReadValue(ref reader);
        // A second value on the same line makes the reader throw here ("... is invalid after a single JSON value").
        reader.Read();
        return node;
    }

    private static JsonLineNode ReadValue(ref Utf8JsonReader reader)
    {
        var offset = (int)reader.TokenStartIndex;
        switch (reader.TokenType)
        {
            case JsonTokenType.StartObject:
                var properties = new Dictionary<string, JsonLineNode>(StringComparer.Ordinal);
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var name = reader.GetString()!;
                    reader.Read();
                    properties[name] = ReadValue(ref reader);
                }
                return new JsonLineObject(offset, properties);
            case JsonTokenType.StartArray:
                var items = new List<JsonLineNode>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    items.Add(ReadValue(ref reader));
                return new JsonLineArray(offset, items);
            case JsonTokenType.String:
                return new JsonLineString(offset, reader.GetString()!);
            default:
                return new JsonLineScalar(offset, reader.TokenType);
        }
    }
}

/// <summary>
/// The lines of a JSON Lines file, from raw bytes (a decoding reader would silently replace invalid UTF-8): LF or CRLF
/// ends, a UTF-8 byte order mark on the first line dropped, 1-based numbers. Datasets and eval suites share it, so
/// both count lines and columns alike.
/// </summary>
internal ref struct JsonLines
{
    private ReadOnlySpan<byte> _remaining;
    private bool _done;

    public JsonLines(ReadOnlySpan<byte> content)
    {
        _remaining = content;
        _done = false;
        Number = 0;
        Current = default;
    }

    public int Number { get; private set; }
    public ReadOnlySpan<byte> Current { get; private set; }

    public readonly bool IsBlank
    {
        get
        {
            foreach (var b in Current)
                if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r'))
                    return false;
            return true;
        }
    }

    public bool MoveNext()
    {
        if (_done)
            return false;
        Number++;
        var newline = _remaining.IndexOf((byte)'\n');
        var line = newline < 0 ? _remaining : _remaining[..newline];
        if (line.Length > 0 && line[^1] == (byte)'\r')
            line = line[..^1];
        if (Number == 1 && line.StartsWith(System.Text.Encoding.UTF8.Preamble))
            line = line[System.Text.Encoding.UTF8.Preamble.Length..];
        Current = line;
        if (newline < 0)
            _done = true;
        else
            _remaining = _remaining[(newline + 1)..];
        return true;
    }

    /// <summary>The byte offset of the first invalid UTF-8 sequence in <paramref name="line"/>, or -1.</summary>
    public static int InvalidUtf8At(ReadOnlySpan<byte> line)
    {
        if (System.Text.Unicode.Utf8.IsValid(line))
            return -1;
        System.Text.Unicode.Utf8.ToUtf16(line, new char[line.Length], out var valid, out _, replaceInvalidSequences: false);
        return valid;
    }

    /// <summary>1-based column in characters (code points) of a byte offset: editors count characters, not bytes.</summary>
    public static int CharacterColumn(ReadOnlySpan<byte> line, int byteOffset)
    {
        var prefix = line[..Math.Clamp(byteOffset, 0, line.Length)];
        var continuationBytes = 0;
        foreach (var b in prefix)
            if ((b & 0xC0) == 0x80)
                continuationBytes++;
        return prefix.Length - continuationBytes + 1;
    }

    /// <summary>The JSON reader's message ends with a position relative to the line; ours is absolute, so drop it.</summary>
    public static string TrimReaderPosition(string message)
    {
        foreach (var marker in new[] { " Path:", " LineNumber:" })
        {
            var at = message.IndexOf(marker, StringComparison.Ordinal);
            if (at > 0)
                message = message[..at];
        }
        return message.TrimEnd(' ', '|', '.');
    }
}
