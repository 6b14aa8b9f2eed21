using System.Globalization;
using System.Text;
using System.Text.Json;
using Ertas.Core;

namespace Ertas.Training;

/// <summary>The JSON type a config key takes, and whether its text is a path (resolved against the file's folder).</summary>
public enum ConfigValueKind
{
    /// <summary>true or false (false is the same as leaving the key out).</summary>
    Flag,
    /// <summary>A JSON number with an integer value.</summary>
    Integer,
    /// <summary>Any JSON number.</summary>
    Number,
    /// <summary>A string.</summary>
    Text,
    /// <summary>A string, or an array of strings joined with commas ("q_proj,v_proj" or ["q_proj", "v_proj"]).</summary>
    TextList,
    /// <summary>A path string.</summary>
    Path,
    /// <summary>A path string or an array of them: one value each.</summary>
    PathList,
    /// <summary>A path string, or the keyword <c>latest</c> kept as is.</summary>
    PathOrLatest,
}

/// <summary>One key of a config file: its values as command-line text, and where the key stands (1-based).</summary>
public sealed record TrainingConfigEntry(string Key, IReadOnlyList<string> Values, int Line, int Column);

/// <summary>
/// A <c>train.json</c>: one JSON object whose keys are the long option names without dashes (<c>"rank"</c>,
/// <c>"max-steps"</c>, <c>"data"</c>, ...). Comments and trailing commas are allowed. Every value is checked against
/// its key's <see cref="ConfigValueKind"/> and turned into the text the command line would carry; paths are made
/// absolute against the config file's folder, so a config works from any working directory. Unknown keys, duplicates
/// and wrong types are <see cref="ErrorCode.TrainingConfigInvalid"/> with the file, line and column.
/// </summary>
public sealed class TrainingConfigFile
{
    private TrainingConfigFile(string path, IReadOnlyList<TrainingConfigEntry> entries) => (FilePath, Entries) = (path, entries);

    public string FilePath { get; }
    public IReadOnlyList<TrainingConfigEntry> Entries { get; }

    public TrainingConfigEntry? Find(string key) => Entries.FirstOrDefault(e => e.Key == key);

    public static TrainingConfigFile Read(string path, IReadOnlyDictionary<string, ConfigValueKind> schema)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full))
            throw new ErtasException(ErrorCode.FileNotFound, "the training config file does not exist", path);
        var bytes = File.ReadAllBytes(full);
        var folder = System.IO.Path.GetDirectoryName(full)!;
        try
        {
            return new TrainingConfigFile(path, Parse(path, bytes, folder, schema));
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.TrainingConfigInvalid, $"not valid JSON: {FirstSentence(e.Message)}", path,
                (int)(e.LineNumber ?? -1) + 1, (int)(e.BytePositionInLine ?? 0) + 1, e);
        }
    }

    private static List<TrainingConfigEntry> Parse(string path, byte[] bytes, string folder, IReadOnlyDictionary<string, ConfigValueKind> schema)
    {
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        ErtasException Error(long offset, string message)
        {
            var (line, column) = Position(bytes, offset);
            return new ErtasException(ErrorCode.TrainingConfigInvalid, message, path, line, column);
        }

        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            throw Error(reader.TokenStartIndex, "a training config is one JSON object of option names to values, e.g. {\"rank\": 16, \"data\": [\"train.jsonl\"]}");
        var entries = new List<TrainingConfigEntry>();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var keyOffset = reader.TokenStartIndex;
            var key = reader.GetString()!;
            if (!schema.TryGetValue(key, out var kind))
                throw Error(keyOffset, $"unknown key \"{key}\"; valid keys: {string.Join(", ", schema.Keys.Order(StringComparer.Ordinal))}");
            if (entries.Any(e => e.Key == key))
                throw Error(keyOffset, $"\"{key}\" is given twice");
            reader.Read();
            var values = ReadValue(ref reader, key, kind, folder, Error);
            var (line, column) = Position(bytes, keyOffset);
            if (values.Count > 0) entries.Add(new TrainingConfigEntry(key, values, line, column));
        }
        if (reader.TokenType != JsonTokenType.EndObject)
            throw Error(reader.TokenStartIndex, "expected a key or the closing brace");
        if (reader.Read())
            throw Error(reader.TokenStartIndex, "unexpected content after the config object");
        return entries;
    }

    private delegate ErtasException ErrorAt(long offset, string message);

    private static List<string> ReadValue(ref Utf8JsonReader reader, string key, ConfigValueKind kind, string folder, ErrorAt error)
    {
        var offset = reader.TokenStartIndex;
        var token = reader.TokenType;
        string Expected(string what) => $"\"{key}\" expects {what}, got {Describe(token)}";
        switch (kind)
        {
            case ConfigValueKind.Flag:
                return token switch
                {
                    JsonTokenType.True => ["true"],
                    JsonTokenType.False => [],
                    _ => throw error(offset, Expected("true or false")),
                };
            case ConfigValueKind.Integer:
                if (token != JsonTokenType.Number) throw error(offset, Expected("an integer"));
                if (reader.TryGetInt64(out var integer)) return [integer.ToString(CultureInfo.InvariantCulture)];
                if (reader.TryGetUInt64(out var unsigned)) return [unsigned.ToString(CultureInfo.InvariantCulture)];
                throw error(offset, Expected("an integer") + $" ({Encoding.UTF8.GetString(reader.ValueSpan)})");
            case ConfigValueKind.Number:
                if (token != JsonTokenType.Number || !reader.TryGetDouble(out var number) || !double.IsFinite(number))
                    throw error(offset, Expected("a number"));
                return [number.ToString("R", CultureInfo.InvariantCulture)];
            case ConfigValueKind.Text:
                if (token != JsonTokenType.String) throw error(offset, Expected("a string"));
                return [reader.GetString()!];
            case ConfigValueKind.Path:
                if (token != JsonTokenType.String) throw error(offset, Expected("a path string"));
                return [Resolve(folder, reader.GetString()!)];
            case ConfigValueKind.PathOrLatest:
                if (token != JsonTokenType.String) throw error(offset, Expected("a path string or \"latest\""));
                var text = reader.GetString()!;
                return [text.Equals(CheckpointPolicy.Latest, StringComparison.OrdinalIgnoreCase) || text.Equals(CheckpointPolicy.Auto, StringComparison.OrdinalIgnoreCase)
                    ? text : Resolve(folder, text)];
            case ConfigValueKind.TextList:
            case ConfigValueKind.PathList:
                var isPath = kind == ConfigValueKind.PathList;
                var what = isPath ? "a path string or an array of path strings" : "a string or an array of strings";
                List<string> items;
                if (token == JsonTokenType.String) items = [reader.GetString()!];
                else if (token == JsonTokenType.StartArray)
                {
                    items = [];
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    {
                        if (reader.TokenType != JsonTokenType.String)
                            throw error(reader.TokenStartIndex, $"\"{key}\" expects {what}, got an array holding {Describe(reader.TokenType)}");
                        items.Add(reader.GetString()!);
                    }
                    if (items.Count == 0) throw error(offset, $"\"{key}\" is an empty array");
                }
                else throw error(offset, Expected(what));
                return isPath ? [.. items.Select(i => Resolve(folder, i))] : [string.Join(",", items)];
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }

    private static string Resolve(string folder, string path) =>
        path.Length == 0 ? path : System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, path));

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.StartObject => "an object",
        _ => token.ToString(),
    };

    /// <summary>1-based line and column (in characters) of a byte offset.</summary>
    private static (int Line, int Column) Position(byte[] bytes, long offset)
    {
        var end = (int)Math.Clamp(offset, 0, bytes.Length);
        var lineStart = end == 0 ? 0 : Array.LastIndexOf(bytes, (byte)'\n', end - 1) + 1;
        var line = 1;
        for (var i = 0; i < lineStart; i++)
            if (bytes[i] == '\n') line++;
        return (line, Encoding.UTF8.GetCharCount(bytes, lineStart, end - lineStart) + 1);
    }

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}
