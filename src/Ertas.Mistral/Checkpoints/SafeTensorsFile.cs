using System.Buffers;
using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json;
using Ertas.Core;

namespace Ertas.Mistral.Checkpoints;

/// <summary>
/// A read-only safetensors file: an 8-byte little-endian header length, a JSON header
/// <c>{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}</c>, then raw tensor
/// data. Only the header is parsed up front. The copying reads (<see cref="CopyBytes(string, long, Span{byte})"/>,
/// <see cref="ReadFloat32(string, long, Span{float})"/>) use positional reads, not the mapping: a page of a mapping
/// stays in the process's RSS once touched until the mapping goes away, so reading a 14.5 GB checkpoint through it
/// left 14.5 GB resident (measured: bench/Ertas.Bench export-7b). Read pages then live in the page cache only,
/// which the kernel can drop. Only <see cref="GetBytes"/> (zero-copy) touches the mapping.
/// Every structural problem is an <see cref="ErtasException"/> naming the file.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>The reference implementation refuses headers above 100 MB; a bigger one is a corrupt length prefix.</summary>
    private const long MaxHeaderBytes = 100_000_000;

    /// <summary>F16/BF16 bytes are read this much at a time and converted while still in cache.</summary>
    private const int ConversionChunkBytes = 512 * 1024;

    private readonly FileStream _stream;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;
    private readonly long _length;

    private SafeTensorsFile(string path, FileStream stream, MemoryMappedFile map, MemoryMappedViewAccessor view, long length)
    {
        Path = path;
        _stream = stream;
        _map = map;
        _view = view;
        _length = length;
        byte* pointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _base = pointer + _view.PointerOffset;
    }

    public string Path { get; }

    /// <summary>Tensors by name; <see cref="TensorNames"/> gives them in data order.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; private set; } = new Dictionary<string, SafeTensorInfo>();

    public IReadOnlyList<string> TensorNames { get; private set; } = [];

    public IReadOnlyDictionary<string, string> Metadata { get; private set; } = new Dictionary<string, string>();

    public static SafeTensorsFile Open(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full))
            throw new ErtasException(ErrorCode.FileNotFound, $"safetensors file '{full}' does not exist", full);
        long length;
        FileStream stream;
        try
        {
            stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read);
            length = stream.Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ErtasException(ErrorCode.IoFailure, $"cannot open '{full}': {e.Message}", full, inner: e);
        }
        if (length < 8)
        {
            stream.Dispose();
            throw new ErtasException(ErrorCode.SafetensorsTruncated,
                $"safetensors file is {length} bytes, too short for the 8-byte header length: the file is truncated", full);
        }
        MemoryMappedFile map;
        MemoryMappedViewAccessor view;
        try
        {
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stream.Dispose();
            throw new ErtasException(ErrorCode.IoFailure, $"cannot map '{full}': {e.Message}", full, inner: e);
        }
        try
        {
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            map.Dispose();
            stream.Dispose();
            throw new ErtasException(ErrorCode.IoFailure, $"cannot map '{full}': {e.Message}", full, inner: e);
        }
        var file = new SafeTensorsFile(full, stream, map, view, length);
        try
        {
            file.ParseHeader();
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public SafeTensorInfo GetInfo(string name)
    {
        if (Tensors.TryGetValue(name, out var info))
            return info;
        throw new ErtasException(ErrorCode.CheckpointMissingTensor, $"safetensors file has no tensor '{name}'", Path);
    }

    /// <summary>
    /// The tensor's raw little-endian bytes, straight from the mapping (no copy). Valid only until this file is
    /// disposed; tensors over 2 GB must be read in pieces with <see cref="CopyBytes(string, long, Span{byte})"/>.
    /// </summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var info = GetInfo(name);
        if (info.ByteLength > int.MaxValue)
            throw new InvalidOperationException($"tensor '{name}' is {info.ByteLength} bytes, too large for one span; copy it in pieces");
        return Slice(info.Offset, (int)info.ByteLength);
    }

    /// <summary>Copies the whole tensor; <paramref name="destination"/> must be exactly its byte length.</summary>
    public void CopyBytes(string name, Span<byte> destination)
    {
        var info = GetInfo(name);
        if (destination.Length != info.ByteLength)
            throw new ArgumentException($"tensor '{name}' is {info.ByteLength} bytes, destination holds {destination.Length}", nameof(destination));
        CopyBytes(name, 0, destination);
    }

    /// <summary>Copies <c>destination.Length</c> bytes starting <paramref name="byteOffset"/> into the tensor (e.g. a row range).</summary>
    public void CopyBytes(string name, long byteOffset, Span<byte> destination)
    {
        var info = GetInfo(name);
        if (byteOffset < 0 || byteOffset + destination.Length > info.ByteLength)
            throw new ArgumentOutOfRangeException(nameof(byteOffset),
                $"bytes [{byteOffset}, {byteOffset + destination.Length}) lie outside tensor '{name}' of {info.ByteLength} bytes");
        ReadExactly(info.Offset + byteOffset, destination);
    }

    /// <summary>Converts the whole tensor to float32; <paramref name="destination"/> must be exactly its element count.</summary>
    public void ReadFloat32(string name, Span<float> destination)
    {
        var info = GetInfo(name);
        if (destination.Length != info.ElementCount)
            throw new ArgumentException($"tensor '{name}' has {info.ElementCount} elements, destination holds {destination.Length}", nameof(destination));
        ReadFloat32(name, 0, destination);
    }

    /// <summary>Converts <c>destination.Length</c> elements starting at element <paramref name="elementOffset"/>.</summary>
    public void ReadFloat32(string name, long elementOffset, Span<float> destination)
    {
        var info = GetInfo(name);
        if (elementOffset < 0 || elementOffset + destination.Length > info.ElementCount)
            throw new ArgumentOutOfRangeException(nameof(elementOffset),
                $"elements [{elementOffset}, {elementOffset + destination.Length}) lie outside tensor '{name}' of {info.ElementCount}");
        var size = info.DType.Size();
        var start = info.Offset + elementOffset * size;
        if (info.DType == DType.F32)
        {
            // Stored little-endian, as FloatConversions requires of the machine: read straight into place, in
            // pieces so each byte span stays under 2 GB for tensors of more than 512M elements.
            if (!BitConverter.IsLittleEndian)
                throw new PlatformNotSupportedException("safetensors float32 data is little-endian; this machine is big-endian");
            const int chunkElements = 1 << 28;
            for (var done = 0; done < destination.Length; done += chunkElements)
            {
                var target = destination.Slice(done, Math.Min(chunkElements, destination.Length - done));
                ReadExactly(start + (long)done * sizeof(float), MemoryMarshal.AsBytes(target));
            }
            return;
        }
        var buffer = ArrayPool<byte>.Shared.Rent(ConversionChunkBytes);
        try
        {
            var chunkElements = ConversionChunkBytes / size;
            for (var done = 0; done < destination.Length; done += chunkElements)
            {
                var count = Math.Min(chunkElements, destination.Length - done);
                var bytes = buffer.AsSpan(0, count * size);
                ReadExactly(start + (long)done * size, bytes);
                var target = destination.Slice(done, count);
                switch (info.DType)
                {
                    case DType.F16: FloatConversions.HalfBytesToSingle(bytes, target); break;
                    case DType.BF16: FloatConversions.BFloat16BytesToSingle(bytes, target); break;
                    default: throw new ErtasException(ErrorCode.SafetensorsUnsupportedDtype, $"tensor '{name}' has dtype {info.DType}", Path);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public void Dispose()
    {
        if (_base != null)
        {
            _base = null;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
        _view.Dispose();
        _map.Dispose();
        _stream.Dispose();
    }

    /// <summary>Positional read (pread: thread-safe, no shared file position) of exactly <c>destination.Length</c> bytes.</summary>
    private void ReadExactly(long offset, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        var handle = _stream.SafeFileHandle;
        while (destination.Length > 0)
        {
            int read;
            try
            {
                read = RandomAccess.Read(handle, destination, offset);
            }
            catch (IOException e)
            {
                throw new ErtasException(ErrorCode.IoFailure, $"cannot read '{Path}' at byte {offset}: {e.Message}", Path, inner: e);
            }
            if (read == 0)
                throw new ErtasException(ErrorCode.SafetensorsTruncated,
                    $"the file ended at byte {offset} while reading tensor data: it was truncated after it was opened", Path);
            offset += read;
            destination = destination[read..];
        }
    }

    private ReadOnlySpan<byte> Slice(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        return new ReadOnlySpan<byte>(_base + offset, length);
    }

    private ErtasException Corrupt(string message) => new(ErrorCode.SafetensorsCorruptHeader, message, Path);

    private void ParseHeader()
    {
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_base, 8));
        var available = _length - 8;
        if (headerLength > (ulong)available)
            throw new ErtasException(ErrorCode.SafetensorsTruncated,
                $"header length prefix says {headerLength} bytes but only {available} follow it: the file is truncated or not a safetensors file", Path);
        if (headerLength > MaxHeaderBytes)
            throw Corrupt($"header length {headerLength} exceeds the 100 MB safetensors limit");
        var dataStart = 8 + (long)headerLength;
        var dataLength = _length - dataStart;
        var header = new ReadOnlySpan<byte>(_base + 8, (int)headerLength);

        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw Corrupt("header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header.ToArray());
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.SafetensorsCorruptHeader,
                $"header is not valid JSON (line {(e.LineNumber ?? 0) + 1}, byte {(e.BytePositionInLine ?? 0) + 1}): {e.Message}", Path, inner: e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw Corrupt($"header must be a JSON object, got {doc.RootElement.ValueKind}");
            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var sawMetadata = false;
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    if (sawMetadata)
                        throw Corrupt("header has two '__metadata__' entries");
                    sawMetadata = true;
                    ParseMetadata(property.Value, metadata);
                    continue;
                }
                if (tensors.ContainsKey(property.Name))
                    throw Corrupt($"header lists tensor '{property.Name}' twice");
                tensors.Add(property.Name, ParseTensor(property.Name, property.Value, dataStart, dataLength));
            }

            var ordered = tensors.Values.OrderBy(t => t.Offset).ThenBy(t => t.ByteLength).ToList();
            for (var i = 1; i < ordered.Count; i++)
            {
                var previous = ordered[i - 1];
                if (ordered[i].Offset < previous.Offset + previous.ByteLength)
                    throw Corrupt($"tensors '{previous.Name}' (data_offsets [{previous.Offset - dataStart}, {previous.Offset - dataStart + previous.ByteLength}]) and " +
                                  $"'{ordered[i].Name}' (data_offsets [{ordered[i].Offset - dataStart}, {ordered[i].Offset - dataStart + ordered[i].ByteLength}]) overlap");
            }
            Tensors = tensors;
            TensorNames = ordered.Select(t => t.Name).ToArray();
            Metadata = metadata;
        }
    }

    private void ParseMetadata(JsonElement element, Dictionary<string, string> metadata)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw Corrupt($"'__metadata__' must be an object of strings, got {element.ValueKind}");
        foreach (var entry in element.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw Corrupt($"'__metadata__' entry '{entry.Name}' must be a string, got {entry.Value.ValueKind}");
            if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!))
                throw Corrupt($"'__metadata__' lists '{entry.Name}' twice");
        }
    }

    private SafeTensorInfo ParseTensor(string name, JsonElement element, long dataStart, long dataLength)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw Corrupt($"tensor '{name}' must be described by an object, got {element.ValueKind}");
        if (!element.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Corrupt($"tensor '{name}' has no string 'dtype'");
        if (!element.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Corrupt($"tensor '{name}' has no 'shape' array");
        if (!element.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array
            || offsetsElement.GetArrayLength() != 2)
            throw Corrupt($"tensor '{name}' has no 'data_offsets' pair [begin, end]");

        var dtypeName = dtypeElement.GetString()!;
        DType dtype = dtypeName switch
        {
            "F32" => DType.F32,
            "F16" => DType.F16,
            "BF16" => DType.BF16,
            _ => throw new ErtasException(ErrorCode.SafetensorsUnsupportedDtype,
                $"tensor '{name}' has dtype {dtypeName}; only F32, F16 and BF16 are supported", Path),
        };

        var shape = new long[shapeElement.GetArrayLength()];
        var index = 0;
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var size) || size < 0)
                throw Corrupt($"tensor '{name}' has an invalid shape {shapeElement.GetRawText()}: dimensions must be non-negative integers");
            shape[index++] = size;
        }

        var offsets = new long[2];
        index = 0;
        foreach (var o in offsetsElement.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out var value) || value < 0)
                throw Corrupt($"tensor '{name}' has invalid data_offsets {offsetsElement.GetRawText()}");
            offsets[index++] = value;
        }
        var (begin, end) = (offsets[0], offsets[1]);
        if (end < begin)
            throw Corrupt($"tensor '{name}' has data_offsets [{begin}, {end}] that end before they begin");

        long expectedBytes;
        try
        {
            expectedBytes = checked(SafeTensorEntry.ElementCount(shape) * dtype.Size());
        }
        catch (OverflowException)
        {
            throw Corrupt($"tensor '{name}' has a shape {SafeTensorInfo.FormatShape(shape)} too large to address");
        }
        if (end - begin != expectedBytes)
            throw Corrupt($"tensor '{name}' ({dtypeName} {SafeTensorInfo.FormatShape(shape)}) needs {expectedBytes} bytes but data_offsets [{begin}, {end}] give {end - begin}");
        if (end > dataLength)
            throw new ErtasException(ErrorCode.SafetensorsTruncated,
                $"tensor '{name}' has data_offsets [{begin}, {end}] but the data section holds only {dataLength} bytes: the file is truncated", Path);
        return new SafeTensorInfo(name, dtype, shape, dataStart + begin, end - begin);
    }
}
