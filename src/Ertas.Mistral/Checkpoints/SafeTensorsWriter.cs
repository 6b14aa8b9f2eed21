using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using Ertas.Core;

namespace Ertas.Mistral.Checkpoints;

/// <summary>
/// Streams a safetensors file: the header is computed up front from names, dtypes and shapes (data offsets in
/// entry order, JSON padded with spaces to a multiple of 8 as the reference writer does, so the data section is
/// 8-byte aligned), then each tensor is produced by its fill callback and written. Peak memory is one tensor.
/// The same entries always give the same bytes; the file appears only when complete (<see cref="AtomicFile"/>).
/// </summary>
public static class SafeTensorsWriter
{
    private static readonly JsonWriterOptions HeaderJson = new()
    {
        Indented = false,
        // serde_json (the reference writer) leaves non-ASCII and '+' alone; so do we.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void Write(string path, IReadOnlyList<SafeTensorEntry> entries, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = BuildHeader(entries, metadata, path);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            WriteData(stream, entries);
        });
    }

    /// <summary>The exact header bytes (JSON plus padding, without the length prefix) <see cref="Write"/> would emit.</summary>
    public static byte[] BuildHeader(IReadOnlyList<SafeTensorEntry> entries, IReadOnlyDictionary<string, string>? metadata = null, string? path = null)
    {
        Validate(entries, path);
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, HeaderJson))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                // Sorted so that dictionary iteration order cannot change the bytes.
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                    json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var entry in entries)
            {
                json.WriteStartObject(entry.Name);
                json.WriteString("dtype", entry.DType.SafetensorsName());
                json.WriteStartArray("shape");
                foreach (var d in entry.Shape)
                    json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += entry.ByteLength;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        var padding = (int)((8 - buffer.Length % 8) % 8);
        for (var i = 0; i < padding; i++)
            buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    private static void WriteData(Stream stream, IReadOnlyList<SafeTensorEntry> entries)
    {
        var largest = entries.Count == 0 ? 0 : entries.Max(e => e.ByteLength);
        var buffer = GC.AllocateUninitializedArray<byte>((int)largest);
        foreach (var entry in entries)
        {
            var bytes = buffer.AsSpan(0, (int)entry.ByteLength);
            // Zeroed so that a fill that skips bytes still gives deterministic output.
            bytes.Clear();
            entry.Fill(bytes);
            stream.Write(bytes);
        }
    }

    private static void Validate(IReadOnlyList<SafeTensorEntry> entries, string? path)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in entries)
        {
            if (string.IsNullOrEmpty(entry.Name) || entry.Name == "__metadata__")
                throw new ArgumentException($"'{entry.Name}' cannot name a tensor", nameof(entries));
            if (!names.Add(entry.Name))
                throw new ErtasException(ErrorCode.CheckpointDuplicateTensor, $"tensor '{entry.Name}' is written twice", path);
            if (entry.Shape.Any(d => d < 0))
                throw new ArgumentException($"tensor '{entry.Name}' has a negative dimension in {SafeTensorInfo.FormatShape(entry.Shape)}", nameof(entries));
            if (entry.ByteLength > Array.MaxLength)
                throw new ArgumentException($"tensor '{entry.Name}' is {entry.ByteLength} bytes; tensors above {Array.MaxLength} bytes cannot be filled through one span", nameof(entries));
        }
    }
}
