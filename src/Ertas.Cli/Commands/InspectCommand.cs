using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ertas.Core;
using Ertas.Gguf;
using Ertas.Gguf.Mixes;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas inspect</c>: a GGUF file's metadata and tensor table, as text or JSON.</summary>
public sealed class InspectCommand : ICommand
{
    /// <summary>Arrays longer than this print their head only: a 32000-entry vocabulary is not a report.</summary>
    private const int ArrayPreview = 8;

    private static readonly JsonSerializerOptions ReadableStrings = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public IReadOnlyList<string> Verb { get; } = ["inspect"];
    public string Usage => "ertas inspect FILE.gguf [--json]";
    public string Summary => "Print a GGUF file's metadata and tensor table (name, type, shape, bytes).";
    public int MaxPositionals => 1;
    public string PositionalsName => "FILE.gguf";
    public string PositionalsHelp => "The GGUF file to inspect.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--json", "Print one JSON document instead of text."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        if (args.Positionals.Count == 0)
            throw new ErtasException(ErrorCode.MissingArgument, "give the GGUF file to inspect: ertas inspect FILE.gguf");
        var path = args.Positionals[0];
        if (!File.Exists(path))
            throw new ErtasException(ErrorCode.FileNotFound, $"'{path}' does not exist", path);
        using var reader = new GgufReader(path);
        var elements = reader.Tensors.Sum(t => t.ElementCount);
        var bytes = reader.Tensors.Sum(t => t.ByteSize);
        var bitsPerWeight = elements == 0 ? 0 : bytes * 8.0 / elements;
        if (args.Has("--json"))
            context.Out.WriteLine(ToJson(reader, path, elements, bytes, bitsPerWeight));
        else
            WriteText(context.Out, reader, path, elements, bytes, bitsPerWeight);
        return 0;
    }

    private static void WriteText(TextWriter o, GgufReader reader, string path, long elements, long bytes, double bpw)
    {
        var inv = CultureInfo.InvariantCulture;
        o.WriteLine($"file: {Path.GetFileName(path)}");
        o.WriteLine(string.Create(inv, $"GGUF v{reader.Version}, alignment {reader.Alignment}, {reader.Metadata.Count} metadata keys, {reader.Tensors.Count} tensors, {elements} weights, {bytes} tensor bytes, {bpw:F2} bits per weight"));
        if (FileTypeName(reader) is { } fileType)
            o.WriteLine($"file type: {fileType}");
        o.WriteLine();
        o.WriteLine("metadata:");
        foreach (var kv in reader.Metadata)
            o.WriteLine($"  {kv.Key} = {Describe(kv)}");
        o.WriteLine();
        o.WriteLine("tensors:");
        var nameWidth = Math.Max(4, reader.Tensors.Select(t => t.Name.Length).DefaultIfEmpty(4).Max());
        o.WriteLine($"  {"name".PadRight(nameWidth)}  {"type",-5}  {"shape",-14}  {"bytes",12}");
        foreach (var t in reader.Tensors)
            o.WriteLine($"  {t.Name.PadRight(nameWidth)}  {t.Type,-5}  {string.Join(" x ", t.Shape),-14}  {t.ByteSize,12}");
        o.WriteLine();
        foreach (var group in reader.Tensors.GroupBy(t => t.Type).OrderBy(g => g.Key))
            o.WriteLine(string.Create(inv, $"  {group.Key}: {group.Count()} tensors, {group.Sum(t => t.ByteSize)} bytes"));
    }

    /// <summary>
    /// <c>general.file_type</c> by llama-quantize's name (F16, Q4_K_M, ...) with its number, or null when absent.
    /// Bits per weight above count tensor bytes without padding over all weights, as llama-quantize reports BPW.
    /// </summary>
    private static string? FileTypeName(GgufReader reader)
    {
        if (!reader.TryGet(Keys.General.FileType, out var entry) || entry.Value is not uint value)
            return null;
        var name = QuantizationMixes.ForFileType((LlamaFileType)value)?.Name ?? "unknown to ertas";
        return string.Create(CultureInfo.InvariantCulture, $"{name} (general.file_type {value})");
    }

    private static string Describe(GgufKeyValue kv)
    {
        if (kv.Value is not Array array) return FormatScalar(kv.Value);
        var head = array.Cast<object>().Take(ArrayPreview).Select(FormatScalar);
        var more = array.Length > ArrayPreview ? ", ..." : "";
        return $"[{kv.ElementType} x {array.Length}] [{string.Join(", ", head)}{more}]";
    }

    private static string FormatScalar(object value) => value switch
    {
        string s => JsonSerializer.Serialize(s.Length > 200 ? s[..200] + "..." : s, ReadableStrings),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        Array a => $"[array x {a.Length}]",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static string ToJson(GgufReader reader, string path, long elements, long bytes, double bpw)
    {
        var metadata = new JsonObject();
        foreach (var kv in reader.Metadata)
        {
            if (kv.Value is Array array)
                metadata[kv.Key] = new JsonObject
                {
                    ["type"] = "array",
                    ["element_type"] = kv.ElementType.ToString(),
                    ["count"] = array.Length,
                    ["head"] = new JsonArray(array.Cast<object>().Take(ArrayPreview).Select(ToNode).ToArray()),
                };
            else
                metadata[kv.Key] = ToNode(kv.Value);
        }
        var tensors = new JsonArray(reader.Tensors.Select(t => (JsonNode)new JsonObject
        {
            ["name"] = t.Name,
            ["type"] = t.Type.ToString(),
            ["shape"] = new JsonArray(t.Shape.Select(d => (JsonNode)d).ToArray()),
            ["bytes"] = t.ByteSize,
        }).ToArray());
        var root = new JsonObject
        {
            ["file"] = Path.GetFileName(path),
            ["version"] = reader.Version,
            ["alignment"] = reader.Alignment,
            ["weights"] = elements,
            ["tensor_bytes"] = bytes,
            ["bits_per_weight"] = Math.Round(bpw, 4),
            ["file_type"] = FileTypeName(reader),
            ["metadata"] = metadata,
            ["tensors"] = tensors,
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    private static JsonNode? ToNode(object value) => value switch
    {
        string s => s,
        bool b => b,
        float f => f,
        double d => d,
        byte or sbyte or short or ushort or int or uint or long or ulong => JsonValue.Create(Convert.ToDecimal(value, CultureInfo.InvariantCulture)),
        Array a => $"[array x {a.Length}]",
        _ => value.ToString(),
    };
}
