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
