using System.Buffers.Binary;

namespace Ertas.Mistral.Tokenization;

/// <summary>Protocol Buffers wire types; groups (3, 4) are deprecated and never appear in sentencepiece files.</summary>
public enum ProtoWireType
{
    Varint = 0,
    Fixed64 = 1,
    LengthDelimited = 2,
    Fixed32 = 5,
}

/// <summary>
/// One field exactly as it sat on the wire: <see cref="Scalar"/> holds varint and fixed values,
/// <see cref="Payload"/> the bytes of a length-delimited one. Keeping fields raw is what lets a read-write round
/// trip reproduce fields this code does not understand.
/// </summary>
public readonly record struct ProtoField(int Number, ProtoWireType WireType, ulong Scalar, byte[]? Payload)
{
    public static ProtoField Varint(int number, ulong value) => new(number, ProtoWireType.Varint, value, null);

    /// <summary>Negative int32 values travel as 10-byte two's complement varints, as protobuf's C++ writer does.</summary>
    public static ProtoField Int32(int number, int value) => Varint(number, unchecked((ulong)(long)value));

    public static ProtoField Bool(int number, bool value) => Varint(number, value ? 1UL : 0UL);

    public static ProtoField Float(int number, float value) =>
        new(number, ProtoWireType.Fixed32, BitConverter.SingleToUInt32Bits(value), null);

    public static ProtoField Bytes(int number, byte[] payload) => new(number, ProtoWireType.LengthDelimited, 0, payload);

    public static ProtoField String(int number, string value) => Bytes(number, System.Text.Encoding.UTF8.GetBytes(value));
}

/// <summary>Thrown by the wire reader; callers turn it into an <c>ErtasException</c> that names the file.</summary>
internal sealed class ProtoFormatException(string message) : Exception(message);

/// <summary>A forward-only reader over one serialized message.</summary>
internal ref struct ProtoReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _position;

    public readonly bool AtEnd => _position >= _data.Length;
    public readonly int Position => _position;

    public ProtoField ReadField()
    {
        var start = _position;
        var key = ReadVarint();
        var number = key >> 3;
        if (number == 0 || number > 536_870_911)
            throw new ProtoFormatException($"invalid field number {number} at byte {start}");
        var wireType = (int)(key & 7);
        switch (wireType)
        {
            case (int)ProtoWireType.Varint:
                return new ProtoField((int)number, ProtoWireType.Varint, ReadVarint(), null);
            case (int)ProtoWireType.Fixed64:
                return new ProtoField((int)number, ProtoWireType.Fixed64, BinaryPrimitives.ReadUInt64LittleEndian(Take(8, number)), null);
            case (int)ProtoWireType.LengthDelimited:
                var length = ReadVarint();
                if (length > int.MaxValue)
                    throw new ProtoFormatException($"field {number} claims {length} bytes at byte {start}");
                return new ProtoField((int)number, ProtoWireType.LengthDelimited, 0, Take((int)length, number).ToArray());
            case (int)ProtoWireType.Fixed32:
                return new ProtoField((int)number, ProtoWireType.Fixed32, BinaryPrimitives.ReadUInt32LittleEndian(Take(4, number)), null);
            default:
                throw new ProtoFormatException($"field {number} has unsupported wire type {wireType} at byte {start}");
        }
    }

    private ReadOnlySpan<byte> Take(int count, ulong fieldNumber)
    {
        if (count > _data.Length - _position)
            throw new ProtoFormatException(
                $"field {fieldNumber} needs {count} bytes at byte {_position} but only {_data.Length - _position} remain");
        var slice = _data.Slice(_position, count);
        _position += count;
        return slice;
    }

    private ulong ReadVarint()
    {
        var start = _position;
        ulong value = 0;
        for (var shift = 0; shift < 70; shift += 7)
        {
            if (_position >= _data.Length)
                throw new ProtoFormatException($"truncated varint at byte {start}");
            var b = _data[_position++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
                return value;
        }
        throw new ProtoFormatException($"varint longer than 10 bytes at byte {start}");
    }
}

/// <summary>Serializes fields in the order given, with canonical (shortest) varints.</summary>
internal sealed class ProtoWriter
{
    private readonly MemoryStream _buffer = new();

    public void Write(ProtoField field)
    {
        WriteVarint(((ulong)field.Number << 3) | (ulong)field.WireType);
        Span<byte> fixedBytes = stackalloc byte[8];
        switch (field.WireType)
        {
            case ProtoWireType.Varint:
                WriteVarint(field.Scalar);
                break;
            case ProtoWireType.Fixed64:
                BinaryPrimitives.WriteUInt64LittleEndian(fixedBytes, field.Scalar);
                _buffer.Write(fixedBytes);
                break;
            case ProtoWireType.Fixed32:
                BinaryPrimitives.WriteUInt32LittleEndian(fixedBytes, (uint)field.Scalar);
                _buffer.Write(fixedBytes[..4]);
                break;
            case ProtoWireType.LengthDelimited:
                var payload = field.Payload ?? [];
                WriteVarint((ulong)payload.Length);
                _buffer.Write(payload);
                break;
            default:
                throw new InvalidOperationException($"unknown wire type {field.WireType}");
        }
    }

    public byte[] ToArray() => _buffer.ToArray();

    private void WriteVarint(ulong value)
    {
        while (value >= 0x80)
        {
            _buffer.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        _buffer.WriteByte((byte)value);
    }
}

/// <summary>
/// A message kept as its ordered list of raw fields, with typed lookups that apply the schema's defaults.
/// The last occurrence of a scalar field wins, as in protobuf.
/// </summary>
public abstract class ProtoMessage
{
    private readonly ProtoField[] _fields;

    protected ProtoMessage(IEnumerable<ProtoField> fields, IReadOnlyDictionary<int, ProtoWireType> knownWireTypes)
    {
        _fields = fields.ToArray();
        foreach (var field in _fields)
        {
            if (knownWireTypes.TryGetValue(field.Number, out var expected) && expected != field.WireType)
                throw new ProtoFormatException(
                    $"{GetType().Name} field {field.Number} has wire type {field.WireType}, expected {expected}");
        }
    }

    /// <summary>Every field in file order, including the ones this code has no property for.</summary>
    public IReadOnlyList<ProtoField> Fields => _fields;

    protected ulong? FindScalar(int number)
    {
        for (var i = _fields.Length - 1; i >= 0; i--)
            if (_fields[i].Number == number)
                return _fields[i].Scalar;
        return null;
    }

    protected int GetInt32(int number, int defaultValue) =>
        FindScalar(number) is { } raw ? unchecked((int)(long)raw) : defaultValue;

    protected bool GetBool(int number, bool defaultValue) =>
        FindScalar(number) is { } raw ? raw != 0 : defaultValue;

    protected string GetString(int number, string defaultValue)
    {
        for (var i = _fields.Length - 1; i >= 0; i--)
            if (_fields[i].Number == number)
                return SentencePieceModel.StrictUtf8.GetString(_fields[i].Payload ?? []);
        return defaultValue;
    }

    internal byte[] Serialize()
    {
        var writer = new ProtoWriter();
        foreach (var field in _fields)
            writer.Write(field);
        return writer.ToArray();
    }

    internal static List<ProtoField> ParseFields(ReadOnlySpan<byte> bytes)
    {
        var fields = new List<ProtoField>();
        var reader = new ProtoReader(bytes);
        while (!reader.AtEnd)
            fields.Add(reader.ReadField());
        return fields;
    }
}
