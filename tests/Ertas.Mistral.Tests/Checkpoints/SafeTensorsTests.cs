using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Ertas.Core;
using Ertas.Mistral.Checkpoints;

namespace Ertas.Mistral.Tests.Checkpoints;

public class SafeTensorsTests
{
    private static float[] Ramp(int count, float scale = 0.37f) =>
        Enumerable.Range(0, count).Select(i => (i - count / 2) * scale + 1f / 3).ToArray();

    private static SafeTensorEntry Entry(string name, DType dtype, long[] shape, float[] values) =>
        new(name, dtype, shape, bytes =>
        {
            switch (dtype)
            {
                case DType.F32: FloatConversions.SingleToSingleBytes(values, bytes); break;
                case DType.F16: FloatConversions.SingleToHalfBytes(values, bytes); break;
                case DType.BF16: FloatConversions.SingleToBFloat16Bytes(values, bytes); break;
            }
        });

    private static List<SafeTensorEntry> ThreeDtypes() =>
    [
        Entry("weights.f32", DType.F32, [3, 5], Ramp(15)),
        Entry("weights.f16", DType.F16, [7], Ramp(7, 1e-3f)),
        Entry("weights.bf16", DType.BF16, [2, 3, 3], Ramp(18, 123.456f)),
    ];

    private static float[] Expected(DType dtype, float[] values)
    {
        var bits = new ushort[values.Length];
        var result = new float[values.Length];
        switch (dtype)
        {
            case DType.F32: return values;
            case DType.F16: FloatConversions.SingleToHalf(values, bits); FloatConversions.HalfToSingle(bits, result); break;
            case DType.BF16: FloatConversions.SingleToBFloat16(values, bits); FloatConversions.BFloat16ToSingle(bits, result); break;
        }
        return result;
    }

    [Fact]
    public void WriterThenReader_F32F16BF16_ReadBackTheStoredValues()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        SafeTensorsWriter.Write(path, ThreeDtypes(), new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode+" });

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(["weights.f32", "weights.f16", "weights.bf16"], file.TensorNames);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal("ünïcode+", file.Metadata["note"]);
        foreach (var (name, dtype, shape, values) in new[]
                 {
                     ("weights.f32", DType.F32, new long[] { 3, 5 }, Ramp(15)),
                     ("weights.f16", DType.F16, new long[] { 7 }, Ramp(7, 1e-3f)),
                     ("weights.bf16", DType.BF16, new long[] { 2, 3, 3 }, Ramp(18, 123.456f)),
                 })
        {
            var info = file.Tensors[name];
            Assert.Equal(dtype, info.DType);
            Assert.Equal(shape, info.Shape);
            var read = new float[values.Length];
            file.ReadFloat32(name, read);
            Assert.Equal(Expected(dtype, values), read);
        }
        Assert.NotEqual(Ramp(7, 1e-3f), Expected(DType.F16, Ramp(7, 1e-3f))); // the f16 case really rounds
    }

    [Fact]
    public void Reader_RowRanges_ReadOnlyTheRequestedElementsAndBytes()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        SafeTensorsWriter.Write(path, ThreeDtypes());
        using var file = SafeTensorsFile.Open(path);

        var row = new float[5];
        file.ReadFloat32("weights.f32", 5, row);
        Assert.Equal(Ramp(15)[5..10], row);

        var bf16Row = new float[3];
        file.ReadFloat32("weights.bf16", 9, bf16Row);
        Assert.Equal(Expected(DType.BF16, Ramp(18, 123.456f))[9..12], bf16Row);

        var bytes = new byte[4];
        file.CopyBytes("weights.f16", 6, bytes);
        Assert.Equal(file.GetBytes("weights.f16")[6..10].ToArray(), bytes);

        Assert.Throws<ArgumentOutOfRangeException>(() => file.ReadFloat32("weights.f32", 12, new float[5]));
        Assert.Throws<ArgumentException>(() => file.ReadFloat32("weights.f32", new float[14]));
        var missing = Assert.Throws<ErtasException>(() => file.ReadFloat32("nope", new float[1]));
        Assert.Equal(ErrorCode.CheckpointMissingTensor, missing.Code);
    }

    [Fact]
    public void Writer_SameEntriesTwice_GivesIdenticalBytes()
    {
        using var dir = new TempDirectory();
        var metadata = new Dictionary<string, string> { ["b"] = "2", ["a"] = "1" };
        SafeTensorsWriter.Write(dir.File("one.safetensors"), ThreeDtypes(), metadata);
        SafeTensorsWriter.Write(dir.File("two.safetensors"), ThreeDtypes(), new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" });
        Assert.Equal(File.ReadAllBytes(dir.File("one.safetensors")), File.ReadAllBytes(dir.File("two.safetensors")));
    }

    [Fact]
    public void Writer_ByteLayout_IsLengthPrefixPaddedJsonThenDataInEntryOrder()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        var entries = ThreeDtypes();
        SafeTensorsWriter.Write(path, entries, new Dictionary<string, string> { ["format"] = "pt" });
        var bytes = File.ReadAllBytes(path);

        // Parse the file by hand, independently of SafeTensorsFile.
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, headerLength % 8);
        var headerText = Encoding.UTF8.GetString(bytes, 8, headerLength);
        var json = headerText.TrimEnd(' ');
        Assert.True(headerLength - Encoding.UTF8.GetByteCount(json) < 8, "padding is fewer than 8 spaces");
        Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\"},\"weights.f32\":{\"dtype\":\"F32\",\"shape\":[3,5],\"data_offsets\":[0,60]}", json);

        using var doc = JsonDocument.Parse(json);
        var dataStart = 8 + headerLength;
        long expectedBegin = 0;
        foreach (var entry in entries)
        {
            var node = doc.RootElement.GetProperty(entry.Name);
            var offsets = node.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(expectedBegin, offsets[0]);
            Assert.Equal(expectedBegin + entry.ByteLength, offsets[1]);
            var filled = new byte[entry.ByteLength];
            entry.Fill(filled);
            Assert.Equal(filled, bytes.AsSpan(dataStart + (int)offsets[0], (int)entry.ByteLength).ToArray());
            expectedBegin = offsets[1];
        }
        Assert.Equal(dataStart + expectedBegin, bytes.Length);
    }

    [Fact]
    public void Writer_TinyFile_HasExactlyTheExpectedBytes()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        SafeTensorsWriter.Write(path, [Entry("a", DType.F32, [2], [1f, -2f])]);
        const string json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        var padded = json + new string(' ', (8 - json.Length % 8) % 8);
        var expected = new List<byte>();
        expected.AddRange(BitConverter.GetBytes((ulong)padded.Length));
        expected.AddRange(Encoding.ASCII.GetBytes(padded));
        expected.AddRange([0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0]);
        Assert.Equal(expected.ToArray(), File.ReadAllBytes(path));
    }

    [Fact]
    public void Writer_ScalarAndEmptyTensors_RoundTrip()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        SafeTensorsWriter.Write(path, [Entry("scalar", DType.F32, [], [42f]), Entry("empty", DType.BF16, [0, 4], [])]);
        using var file = SafeTensorsFile.Open(path);
        var scalar = new float[1];
        file.ReadFloat32("scalar", scalar);
        Assert.Equal(42f, scalar[0]);
        Assert.Equal(0, file.Tensors["empty"].ByteLength);
        Assert.Empty(file.Tensors["scalar"].Shape);
    }

    [Fact]
    public void Writer_FailingFill_LeavesNoFileBehind()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        var entries = new List<SafeTensorEntry> { Entry("ok", DType.F32, [2], [1f, 2f]), new("bad", DType.F32, [2], _ => throw new InvalidOperationException("boom")) };
        Assert.Throws<InvalidOperationException>(() => SafeTensorsWriter.Write(path, entries));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void Writer_DuplicateNames_AreRefused()
    {
        using var dir = new TempDirectory();
        var error = Assert.Throws<ErtasException>(() =>
            SafeTensorsWriter.Write(dir.File("t.safetensors"), [Entry("x", DType.F32, [1], [1f]), Entry("x", DType.F32, [1], [2f])]));
        Assert.Equal(ErrorCode.CheckpointDuplicateTensor, error.Code);
        Assert.Contains("'x'", error.Message);
    }

    // ---- malformed files: each must give its code and a message that names the problem and the file ----

    /// <summary>Writes a length prefix (the JSON's own length unless overridden), the JSON, then dataBytes zero bytes.</summary>
    private static string WriteRaw(TempDirectory dir, string json, int dataBytes, ulong? lengthOverride = null)
    {
        var path = dir.File("raw.safetensors");
        var header = Encoding.UTF8.GetBytes(json);
        var bytes = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, lengthOverride ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static ErtasException OpenFails(string path, ErrorCode code, string messagePart)
    {
        var error = Assert.Throws<ErtasException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Equal(code, error.Code);
        Assert.Contains(messagePart, error.Message);
        Assert.Equal(Path.GetFullPath(path), error.File);
        return error;
    }

    [Fact]
    public void Open_EmptyOrShortFile_IsTruncated()
    {
        using var dir = new TempDirectory();
        var path = dir.File("empty.safetensors");
        File.WriteAllBytes(path, []);
        OpenFails(path, ErrorCode.SafetensorsTruncated, "0 bytes");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
        OpenFails(path, ErrorCode.SafetensorsTruncated, "truncated");
    }

    [Fact]
    public void Open_HeaderLengthBeyondFile_IsTruncated()
    {
        using var dir = new TempDirectory();
        OpenFails(WriteRaw(dir, "{}", 0, lengthOverride: 1000), ErrorCode.SafetensorsTruncated, "header length prefix says 1000 bytes but only 2");
        OpenFails(WriteRaw(dir, "{}", 0, lengthOverride: ulong.MaxValue), ErrorCode.SafetensorsTruncated, "truncated");
    }

    [Fact]
    public void Open_RealFileCutShort_IsTruncated()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        SafeTensorsWriter.Write(path, ThreeDtypes());
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^3]);
        OpenFails(path, ErrorCode.SafetensorsTruncated, "'weights.bf16'");
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",", "not valid JSON")]
    [InlineData("[1,2]", "must be a JSON object")]
    [InlineData("{\"a\":5}", "tensor 'a' must be described by an object")]
    [InlineData("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor 'a' has no string 'dtype'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "tensor 'a' has no 'shape'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "tensor 'a' has no 'data_offsets'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "invalid shape")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "invalid shape")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "end before they begin")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "needs 12 bytes but data_offsets [0, 8] give 8")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", "overlap")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "lists tensor 'a' twice")]
    [InlineData("{\"__metadata__\":{\"format\":1}}", "'__metadata__' entry 'format' must be a string")]
    [InlineData("{\"__metadata__\":[]}", "'__metadata__' must be an object")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", "too large")]
    public void Open_CorruptHeader_NamesTheProblem(string json, string messagePart)
    {
        using var dir = new TempDirectory();
        OpenFails(WriteRaw(dir, json, 64), ErrorCode.SafetensorsCorruptHeader, messagePart);
    }

    [Fact]
    public void Open_HeaderWithInvalidUtf8_IsCorrupt()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        byte[] header = [(byte)'{', (byte)'"', 0xFF, 0xFE, (byte)'"', (byte)':', (byte)'1', (byte)'}'];
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)header.Length), .. header]);
        OpenFails(path, ErrorCode.SafetensorsCorruptHeader, "UTF-8");
    }

    [Fact]
    public void Open_OffsetsPastTheData_IsTruncated()
    {
        using var dir = new TempDirectory();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 20);
        OpenFails(path, ErrorCode.SafetensorsTruncated, "tensor 'a' has data_offsets [16, 32] but the data section holds only 20 bytes");
    }

    [Theory]
    [InlineData("I64")]
    [InlineData("F64")]
    [InlineData("F8_E4M3")]
    [InlineData("whatever")]
    public void Open_UnsupportedDtype_NamesTensorAndDtype(string dtype)
    {
        using var dir = new TempDirectory();
        var path = WriteRaw(dir, $"{{\"model.norm.weight\":{{\"dtype\":\"{dtype}\",\"shape\":[1],\"data_offsets\":[0,8]}}}}", 8);
        OpenFails(path, ErrorCode.SafetensorsUnsupportedDtype, $"tensor 'model.norm.weight' has dtype {dtype}");
    }

    [Fact]
    public void Open_MissingFile_IsFileNotFound()
    {
        using var dir = new TempDirectory();
        OpenFails(dir.File("absent.safetensors"), ErrorCode.FileNotFound, "does not exist");
    }

    [Fact]
    public void Open_EveryTruncationAndHeaderByteFlip_FailsOnlyWithErtasException()
    {
        using var dir = new TempDirectory();
        var good = dir.File("good.safetensors");
        SafeTensorsWriter.Write(good, ThreeDtypes(), new Dictionary<string, string> { ["format"] = "pt" });
        var bytes = File.ReadAllBytes(good);
        var headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var path = dir.File("mangled.safetensors");

        void OpensOrFailsCleanly(byte[] content, string what)
        {
            File.WriteAllBytes(path, content);
            try
            {
                using var file = SafeTensorsFile.Open(path);
                foreach (var name in file.TensorNames)
                    file.ReadFloat32(name, new float[file.Tensors[name].ElementCount]);
            }
            catch (ErtasException) { }
            catch (Exception e)
            {
                Assert.Fail($"{what}: {e.GetType().Name}: {e.Message}");
            }
        }

        for (var length = 0; length < bytes.Length; length++)
            OpensOrFailsCleanly(bytes[..length], $"truncated to {length} bytes");
        foreach (var value in new byte[] { 0x00, (byte)'"', (byte)'9', (byte)'-', (byte)'}', 0xC3, 0xFF })
            for (var i = 0; i < headerEnd; i++)
            {
                var copy = (byte[])bytes.Clone();
                copy[i] = value;
                OpensOrFailsCleanly(copy, $"byte {i} set to 0x{value:X2}");
            }
    }

    [Fact]
    public void ReadFloat32_Of58MillionBf16Elements_TakesWellUnderASecond()
    {
        using var dir = new TempDirectory();
        var path = dir.File("big.safetensors");
        const int rows = 14336, cols = 4096; // one Mistral 7B MLP projection
        SafeTensorsWriter.Write(path, [new SafeTensorEntry("w", DType.BF16, [rows, cols], bytes =>
        {
            var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes);
            for (var i = 0; i < bits.Length; i++)
                bits[i] = (ushort)(0x3C00 + (i & 0x3FF));
        })]);
        using var file = SafeTensorsFile.Open(path);
        var destination = new float[(long)rows * cols];
        file.ReadFloat32("w", destination); // warm the page cache and the JIT
        var clock = System.Diagnostics.Stopwatch.StartNew();
        file.ReadFloat32("w", destination);
        clock.Stop();
        Assert.Equal(FloatConversions.BFloat16ToSingle((ushort)(0x3C00 + (1234 & 0x3FF))), destination[1234]);
        Assert.Equal(FloatConversions.BFloat16ToSingle((ushort)(0x3C00 + ((destination.Length - 1) & 0x3FF))), destination[^1]);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(0.5), $"ReadFloat32 of {destination.Length} bf16 elements took {clock.Elapsed.TotalMilliseconds:F0} ms");
    }
}
