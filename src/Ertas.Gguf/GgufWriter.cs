using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;
using Ertas.Core;

namespace Ertas.Gguf;

/// <summary>Where a <see cref="GgufWriter"/> is in the file; each step may only follow the one before it.</summary>
public enum GgufWriterState
{
    /// <summary>Nothing written yet: metadata and tensor infos may be added.</summary>
    Empty,
    /// <summary>Header and key/values are on the stream.</summary>
    MetadataWritten,
    /// <summary>Tensor infos and the padding before the data section are on the stream.</summary>
    TensorInfosWritten,
    /// <summary>Some, not all, tensors' data is on the stream.</summary>
    WritingTensorData,
    /// <summary>Everything is written.</summary>
    Finished,
}

/// <summary>
/// Streams a GGUF file (v3, little-endian) like gguf-py's <c>GGUFWriter</c>: add metadata and tensor infos, then
/// <see cref="WriteMetadata"/>, <see cref="WriteTensorInfos"/>, one <see cref="WriteTensorData"/> per tensor in the
/// order they were added, and <see cref="Finish"/>. Only one tensor's data is ever held, by the caller, so exports
/// need memory for the largest tensor, not the model. Writes to any stream; for files use
/// <see cref="AtomicFile.Write"/> so a failed export leaves nothing behind.
/// </summary>
public sealed class GgufWriter
{
    private readonly Stream _output;
    private readonly List<GgufKeyValue> _metadata = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly List<PlannedTensor> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);
    private long _position;
    private long _dataStart;
    private long _nextDataOffset;
    private int _nextTensor;

    private sealed record PlannedTensor(string Name, GgmlType Type, long[] Dimensions, long Offset, long ByteSize);

    public GgufWriter(Stream output)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("GgufWriter writes tensor data as in memory and needs a little-endian machine");
        ArgumentNullException.ThrowIfNull(output);
        if (!output.CanWrite)
            throw new ArgumentException("the GGUF output stream must be writable", nameof(output));
        _output = output;
    }

    public GgufWriterState State { get; private set; } = GgufWriterState.Empty;

    /// <summary><c>general.alignment</c> when added, otherwise the spec's default of 32.</summary>
    public uint Alignment { get; private set; } = GgufConstants.DefaultAlignment;

    public IReadOnlyList<GgufKeyValue> Metadata => _metadata;

    public int TensorCount => _tensors.Count;

    /// <summary>Bytes of tensor data declared so far, padding between tensors included.</summary>
    public long TensorDataBytes => _nextDataOffset;

    // Typed adders: the GGUF value type follows from the method, as gguf-py's add_uint32 and friends.
    public void AddUInt8(string key, byte value) => Add(key, GgufValueType.UInt8, value);
    public void AddInt8(string key, sbyte value) => Add(key, GgufValueType.Int8, value);
    public void AddUInt16(string key, ushort value) => Add(key, GgufValueType.UInt16, value);
    public void AddInt16(string key, short value) => Add(key, GgufValueType.Int16, value);
    public void AddUInt32(string key, uint value) => Add(key, GgufValueType.UInt32, value);
    public void AddInt32(string key, int value) => Add(key, GgufValueType.Int32, value);
    public void AddFloat32(string key, float value) => Add(key, GgufValueType.Float32, value);
    public void AddUInt64(string key, ulong value) => Add(key, GgufValueType.UInt64, value);
    public void AddInt64(string key, long value) => Add(key, GgufValueType.Int64, value);
    public void AddFloat64(string key, double value) => Add(key, GgufValueType.Float64, value);
    public void AddBool(string key, bool value) => Add(key, GgufValueType.Bool, value);
    public void AddString(string key, string value) => Add(key, GgufValueType.String, value ?? throw new ArgumentNullException(nameof(value)));
    public void AddArray(string key, string[] values) => AddArray<string>(key, values);
    public void AddArray(string key, float[] values) => AddArray<float>(key, values);
    public void AddArray(string key, int[] values) => AddArray<int>(key, values);

    /// <summary>An array of any scalar GGUF type (byte, sbyte, ..., double, bool, string).</summary>
    public void AddArray<T>(string key, IReadOnlyList<T> values) where T : notnull
    {
        ArgumentNullException.ThrowIfNull(values);
        if (!GgufValues.TryTypeOf(typeof(T), out _))
            throw new ArgumentException($"key '{key}': a {typeof(T).Name}[] cannot be stored as a GGUF array", nameof(values));
        Add(key, GgufValueType.Array, values.ToArray());
    }

    /// <summary>Adds an entry as read by <see cref="GgufReader"/> (any type, nested arrays included).</summary>
    public void AddKeyValue(GgufKeyValue entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        Add(entry.Key, entry.Type, entry.Value);
    }

    private void Add(string key, GgufValueType type, object value)
    {
        Expect(GgufWriterState.Empty, $"add key '{key}'");
        if (string.IsNullOrEmpty(key))
            throw new ArgumentException("a GGUF key must not be empty", nameof(key));
        if (Encoding.UTF8.GetByteCount(key) > ushort.MaxValue)
            throw new ArgumentException($"GGUF key '{key[..40]}...' is longer than 65535 bytes", nameof(key));
        var actual = GgufValues.TypeOf(value);
        if (actual != type)
            throw new ArgumentException($"key '{key}': expected a value of type {type}, got {actual} ({value.GetType().Name})", nameof(value));
        if (type == GgufValueType.Array)
            CheckArray(key, (Array)value);
        if (key == Keys.General.Alignment)
        {
            if (value is not uint alignment)
                throw new ArgumentException($"key '{key}' must be a UInt32, got {type}", nameof(value));
            if (alignment == 0 || !BitOperations.IsPow2(alignment))
                throw new ArgumentException($"key '{key}' must be a power of two, got {alignment}", nameof(value));
            if (_tensors.Count > 0)
                throw new InvalidOperationException($"expected '{key}' before the first tensor info (offsets depend on it), got it after {_tensors.Count} tensor infos");
        }
        if (!_keys.Add(key))
            throw new ErtasException(ErrorCode.GgufDuplicateKey, $"duplicate GGUF key '{key}': each key may appear once");
        if (key == Keys.General.Alignment)
            Alignment = (uint)value;
        _metadata.Add(new GgufKeyValue(key, type, value));
    }

    private static void CheckArray(string key, Array array)
    {
        var element = GgufValues.ElementTypeOf(array);
        if (element == GgufValueType.Array)
            foreach (var item in (object[])array)
            {
                if (item is not Array inner)
                    throw new ArgumentException($"key '{key}': an array of arrays may only hold arrays, got {item?.GetType().Name ?? "null"}");
                CheckArray(key, inner);
            }
        else if (element == GgufValueType.String && ((string[])array).Any(s => s is null))
            throw new ArgumentException($"key '{key}': string arrays must not hold null");
    }

    /// <summary>
    /// Declares a tensor. <paramref name="shape"/> is row-major, outermost first, as PyTorch and safetensors give it
    /// ([rows, cols] for a weight); the file stores ggml's order (innermost first), so it is reversed here, as
    /// gguf-py does. The innermost dimension must be a whole number of the type's blocks.
    /// </summary>
    public void AddTensorInfo(string name, GgmlType type, ReadOnlySpan<long> shape)
    {
        Expect(GgufWriterState.Empty, $"add tensor info '{name}'");
        if (string.IsNullOrEmpty(name))
            throw new ArgumentException("a tensor name must not be empty", nameof(name));
        if (Encoding.UTF8.GetByteCount(name) >= 64)
            throw new ArgumentException($"tensor name '{name}' is longer than ggml's 63 bytes", nameof(name));
        if (!GgmlTypes.IsKnown(type))
            throw new ArgumentException($"tensor '{name}': unknown ggml type {(uint)type}", nameof(type));
        if (shape.Length is 0 or > GgufConstants.MaxDimensions)
            throw new ArgumentException($"tensor '{name}' must have 1 to {GgufConstants.MaxDimensions} dimensions, got {shape.Length}", nameof(shape));
        long elements = 1;
        foreach (var dim in shape)
        {
            if (dim < 0)
                throw new ArgumentException($"tensor '{name}' has a negative dimension in [{string.Join(", ", shape.ToArray())}]", nameof(shape));
            elements = checked(elements * dim);
        }
        var info = type.Info();
        if (shape[^1] % info.BlockSize != 0)
            throw new ArgumentException(
                $"tensor '{name}': rows of {shape[^1]} elements are not a whole number of {info.Name} blocks of {info.BlockSize}", nameof(shape));
        if (!_tensorNames.Add(name))
            throw new ErtasException(ErrorCode.GgufDuplicateTensor, $"duplicate GGUF tensor '{name}': each tensor may appear once");
        var dims = shape.ToArray();
        Array.Reverse(dims);
        var bytes = info.ByteSize(elements);
        _tensors.Add(new PlannedTensor(name, type, dims, _nextDataOffset, bytes));
        _nextDataOffset = AlignUp(_nextDataOffset + bytes, Alignment);
    }

    /// <summary>Writes the header (magic, version, counts) and every key/value.</summary>
    public void WriteMetadata()
    {
        Expect(GgufWriterState.Empty, "write the header and metadata");
        using var buffer = new MemoryStream();
        using (var w = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
            SerializeMetadata(w);
        Emit(buffer);
        State = GgufWriterState.MetadataWritten;
    }

    /// <summary>Writes every tensor info and pads the file to where tensor data starts.</summary>
    public void WriteTensorInfos()
    {
        Expect(GgufWriterState.MetadataWritten, "write tensor infos");
        using var buffer = new MemoryStream();
        using (var w = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
            SerializeTensorInfos(w);
        Emit(buffer);
        _dataStart = AlignUp(_position, Alignment);
        WriteZeros(_dataStart - _position);
        State = _tensors.Count == 0 ? GgufWriterState.WritingTensorData : GgufWriterState.TensorInfosWritten;
    }

    /// <summary>
    /// Writes the data of the next declared tensor (exactly its byte size, in ggml's layout) and the zero padding
    /// after it.
    /// </summary>
    public void WriteTensorData(string name, ReadOnlySpan<byte> data)
    {
        if (State != GgufWriterState.WritingTensorData)
            Expect(GgufWriterState.TensorInfosWritten, $"write data of tensor '{name}'");
        if (_nextTensor >= _tensors.Count)
            throw new InvalidOperationException($"expected no more tensor data (all {_tensors.Count} tensors are written), got '{name}'");
        var t = _tensors[_nextTensor];
        if (t.Name != name)
            throw new InvalidOperationException(
                $"expected data of tensor '{t.Name}' (tensor {_nextTensor + 1} of {_tensors.Count}, in declaration order), got '{name}'");
        if (data.Length != t.ByteSize)
            throw new ArgumentException($"tensor '{name}' was declared as {t.ByteSize} bytes of {t.Type}, got {data.Length} bytes", nameof(data));
        System.Diagnostics.Debug.Assert(_position == _dataStart + t.Offset);
        _output.Write(data);
        _position += data.Length;
        WriteZeros(AlignUp(_position - _dataStart, Alignment) - (_position - _dataStart));
        _nextTensor++;
        State = GgufWriterState.WritingTensorData;
    }

    /// <summary>Float32 data of the next tensor (which must be declared as <see cref="GgmlType.F32"/>).</summary>
    public void WriteTensorData(string name, ReadOnlySpan<float> data) =>
        WriteTensorData(name, MemoryMarshal.AsBytes(data));

    /// <summary>Checks every declared tensor was written and flushes.</summary>
    public void Finish()
    {
        if (State != GgufWriterState.WritingTensorData)
            Expect(GgufWriterState.WritingTensorData, "finish the file");
        if (_nextTensor != _tensors.Count)
            throw new InvalidOperationException(
                $"expected data for all {_tensors.Count} tensors before finishing, got {_nextTensor} (next: '{_tensors[_nextTensor].Name}')");
        _output.Flush();
        State = GgufWriterState.Finished;
    }

    /// <summary>
    /// The size the finished file will have, from what has been declared so far: header and key/values, tensor infos,
    /// the padding to the data section, and every tensor's data padded to the alignment (the last one too). Measured
    /// by serializing the header exactly as <see cref="WriteMetadata"/> does, so it cannot drift from the writer.
    /// </summary>
    public long PlannedFileSize()
    {
        using var counter = new CountingStream();
        using (var w = new BinaryWriter(counter, Encoding.UTF8, leaveOpen: true))
        {
            SerializeMetadata(w);
            SerializeTensorInfos(w);
        }
        return AlignUp(counter.Length, Alignment) + _nextDataOffset;
    }

    private void SerializeMetadata(BinaryWriter w)
    {
        w.Write(GgufConstants.Magic);
        w.Write(GgufConstants.Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var kv in _metadata)
        {
            WriteString(w, kv.Key);
            w.Write((uint)kv.Type);
            WriteValue(w, kv.Type, kv.Value);
        }
    }

    private void SerializeTensorInfos(BinaryWriter w)
    {
        foreach (var t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dimensions.Length);
            foreach (var d in t.Dimensions)
                w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)t.Offset);
        }
    }

    /// <summary>A write-only stream that keeps nothing but the count of bytes written to it.</summary>
    private sealed class CountingStream : Stream
    {
        private long _length;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _length;
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override void Write(byte[] buffer, int offset, int count) => _length += count;
        public override void Write(ReadOnlySpan<byte> buffer) => _length += buffer.Length;
        public override void WriteByte(byte value) => _length++;
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private void Expect(GgufWriterState expected, string action)
    {
        if (State != expected)
            throw new InvalidOperationException($"cannot {action}: expected the GGUF writer to be {expected}, got {State}");
    }

    private void Emit(MemoryStream buffer)
    {
        buffer.Position = 0;
        buffer.CopyTo(_output);
        _position += buffer.Length;
    }

    private void WriteZeros(long count)
    {
        Span<byte> zeros = stackalloc byte[256];
        zeros.Clear();
        while (count > 0)
        {
            var n = (int)Math.Min(count, zeros.Length);
            _output.Write(zeros[..n]);
            _position += n;
            count -= n;
        }
    }

    internal static long AlignUp(long value, uint alignment) => (value + alignment - 1) / alignment * alignment;

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)value); break;
            case GgufValueType.Int8: w.Write((sbyte)value); break;
            case GgufValueType.UInt16: w.Write((ushort)value); break;
            case GgufValueType.Int16: w.Write((short)value); break;
            case GgufValueType.UInt32: w.Write((uint)value); break;
            case GgufValueType.Int32: w.Write((int)value); break;
            case GgufValueType.Float32: w.Write((float)value); break;
            case GgufValueType.Bool: w.Write((byte)((bool)value ? 1 : 0)); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.UInt64: w.Write((ulong)value); break;
            case GgufValueType.Int64: w.Write((long)value); break;
            case GgufValueType.Float64: w.Write((double)value); break;
            case GgufValueType.Array:
                var array = (Array)value;
                var element = GgufValues.ElementTypeOf(array);
                w.Write((uint)element);
                w.Write((ulong)array.Length);
                foreach (var item in array)
                    WriteValue(w, element, item!);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), $"unknown GGUF value type {(uint)type}");
        }
    }
}
