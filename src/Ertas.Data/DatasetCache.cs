using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Ertas.Core;

namespace Ertas.Data;

/// <summary>
/// The prepared-data cache. Its key is the SHA-256 of everything that shapes the rows: each data file's content
/// (never its name or time stamp, so a rename still hits and a touched-but-equal file is not re-prepared), the
/// tokenizer model bytes, the template name, every preparation setting and <see cref="FormatVersion"/>.
/// File layout, all little-endian: magic "ERTASDS\0", int32 version, 32-byte key, int32 sequence length, the
/// warnings, then the train and eval splits (int32 rows, int32 examples, then input ids, labels, position ids and
/// segment ids as rows*sequence_len int32 each), and the end marker "ENDS".
/// </summary>
public static class DatasetCache
{
    /// <summary>Bump on any change to preparation's output or this file's layout: old caches then miss.</summary>
    public const int FormatVersion = 1;

    private static ReadOnlySpan<byte> Magic => "ERTASDS\0"u8;
    private static ReadOnlySpan<byte> EndMarker => "ENDS"u8;

    public static byte[] ComputeKey(IReadOnlyList<byte[]> dataContents, ReadOnlySpan<byte> tokenizerBytes, PreparationOptions options)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        AppendField(hash, Encoding.UTF8.GetBytes($"ertas-dataset-cache v{FormatVersion}"));
        AppendField(hash, tokenizerBytes);
        AppendField(hash, Encoding.UTF8.GetBytes(options.CanonicalText()));
        AppendField(hash, BitConverter.GetBytes(dataContents.Count));
        foreach (var content in dataContents)
            AppendField(hash, content);
        return hash.GetHashAndReset();
    }

    /// <summary>Length-prefixed, so no two different inputs concatenate to the same stream.</summary>
    private static void AppendField(IncrementalHash hash, ReadOnlySpan<byte> field)
    {
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, field.Length);
        hash.AppendData(length);
        hash.AppendData(field);
    }

    public static string PathFor(string cacheDir, byte[] key) =>
        Path.Combine(cacheDir, $"dataset-{Convert.ToHexString(key).ToLowerInvariant()}.ertasds");

    internal static void Write(string path, byte[] key, PreparedDataset dataset, IReadOnlyList<string> dataFiles)
    {
        AtomicFile.Write(path, stream =>
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(Magic);
            writer.Write(FormatVersion);
            writer.Write(key);
            writer.Write(dataset.SequenceLength);
            writer.Write(dataset.Warnings.Count);
            foreach (var warning in dataset.Warnings)
            {
                var fileIndex = IndexOf(dataFiles, warning.File);
                writer.Write((int)warning.Severity);
                writer.Write((int)warning.Code);
                writer.Write(fileIndex);
                WriteString(writer, fileIndex < 0 ? warning.File : "");
                writer.Write(warning.Line);
                writer.Write(warning.Column);
                WriteString(writer, warning.Message);
            }
            WriteSplit(writer, dataset.Train);
            WriteSplit(writer, dataset.Eval);
            writer.Write(EndMarker);
        });
    }

    /// <summary>
    /// Loads a cache file, or returns null (with the reason in <paramref name="problem"/>) when it is unreadable,
    /// so the caller prepares again and overwrites it. Warnings get the names of today's <paramref name="dataFiles"/>.
    /// </summary>
    internal static PreparedDataset? TryRead(string path, byte[] key, IReadOnlyList<string> dataFiles, out string? problem)
    {
        problem = null;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            using var reader = new BinaryReader(stream, Encoding.UTF8);
            if (!reader.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic))
                return Fail("not an Ertas dataset cache", out problem);
            if (reader.ReadInt32() != FormatVersion)
                return Fail("written by another cache format version", out problem);
            if (!reader.ReadBytes(key.Length).AsSpan().SequenceEqual(key))
                return Fail("its key does not match its name", out problem);
            var sequenceLength = reader.ReadInt32();
            var warningCount = reader.ReadInt32();
            if (sequenceLength < 2 || warningCount < 0)
                return Fail("corrupt header", out problem);
            var warnings = new List<DatasetDiagnostic>(Math.Min(warningCount, 1 << 16));
            for (var i = 0; i < warningCount; i++)
            {
                var severity = (DiagnosticSeverity)reader.ReadInt32();
                var code = (ErrorCode)reader.ReadInt32();
                var fileIndex = reader.ReadInt32();
                var storedName = ReadString(reader);
                var file = fileIndex >= 0 && fileIndex < dataFiles.Count ? dataFiles[fileIndex] : storedName;
                var line = reader.ReadInt32();
                var column = reader.ReadInt32();
                warnings.Add(new DatasetDiagnostic(severity, code, file, line, column, ReadString(reader)));
            }
            var train = ReadSplit(reader, sequenceLength);
            var eval = ReadSplit(reader, sequenceLength);
            if (!reader.ReadBytes(EndMarker.Length).AsSpan().SequenceEqual(EndMarker) || stream.Position != stream.Length)
                return Fail("truncated or has trailing bytes", out problem);
            return new PreparedDataset(sequenceLength, train, eval, warnings, Convert.ToHexString(key).ToLowerInvariant(), path, LoadedFromCache: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or FormatException or OverflowException)
        {
            return Fail($"unreadable: {e.Message}", out problem);
        }
    }

    private static PreparedDataset? Fail(string why, out string? problem)
    {
        problem = why;
        return null;
    }

    private static int IndexOf(IReadOnlyList<string> files, string file)
    {
        for (var i = 0; i < files.Count; i++)
            if (files[i] == file)
                return i;
        return -1;
    }

    private static void WriteString(BinaryWriter writer, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        writer.Write(bytes.Length);
        writer.Write(bytes);
    }

    private static string ReadString(BinaryReader reader)
    {
        var length = reader.ReadInt32();
        if (length < 0 || length > reader.BaseStream.Length - reader.BaseStream.Position)
            throw new FormatException("string length out of range");
        return Encoding.UTF8.GetString(reader.ReadBytes(length));
    }

    private static void WriteSplit(BinaryWriter writer, PackedSplit split)
    {
        writer.Write(split.RowCount);
        writer.Write(split.ExampleCount);
        WriteInts(writer, split.InputIds);
        WriteInts(writer, split.Labels);
        WriteInts(writer, split.PositionIds);
        WriteInts(writer, split.SegmentIds);
    }

    private static PackedSplit ReadSplit(BinaryReader reader, int sequenceLength)
    {
        var rows = reader.ReadInt32();
        var examples = reader.ReadInt32();
        var cells = (long)rows * sequenceLength;
        if (rows < 0 || examples < 0 || cells * 16 > reader.BaseStream.Length - reader.BaseStream.Position)
            throw new FormatException("split size out of range");
        return new PackedSplit(sequenceLength, rows, examples,
            ReadInts(reader, (int)cells), ReadInts(reader, (int)cells), ReadInts(reader, (int)cells), ReadInts(reader, (int)cells));
    }

    private static void WriteInts(BinaryWriter writer, ReadOnlySpan<int> values)
    {
        if (BitConverter.IsLittleEndian)
        {
            writer.Write(MemoryMarshal.AsBytes(values));
            return;
        }
        Span<byte> buffer = stackalloc byte[4];
        foreach (var value in values)
        {
            BinaryPrimitives.WriteInt32LittleEndian(buffer, value);
            writer.Write(buffer);
        }
    }

    private static int[] ReadInts(BinaryReader reader, int count)
    {
        var values = new int[count];
        var bytes = MemoryMarshal.AsBytes(values.AsSpan());
        reader.BaseStream.ReadExactly(bytes);
        if (!BitConverter.IsLittleEndian)
            BinaryPrimitives.ReverseEndianness(values, values);
        return values;
    }
}
