using System.Buffers.Binary;
using System.Text;
using Ertas.Core;

namespace Ertas.Gguf.Tests;

public class GgufReaderTests
{
    /// <summary>Two keys with patchable names, an array, two tensors ("ta" F32 [2, 4], "tb" F16 [8]).</summary>
    private static byte[] ValidFile(uint? alignment = null)
    {
        using var stream = new MemoryStream();
        var w = new GgufWriter(stream);
        if (alignment is { } a)
            w.AddUInt32(Keys.General.Alignment, a);
        w.AddUInt32("key.a", 1);
        w.AddString("key.b", "hello");
        w.AddArray("arr", new[] { 1, 2, 3 });
        w.AddTensorInfo("ta", GgmlType.F32, [2, 4]);
        w.AddTensorInfo("tb", GgmlType.F16, [8]);
        w.WriteMetadata();
        w.WriteTensorInfos();
        w.WriteTensorData("ta", Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());
        w.WriteTensorData("tb", Enumerable.Range(100, 16).Select(i => (byte)i).ToArray());
        w.Finish();
        return stream.ToArray();
    }

    private static int Find(byte[] bytes, string text)
    {
        var index = bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(text));
        Assert.True(index >= 0, $"'{text}' not found");
        return index;
    }

    private static ErtasException Fails(byte[] bytes, ErrorCode code)
    {
        var e = Assert.Throws<ErtasException>(() => GgufReader.FromBytes(bytes, "test.gguf").Dispose());
        Assert.True(code == e.Code, $"expected {code}, got {e.Code}: {e.Message}");
        Assert.Equal("test.gguf", e.File);
        return e;
    }

    [Fact]
    public void A_valid_file_exposes_tensors_with_both_shape_orders_and_absolute_offsets()
    {
        var bytes = ValidFile();
        using var r = GgufReader.FromBytes(bytes);
        Assert.Equal(3u, r.Version);
        var ta = r.GetTensor("ta");
        Assert.Equal(GgmlType.F32, ta.Type);
        Assert.Equal(new long[] { 4, 2 }, ta.Dimensions);
        Assert.Equal(new long[] { 2, 4 }, ta.Shape);
        Assert.Equal(8, ta.ElementCount);
        Assert.Equal(32, ta.ByteSize);
        Assert.Equal(Enumerable.Range(0, 32).Select(i => (byte)i), r.GetTensorBytes(ta).ToArray());
        var tb = r.GetTensor("tb");
        Assert.Equal(bytes.AsSpan((int)tb.DataOffset, 16).ToArray(), r.ReadTensorBytes(tb));
        Assert.Equal(100, bytes[tb.DataOffset]);
        var copy = new byte[16];
        r.CopyTensorBytes(tb, copy);
        Assert.Equal(r.ReadTensorBytes(tb), copy);
    }

    [Fact]
    public void A_memory_mapped_file_reads_the_same_as_bytes_in_memory()
    {
        using var dir = new TempDir();
        var path = dir.File("valid.gguf");
        File.WriteAllBytes(path, ValidFile());
        using var r = new GgufReader(path);
        Assert.Equal("hello", r.GetString("key.b"));
        Assert.Equal(Enumerable.Range(100, 16).Select(i => (byte)i), r.GetTensorBytes(r.GetTensor("tb")).ToArray());
    }

    [Fact]
    public void Positional_range_reads_give_the_mapped_bytes_from_a_file_and_from_memory_and_refuse_ranges_outside_the_tensor()
    {
        using var dir = new TempDir();
        var path = dir.File("valid.gguf");
        File.WriteAllBytes(path, ValidFile());
        using var file = new GgufReader(path);
        using var memory = GgufReader.FromBytes(ValidFile());
        foreach (var r in new[] { file, memory })
        {
            var ta = r.GetTensor("ta");
            var part = new byte[10];
            r.ReadTensorRange(ta, 7, part);
            Assert.Equal(r.GetTensorBytes(ta)[7..17].ToArray(), part);
            var whole = new byte[16];
            r.ReadTensorRange(r.GetTensor("tb"), 0, whole);
            Assert.Equal(Enumerable.Range(100, 16).Select(i => (byte)i), whole);
            Assert.Throws<ArgumentOutOfRangeException>(() => r.ReadTensorRange(ta, 30, new byte[3]));
            Assert.Throws<ArgumentOutOfRangeException>(() => r.ReadTensorRange(ta, -1, new byte[1]));
        }
    }

    [Fact]
    public void Bad_magic_is_GgufBadMagic()
    {
        var bytes = ValidFile();
        "GGML"u8.CopyTo(bytes);
        var e = Fails(bytes, ErrorCode.GgufBadMagic);
        Assert.Contains("GGML", e.Message);
        Fails("PK\u0003\u0004 a zip file"u8.ToArray(), ErrorCode.GgufBadMagic);
        Fails([0x7B], ErrorCode.GgufBadMagic);
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(4u)]
    [InlineData(0x03000000u)]
    public void Versions_other_than_2_and_3_are_GgufUnsupportedVersion(uint version)
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), version);
        Fails(bytes, ErrorCode.GgufUnsupportedVersion);
    }

    [Fact]
    public void Version_2_files_are_read()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), 2);
        using var r = GgufReader.FromBytes(bytes);
        Assert.Equal(2u, r.Version);
    }

    [Fact]
    public void Every_cut_before_the_end_of_tensor_data_is_GgufTruncated_and_every_later_cut_reads()
    {
        var bytes = ValidFile();
        long dataEnd;
        using (var r = GgufReader.FromBytes(bytes))
            dataEnd = r.Tensors.Max(t => t.DataOffset + t.ByteSize);
        for (var cut = 0; cut < bytes.Length; cut++)
        {
            var prefix = bytes[..cut];
            if (cut < dataEnd)
            {
                var e = Record.Exception(() => GgufReader.FromBytes(prefix).Dispose());
                var ertas = Assert.IsType<ErtasException>(e);
                Assert.True(ertas.Code == ErrorCode.GgufTruncated, $"cut at {cut}: {ertas.Code} {ertas.Message}");
            }
            else
            {
                using var r = GgufReader.FromBytes(prefix);
                Assert.Equal(2, r.Tensors.Count);
            }
        }
    }

    [Fact]
    public void Truncated_and_empty_files_on_disk_are_GgufTruncated()
    {
        using var dir = new TempDir();
        var bytes = ValidFile();
        foreach (var cut in new[] { 0, 2, 30, bytes.Length - 40 })
        {
            var path = dir.File($"cut{cut}.gguf");
            File.WriteAllBytes(path, bytes[..cut]);
            var e = Assert.Throws<ErtasException>(() => new GgufReader(path).Dispose());
            Assert.Equal(ErrorCode.GgufTruncated, e.Code);
            Assert.Equal(path, e.File);
        }
    }

    [Fact]
    public void A_missing_file_is_FileNotFound()
    {
        var e = Assert.Throws<ErtasException>(() => new GgufReader("/nonexistent/model.gguf"));
        Assert.Equal(ErrorCode.FileNotFound, e.Code);
    }

    [Fact]
    public void An_absurd_key_value_count_is_GgufCorrupt()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(16), 1UL << 40);
        Fails(bytes, ErrorCode.GgufCorrupt);
    }

    [Fact]
    public void An_absurd_tensor_count_is_GgufCorrupt()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(8), ulong.MaxValue);
        Fails(bytes, ErrorCode.GgufCorrupt);
    }

    [Fact]
    public void An_absurd_string_length_is_GgufCorrupt()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(Find(bytes, "hello") - 8), 1UL << 50);
        var e = Fails(bytes, ErrorCode.GgufCorrupt);
        Assert.Contains("key.b", e.Message);
    }

    [Fact]
    public void An_absurd_array_length_is_GgufCorrupt()
    {
        var bytes = ValidFile();
        var arrayCount = Find(bytes, "arr") + 3 + 4 + 4;
        Assert.Equal(3ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(arrayCount)));
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(arrayCount), 1UL << 62);
        Fails(bytes, ErrorCode.GgufCorrupt);
    }

    [Fact]
    public void An_unknown_value_type_is_GgufCorrupt_naming_the_key()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(Find(bytes, "key.a") + 5), 13);
        var e = Fails(bytes, ErrorCode.GgufCorrupt);
        Assert.Contains("'key.a'", e.Message);
        Assert.Contains("13", e.Message);
    }

    [Fact]
    public void An_unknown_array_element_type_is_GgufCorrupt()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(Find(bytes, "arr") + 3 + 4), 99);
        Fails(bytes, ErrorCode.GgufCorrupt);
    }

    [Fact]
    public void A_duplicate_key_is_GgufDuplicateKey()
    {
        var bytes = ValidFile();
        bytes[Find(bytes, "key.b") + 4] = (byte)'a';
        var e = Fails(bytes, ErrorCode.GgufDuplicateKey);
        Assert.Contains("'key.a'", e.Message);
    }

    [Fact]
    public void A_duplicate_tensor_is_GgufDuplicateTensor()
    {
        var bytes = ValidFile();
        bytes[Find(bytes, "tb") + 1] = (byte)'a';
        var e = Fails(bytes, ErrorCode.GgufDuplicateTensor);
        Assert.Contains("'ta'", e.Message);
    }

    [Fact]
    public void An_unknown_tensor_type_is_GgufUnsupportedType()
    {
        var bytes = ValidFile();
        // "tb": name, n_dims = 1, one dim, then the type.
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(Find(bytes, "tb") + 2 + 4 + 8), 4);
        var e = Fails(bytes, ErrorCode.GgufUnsupportedType);
        Assert.Contains("'tb'", e.Message);
    }

    [Fact]
    public void Too_many_dimensions_is_GgufCorrupt()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(Find(bytes, "tb") + 2), 5);
        Fails(bytes, ErrorCode.GgufCorrupt);
    }

    [Fact]
    public void A_misaligned_tensor_offset_is_GgufCorrupt()
    {
        var bytes = ValidFile();
        var offsetAt = Find(bytes, "tb") + 2 + 4 + 8 + 4;
        var offset = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(offsetAt));
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(offsetAt), offset + 4);
        var e = Fails(bytes, ErrorCode.GgufCorrupt);
        Assert.Contains("alignment", e.Message);
    }

    [Fact]
    public void Tensor_data_past_the_end_of_the_file_is_GgufTruncated()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(Find(bytes, "tb") + 2 + 4 + 8 + 4), 1UL << 20);
        var e = Fails(bytes, ErrorCode.GgufTruncated);
        Assert.Contains("'tb'", e.Message);
    }

    [Fact]
    public void Overlapping_tensor_data_is_GgufCorrupt()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(Find(bytes, "tb") + 2 + 4 + 8 + 4), 0);
        var e = Fails(bytes, ErrorCode.GgufCorrupt);
        Assert.Contains("overlap", e.Message);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(24u)]
    public void An_alignment_that_is_not_a_power_of_two_is_GgufCorrupt(uint alignment)
    {
        var bytes = ValidFile(alignment: 64);
        var at = Find(bytes, Keys.General.Alignment) + Keys.General.Alignment.Length + 4;
        Assert.Equal(64u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at)));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at), alignment);
        Fails(bytes, ErrorCode.GgufCorrupt);
    }

    [Fact]
    public void Random_byte_corruption_only_ever_raises_ErtasException()
    {
        var valid = ValidFile();
        var random = new Random(42);
        for (var trial = 0; trial < 3000; trial++)
        {
            var bytes = (byte[])valid.Clone();
            for (var flips = random.Next(1, 4); flips > 0; flips--)
                bytes[random.Next(0, 160)] = (byte)random.Next(256);
            var e = Record.Exception(() => GgufReader.FromBytes(bytes).Dispose());
            if (e is not null and not ErtasException)
                Assert.Fail($"trial {trial}: {e.GetType().Name}: {e.Message}");
        }
    }

    [Fact]
    public void A_missing_key_names_the_key()
    {
        using var r = GgufReader.FromBytes(ValidFile());
        var e = Assert.Throws<ErtasException>(() => r.GetUInt32("llama.context_length"));
        Assert.Equal(ErrorCode.GgufMissingKey, e.Code);
        Assert.Contains("'llama.context_length'", e.Message);
    }

    [Fact]
    public void A_key_of_the_wrong_type_names_the_key_and_both_types()
    {
        using var r = GgufReader.FromBytes(ValidFile());
        var e = Assert.Throws<ErtasException>(() => r.GetInt32("key.a"));
        Assert.Equal(ErrorCode.GgufCorrupt, e.Code);
        Assert.Contains("'key.a' is UInt32, expected Int32", e.Message);
        var array = Assert.Throws<ErtasException>(() => r.GetArray<string>("arr"));
        Assert.Contains("an array of Int32", array.Message);
    }

    [Fact]
    public void A_missing_tensor_is_GgufMissingTensor()
    {
        using var r = GgufReader.FromBytes(ValidFile());
        Assert.Equal(ErrorCode.GgufMissingTensor, Assert.Throws<ErtasException>(() => r.GetTensor("nope")).Code);
    }
}
