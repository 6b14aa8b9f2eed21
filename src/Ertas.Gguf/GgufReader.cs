using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;
using Ertas.Core;
using Microsoft.Win32.SafeHandles;

namespace Ertas.Gguf;

/// <summary>A tensor as a GGUF file describes it.</summary>
/// <param name="Dimensions">ggml order, innermost first (as stored in the file).</param>
/// <param name="DataOffset">Absolute byte offset of the data in the file.</param>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Dimensions, long DataOffset, long ByteSize)
{
    /// <summary>Row-major shape, outermost first (PyTorch order): <see cref="Dimensions"/> reversed.</summary>
    public long[] Shape => Dimensions.Reverse().ToArray();

    public long ElementCount => Dimensions.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => $"{Name} {Type} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// Reads a GGUF file (v2/v3, little-endian) through a memory map, validating everything before anyone trusts it:
/// magic, version, every length against the bytes left, value and tensor types, duplicate keys and tensors,
/// alignment, and that tensor data lies inside the file without overlapping. Bad input always ends in an
/// <see cref="ErtasException"/> (GgufBadMagic, GgufUnsupportedVersion, GgufTruncated, GgufCorrupt, ...), never an
/// index or overflow exception. Spans returned by <see cref="GetTensorBytes"/> are valid until disposal.
/// </summary>
public sealed unsafe class GgufReader : IDisposable
{
    // Counts and lengths beyond these are corruption, not truncation: no real file gets near them.
    private const long MaxCount = int.MaxValue;
    private const int MaxArrayNesting = 8;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly SafeFileHandle? _handle;
    private GCHandle _pin;
    private byte* _base;
    private readonly long _length;
    private readonly List<GgufKeyValue> _metadata = [];
    private readonly Dictionary<string, GgufKeyValue> _byKey = new(StringComparer.Ordinal);
    private readonly List<GgufTensorInfo> _tensors = [];
    private readonly Dictionary<string, GgufTensorInfo> _byName = new(StringComparer.Ordinal);
    private long _position;

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    public GgufReader(string path)
    {
        Path = path;
        if (!File.Exists(path))
            throw new ErtasException(ErrorCode.FileNotFound, $"GGUF file '{path}' does not exist", path);
        _length = new FileInfo(path).Length;
        try
        {
            if (_length > 0)
            {
                // A second handle for ReadTensorRange's positional reads (thread-safe: no shared file position).
                _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
                _map = MemoryMappedFile.CreateFromFile(
                    new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read),
                    mapName: null, capacity: 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
                _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                byte* pointer = null;
                _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
                _base = pointer + _view.PointerOffset;
            }
            Parse();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private GgufReader(byte[] bytes, string name)
    {
        Path = name;
        _length = bytes.Length;
        _pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        _base = (byte*)_pin.AddrOfPinnedObject();
        try
        {
            Parse();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Reads a GGUF image held in memory; <paramref name="name"/> appears in error messages.</summary>
    public static GgufReader FromBytes(byte[] bytes, string name = "<memory>") => new(bytes, name);

    public string Path { get; }
    public long FileLength => _length;
    public uint Version { get; private set; }
    public uint Alignment { get; private set; } = GgufConstants.DefaultAlignment;

    /// <summary>Absolute offset of the tensor data section.</summary>
    public long DataStart { get; private set; }

    /// <summary>Key/values in file order.</summary>
    public IReadOnlyList<GgufKeyValue> Metadata => _metadata;

    /// <summary>Tensors in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;

    public string? Architecture => TryGet(Keys.General.Architecture, out var kv) && kv.Value is string s ? s : null;

    public bool ContainsKey(string key) => _byKey.ContainsKey(key);

    public bool TryGet(string key, out GgufKeyValue entry) => _byKey.TryGetValue(key, out entry!);

    public GgufKeyValue Get(string key) =>
        _byKey.TryGetValue(key, out var entry) ? entry
            : throw new ErtasException(ErrorCode.GgufMissingKey, $"GGUF metadata has no key '{key}'", Path);

    public string GetString(string key) => GetScalar<string>(key, GgufValueType.String);
    public byte GetUInt8(string key) => GetScalar<byte>(key, GgufValueType.UInt8);
    public sbyte GetInt8(string key) => GetScalar<sbyte>(key, GgufValueType.Int8);
    public ushort GetUInt16(string key) => GetScalar<ushort>(key, GgufValueType.UInt16);
    public short GetInt16(string key) => GetScalar<short>(key, GgufValueType.Int16);
    public uint GetUInt32(string key) => GetScalar<uint>(key, GgufValueType.UInt32);
    public int GetInt32(string key) => GetScalar<int>(key, GgufValueType.Int32);
    public float GetFloat32(string key) => GetScalar<float>(key, GgufValueType.Float32);
    public bool GetBool(string key) => GetScalar<bool>(key, GgufValueType.Bool);
    public ulong GetUInt64(string key) => GetScalar<ulong>(key, GgufValueType.UInt64);
    public long GetInt64(string key) => GetScalar<long>(key, GgufValueType.Int64);
    public double GetFloat64(string key) => GetScalar<double>(key, GgufValueType.Float64);

    /// <summary>An array value whose elements are <typeparamref name="T"/> (e.g. <c>GetArray&lt;string&gt;</c>).</summary>
    public T[] GetArray<T>(string key)
    {
        var entry = Get(key);
        if (entry.Value is T[] array)
            return array;
        var expected = GgufValues.TryTypeOf(typeof(T), out var t) ? t.ToString() : typeof(T).Name;
        var actual = entry.ElementType is { } e ? $"an array of {e}" : entry.Type.ToString();
        throw new ErtasException(ErrorCode.GgufCorrupt, $"GGUF key '{key}' is {actual}, expected an array of {expected}", Path);
    }

    private T GetScalar<T>(string key, GgufValueType expected)
    {
        var entry = Get(key);
        if (entry.Type == expected && entry.Value is T value)
            return value;
        throw new ErtasException(ErrorCode.GgufCorrupt, $"GGUF key '{key}' is {entry.Type}, expected {expected}", Path);
    }

    public bool TryGetTensor(string name, out GgufTensorInfo tensor) => _byName.TryGetValue(name, out tensor!);

    public GgufTensorInfo GetTensor(string name) =>
        _byName.TryGetValue(name, out var t) ? t
            : throw new ErtasException(ErrorCode.GgufMissingTensor, $"GGUF file has no tensor '{name}'", Path);

    /// <summary>The tensor's raw bytes in the mapped file (no copy); valid until this reader is disposed.</summary>
    public ReadOnlySpan<byte> GetTensorBytes(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_base == null && _length > 0, this);
        if (!_byName.TryGetValue(tensor.Name, out var own) || own != tensor)
            throw new ArgumentException($"tensor '{tensor.Name}' does not belong to '{Path}'", nameof(tensor));
        if (tensor.ByteSize > int.MaxValue)
            throw new NotSupportedException($"tensor '{tensor.Name}' has {tensor.ByteSize} bytes, more than one span can address; use CopyTensorBytes in parts");
        return new ReadOnlySpan<byte>(_base + tensor.DataOffset, (int)tensor.ByteSize);
    }

    public void CopyTensorBytes(GgufTensorInfo tensor, Span<byte> destination) => GetTensorBytes(tensor).CopyTo(destination);

    public byte[] ReadTensorBytes(GgufTensorInfo tensor) => GetTensorBytes(tensor).ToArray();

    /// <summary>
    /// Copies <c>destination.Length</c> bytes of <paramref name="tensor"/>, from <paramref name="offset"/> bytes into
    /// it, with positional reads of the file instead of through the map. Pages touched through a map count in this
    /// process's resident set until it is unmapped (a 14 GB model read through the map ends with a 14 GB RSS);
    /// bytes read this way only pass through the page cache, which the kernel can drop. Safe from several threads.
    /// </summary>
    public void ReadTensorRange(GgufTensorInfo tensor, long offset, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_base == null && _length > 0, this);
        if (!_byName.TryGetValue(tensor.Name, out var own) || own != tensor)
            throw new ArgumentException($"tensor '{tensor.Name}' does not belong to '{Path}'", nameof(tensor));
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (offset + destination.Length > tensor.ByteSize)
            throw new ArgumentOutOfRangeException(nameof(destination),
                $"bytes {offset}..{offset + destination.Length} lie outside tensor '{tensor.Name}' ({tensor.ByteSize} bytes)");
        var position = tensor.DataOffset + offset;
        if (_handle is null)
        {
            new ReadOnlySpan<byte>(_base + position, destination.Length).CopyTo(destination);
            return;
        }
        while (destination.Length > 0)
        {
            var read = RandomAccess.Read(_handle, destination, position);
            if (read == 0)
                throw new ErtasException(ErrorCode.GgufTruncated,
                    $"tensor '{tensor.Name}' ends at byte {tensor.DataOffset + tensor.ByteSize} but the file now ends at {position}: it was truncated while being read", Path);
            destination = destination[read..];
            position += read;
        }
    }

    public void Dispose()
    {
        if (_view is not null && _base != null)
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _base = null;
        _view?.Dispose();
        _map?.Dispose();
        _handle?.Dispose();
        if (_pin.IsAllocated)
            _pin.Free();
    }

    // ---- parsing ----

    private void Parse()
    {
        try
        {
            ParseHeaderAndMetadata(out var tensorCount);
            ParseTensorInfos(tensorCount);
            CheckTensorData();
        }
        catch (OverflowException)
        {
            throw Corrupt($"a size or offset near byte {_position} overflows: the file is corrupt");
        }
    }

    private void ParseHeaderAndMetadata(out long tensorCount)
    {
        ReadOnlySpan<byte> magic = "GGUF"u8;
        if (_length < 4)
        {
            var present = new ReadOnlySpan<byte>(_base, (int)_length);
            if (magic.StartsWith(present))
                throw new ErtasException(ErrorCode.GgufTruncated, $"file is {_length} bytes, too short to be GGUF", Path);
            throw new ErtasException(ErrorCode.GgufBadMagic, "not a GGUF file: it does not start with 'GGUF'", Path);
        }
        var first = new ReadOnlySpan<byte>(_base, 4);
        if (!first.SequenceEqual(magic))
            throw new ErtasException(ErrorCode.GgufBadMagic,
                $"not a GGUF file: it starts with {Convert.ToHexString(first)} ('{Printable(first)}'), expected 'GGUF'", Path);
        _position = 4;
        Version = ReadUInt32("the version");
        if (BinaryPrimitives.ReverseEndianness(Version) is 2 or 3)
            throw new ErtasException(ErrorCode.GgufUnsupportedVersion, "big-endian GGUF files are not supported", Path);
        if (Version < GgufConstants.MinimumReadableVersion || Version > GgufConstants.Version)
            throw new ErtasException(ErrorCode.GgufUnsupportedVersion,
                $"GGUF version {Version} is not supported: this reader reads versions {GgufConstants.MinimumReadableVersion} and {GgufConstants.Version}", Path);
        tensorCount = ReadCount("the tensor count", minBytesEach: 8 + 4 + 8 + 4 + 8);
        var kvCount = ReadCount("the key/value count", minBytesEach: 8 + 4 + 1);
        for (long i = 0; i < kvCount; i++)
        {
            var keyAt = _position;
            var key = ReadString($"the key of key/value {i + 1} of {kvCount}");
            var typeRaw = ReadUInt32($"the type of key '{key}'");
            var type = (GgufValueType)typeRaw;
            if (!GgufValues.IsDefined(type))
                throw Corrupt($"key '{key}' has unknown value type {typeRaw}");
            var value = ReadValue(type, key, depth: 0);
            if (_byKey.ContainsKey(key))
                throw new ErtasException(ErrorCode.GgufDuplicateKey, $"GGUF key '{key}' appears twice (again at byte {keyAt})", Path);
            var entry = new GgufKeyValue(key, type, value);
            _metadata.Add(entry);
            _byKey.Add(key, entry);
        }
        if (_byKey.TryGetValue(Keys.General.Alignment, out var alignment))
        {
            if (alignment.Value is not uint a)
                throw Corrupt($"'{Keys.General.Alignment}' is {alignment.Type}, expected UInt32");
            if (a == 0 || !BitOperations.IsPow2(a))
                throw Corrupt($"'{Keys.General.Alignment}' is {a}, expected a power of two");
            Alignment = a;
        }
    }

    private void ParseTensorInfos(long tensorCount)
    {
        for (long i = 0; i < tensorCount; i++)
        {
            var name = ReadString($"the name of tensor {i + 1} of {tensorCount}");
            if (Encoding.UTF8.GetByteCount(name) >= 64)
                throw Corrupt($"tensor name '{name[..Math.Min(name.Length, 80)]}' is longer than ggml's 63 bytes");
            var nDims = ReadUInt32($"the dimension count of tensor '{name}'");
            if (nDims is 0 or > GgufConstants.MaxDimensions)
                throw Corrupt($"tensor '{name}' has {nDims} dimensions, expected 1 to {GgufConstants.MaxDimensions}");
            var dims = new long[nDims];
            long elements = 1;
            for (var d = 0; d < nDims; d++)
            {
                var dim = ReadUInt64($"dimension {d} of tensor '{name}'");
                if (dim > long.MaxValue)
                    throw Corrupt($"tensor '{name}' has an absurd dimension {dim}");
                dims[d] = (long)dim;
                elements = checked(elements * dims[d]);
            }
            var typeRaw = ReadUInt32($"the type of tensor '{name}'");
            var type = (GgmlType)typeRaw;
            if (!GgmlTypes.IsKnown(type))
                throw new ErtasException(ErrorCode.GgufUnsupportedType, $"tensor '{name}' has unknown ggml type {typeRaw}", Path);
            var info = type.Info();
            if (dims[0] % info.BlockSize != 0)
                throw Corrupt($"tensor '{name}': rows of {dims[0]} elements are not a whole number of {info.Name} blocks of {info.BlockSize}");
            var offset = ReadUInt64($"the data offset of tensor '{name}'");
            if (offset > long.MaxValue)
                throw Corrupt($"tensor '{name}' has an absurd data offset {offset}");
            if (offset % Alignment != 0)
                throw Corrupt($"tensor '{name}' data offset {offset} is not a multiple of the alignment {Alignment}");
            if (_byName.ContainsKey(name))
                throw new ErtasException(ErrorCode.GgufDuplicateTensor, $"GGUF tensor '{name}' appears twice", Path);
            // DataOffset is made absolute once the data section's start is known.
            var tensor = new GgufTensorInfo(name, type, dims, (long)offset, info.ByteSize(elements));
            _tensors.Add(tensor);
            _byName.Add(name, tensor);
        }
        DataStart = GgufWriter.AlignUp(_position, Alignment);
        for (var i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i] with { DataOffset = checked(DataStart + _tensors[i].DataOffset) };
            _tensors[i] = t;
            _byName[t.Name] = t;
        }
    }

    private void CheckTensorData()
    {
        GgufTensorInfo? previous = null;
        foreach (var t in _tensors.OrderBy(t => t.DataOffset))
        {
            var end = checked(t.DataOffset + t.ByteSize);
            if (end > _length)
                throw new ErtasException(ErrorCode.GgufTruncated,
                    $"data of tensor '{t.Name}' ends at byte {end} but the file has only {_length} bytes", Path);
            if (previous is not null && previous.DataOffset + previous.ByteSize > t.DataOffset)
                throw Corrupt($"data of tensors '{previous.Name}' and '{t.Name}' overlap");
            previous = t;
        }
    }

    private object ReadValue(GgufValueType type, string key, int depth) => type switch
    {
        GgufValueType.UInt8 => Take(1, key)[0],
        GgufValueType.Int8 => (sbyte)Take(1, key)[0],
        GgufValueType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, key)),
        GgufValueType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(Take(2, key)),
        GgufValueType.UInt32 => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, key)),
        GgufValueType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(Take(4, key)),
        GgufValueType.Float32 => BinaryPrimitives.ReadSingleLittleEndian(Take(4, key)),
        GgufValueType.Bool => Take(1, key)[0] != 0,
        GgufValueType.String => ReadString($"the value of key '{key}'"),
        GgufValueType.UInt64 => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, key)),
        GgufValueType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(Take(8, key)),
        GgufValueType.Float64 => BinaryPrimitives.ReadDoubleLittleEndian(Take(8, key)),
        GgufValueType.Array => ReadArray(key, depth),
        _ => throw Corrupt($"key '{key}' has unknown value type {(uint)type}"),
    };

    private Array ReadArray(string key, int depth)
    {
        if (depth >= MaxArrayNesting)
            throw Corrupt($"key '{key}' nests arrays more than {MaxArrayNesting} deep");
        var elementRaw = ReadUInt32($"the element type of array '{key}'");
        var element = (GgufValueType)elementRaw;
        if (!GgufValues.IsDefined(element))
            throw Corrupt($"array '{key}' has unknown element type {elementRaw}");
        var fixedSize = GgufValues.FixedSize(element);
        // Strings take at least their 8-byte length, nested arrays 12 bytes of header.
        var count = (int)ReadCount($"the length of array '{key}'", fixedSize > 0 ? fixedSize : element == GgufValueType.String ? 8 : 12);
        switch (element)
        {
            case GgufValueType.UInt8: return Take(count, key).ToArray();
            case GgufValueType.Int8: return MemoryMarshal.Cast<byte, sbyte>(Take(count, key)).ToArray();
            case GgufValueType.UInt16: return MemoryMarshal.Cast<byte, ushort>(Take((long)count * 2, key)).ToArray();
            case GgufValueType.Int16: return MemoryMarshal.Cast<byte, short>(Take((long)count * 2, key)).ToArray();
            case GgufValueType.UInt32: return MemoryMarshal.Cast<byte, uint>(Take((long)count * 4, key)).ToArray();
            case GgufValueType.Int32: return MemoryMarshal.Cast<byte, int>(Take((long)count * 4, key)).ToArray();
            case GgufValueType.Float32: return MemoryMarshal.Cast<byte, float>(Take((long)count * 4, key)).ToArray();
            case GgufValueType.UInt64: return MemoryMarshal.Cast<byte, ulong>(Take((long)count * 8, key)).ToArray();
            case GgufValueType.Int64: return MemoryMarshal.Cast<byte, long>(Take((long)count * 8, key)).ToArray();
            case GgufValueType.Float64: return MemoryMarshal.Cast<byte, double>(Take((long)count * 8, key)).ToArray();
            case GgufValueType.Bool:
            {
                var raw = Take(count, key);
                var result = new bool[count];
                for (var i = 0; i < count; i++)
                    result[i] = raw[i] != 0;
                return result;
            }
            case GgufValueType.String:
            {
                var result = new string[count];
                for (var i = 0; i < count; i++)
                    result[i] = ReadString($"element {i} of array '{key}'");
                return result;
            }
            default:
            {
                var result = new object[count];
                for (var i = 0; i < count; i++)
                    result[i] = ReadArray(key, depth + 1);
                return result;
            }
        }
    }

    private ReadOnlySpan<byte> Take(long count, string what)
    {
        if (count > int.MaxValue)
            throw Corrupt($"{what} claims {count} bytes in one value, more than 2 GiB");
        if (count > _length - _position)
            throw new ErtasException(ErrorCode.GgufTruncated,
                $"file ends at byte {_length} while reading {what} ({count} bytes from byte {_position})", Path);
        var span = new ReadOnlySpan<byte>(_base + _position, checked((int)count));
        _position += count;
        return span;
    }

    private uint ReadUInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));

    private ulong ReadUInt64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

    /// <summary>A u64 count: absurd values are corruption; counts the remaining bytes cannot hold are truncation.</summary>
    private long ReadCount(string what, int minBytesEach)
    {
        var raw = ReadUInt64(what);
        if (raw > MaxCount)
            throw Corrupt($"{what} is {raw}, which no real file has");
        var count = (long)raw;
        if (count * minBytesEach > _length - _position)
            throw new ErtasException(ErrorCode.GgufTruncated,
                $"{what} is {count} but only {_length - _position} bytes follow: the file is truncated or corrupt", Path);
        return count;
    }

    private string ReadString(string what)
    {
        var length = ReadUInt64($"the length of {what}");
        if (length > MaxCount)
            throw Corrupt($"{what} claims a length of {length} bytes, which no real file has");
        return Encoding.UTF8.GetString(Take((long)length, what));
    }

    private ErtasException Corrupt(string message) => new(ErrorCode.GgufCorrupt, message, Path);

    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (var i = 0; i < bytes.Length; i++)
            chars[i] = bytes[i] is >= 0x20 and < 0x7F ? (char)bytes[i] : '.';
        return new string(chars);
    }
}
