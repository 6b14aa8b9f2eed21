using System.Buffers.Binary;
using System.Text;
using Ertas.Core;

namespace Ertas.Gguf.Tests;

public class GgufWriterTests
{
    private static byte[] Write(Action<GgufWriter> build)
    {
        using var stream = new MemoryStream();
        build(new GgufWriter(stream));
        return stream.ToArray();
    }

    [Fact]
    public void Byte_layout_matches_the_spec_exactly_for_one_key_and_one_tensor()
    {
        var bytes = Write(w =>
        {
            w.AddUInt32("a", 7);
            w.AddTensorInfo("t", GgmlType.F32, [2]);
            w.WriteMetadata();
            w.WriteTensorInfos();
            w.WriteTensorData("t", new float[] { 1f, 2f });
            w.Finish();
        });

        var expected = new List<byte>();
        void U32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); expected.AddRange(b); }
        void U64(ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); expected.AddRange(b); }
        void F32(float v) { var b = new byte[4]; BinaryPrimitives.WriteSingleLittleEndian(b, v); expected.AddRange(b); }
        expected.AddRange("GGUF"u8.ToArray());
        U32(3); U64(1); U64(1);
        U64(1); expected.Add((byte)'a'); U32(4); U32(7);
        U64(1); expected.Add((byte)'t'); U32(1); U64(2); U32(0); U64(0);
        Assert.Equal(74, expected.Count);
        expected.AddRange(new byte[96 - 74]);
        F32(1f); F32(2f);
        expected.AddRange(new byte[128 - 104]);

        Assert.Equal(expected.ToArray(), bytes);
    }

    [Fact]
    public void Every_value_type_and_array_kind_round_trips_through_the_reader()
    {
        var bytes = Write(w =>
        {
            w.AddUInt8("u8", 250);
            w.AddInt8("i8", -100);
            w.AddUInt16("u16", 65000);
            w.AddInt16("i16", -32000);
            w.AddUInt32("u32", 4_000_000_000);
            w.AddInt32("i32", -2_000_000_000);
            w.AddFloat32("f32", 1e-5f);
            w.AddBool("bool.true", true);
            w.AddBool("bool.false", false);
            w.AddString("string", "Grüße, 世界 ▁hello");
            w.AddString("string.empty", "");
            w.AddUInt64("u64", ulong.MaxValue);
            w.AddInt64("i64", long.MinValue);
            w.AddFloat64("f64", Math.PI);
            w.AddArray("arr.string", new[] { "<s>", "▁a", "" });
            w.AddArray("arr.f32", new[] { 0.5f, -1f, float.MaxValue });
            w.AddArray("arr.i32", new[] { 1, -2, int.MaxValue });
            w.AddArray("arr.empty", Array.Empty<int>());
            w.AddArray<byte>("arr.u8", [1, 2, 255]);
            w.AddArray<sbyte>("arr.i8", [-1, 2]);
            w.AddArray<ushort>("arr.u16", [1, 65535]);
            w.AddArray<short>("arr.i16", [-1, 32767]);
            w.AddArray<uint>("arr.u32", [uint.MaxValue]);
            w.AddArray<ulong>("arr.u64", [ulong.MaxValue, 0]);
            w.AddArray<long>("arr.i64", [long.MinValue]);
            w.AddArray<double>("arr.f64", [1.5, -2.25]);
            w.AddArray<bool>("arr.bool", [true, false, true]);
            w.AddKeyValue(new GgufKeyValue("arr.nested", GgufValueType.Array, new object[] { new[] { 1, 2 }, new[] { "x" } }));
            w.WriteMetadata();
            w.WriteTensorInfos();
            w.Finish();
        });

        using var r = GgufReader.FromBytes(bytes);
        Assert.Equal((byte)250, r.GetUInt8("u8"));
        Assert.Equal((sbyte)-100, r.GetInt8("i8"));
        Assert.Equal((ushort)65000, r.GetUInt16("u16"));
        Assert.Equal((short)-32000, r.GetInt16("i16"));
        Assert.Equal(4_000_000_000u, r.GetUInt32("u32"));
        Assert.Equal(-2_000_000_000, r.GetInt32("i32"));
        Assert.Equal(1e-5f, r.GetFloat32("f32"));
        Assert.True(r.GetBool("bool.true"));
        Assert.False(r.GetBool("bool.false"));
        Assert.Equal("Grüße, 世界 ▁hello", r.GetString("string"));
        Assert.Equal("", r.GetString("string.empty"));
        Assert.Equal(ulong.MaxValue, r.GetUInt64("u64"));
        Assert.Equal(long.MinValue, r.GetInt64("i64"));
        Assert.Equal(Math.PI, r.GetFloat64("f64"));
        Assert.Equal(new[] { "<s>", "▁a", "" }, r.GetArray<string>("arr.string"));
        Assert.Equal(new[] { 0.5f, -1f, float.MaxValue }, r.GetArray<float>("arr.f32"));
        Assert.Equal(new[] { 1, -2, int.MaxValue }, r.GetArray<int>("arr.i32"));
        Assert.Empty(r.GetArray<int>("arr.empty"));
        Assert.Equal(new byte[] { 1, 2, 255 }, r.GetArray<byte>("arr.u8"));
        Assert.Equal(new sbyte[] { -1, 2 }, r.GetArray<sbyte>("arr.i8"));
        Assert.Equal(new ushort[] { 1, 65535 }, r.GetArray<ushort>("arr.u16"));
        Assert.Equal(new short[] { -1, 32767 }, r.GetArray<short>("arr.i16"));
        Assert.Equal(new[] { uint.MaxValue }, r.GetArray<uint>("arr.u32"));
        Assert.Equal(new[] { ulong.MaxValue, 0UL }, r.GetArray<ulong>("arr.u64"));
        Assert.Equal(new[] { long.MinValue }, r.GetArray<long>("arr.i64"));
        Assert.Equal(new[] { 1.5, -2.25 }, r.GetArray<double>("arr.f64"));
        Assert.Equal(new[] { true, false, true }, r.GetArray<bool>("arr.bool"));
        var nested = r.GetArray<object>("arr.nested");
        Assert.Equal(new[] { 1, 2 }, (int[])nested[0]);
        Assert.Equal(new[] { "x" }, (string[])nested[1]);
        Assert.Equal(GgufValueType.Array, r.Get("arr.nested").ElementType);
        // Metadata keeps file order.
        Assert.Equal("u8", r.Metadata[0].Key);
        Assert.Equal("arr.nested", r.Metadata[^1].Key);
        Assert.Equal(28, r.Metadata.Count);
    }

    [Fact]
    public void A_file_read_back_and_rewritten_through_AddKeyValue_is_byte_identical()
    {
        var original = Write(w =>
        {
            w.AddString("general.architecture", "llama");
            w.AddArray("tokens", new[] { "a", "b" });
            w.AddTensorInfo("x", GgmlType.F16, [3, 4]);
            w.WriteMetadata();
            w.WriteTensorInfos();
            w.WriteTensorData("x", new byte[24]);
            w.Finish();
        });
        using var r = GgufReader.FromBytes(original);
        var copy = Write(w =>
        {
            foreach (var kv in r.Metadata)
                w.AddKeyValue(kv);
            foreach (var t in r.Tensors)
                w.AddTensorInfo(t.Name, t.Type, t.Shape);
            w.WriteMetadata();
            w.WriteTensorInfos();
            foreach (var t in r.Tensors)
                w.WriteTensorData(t.Name, r.GetTensorBytes(t));
            w.Finish();
        });
        Assert.Equal(original, copy);
    }

    [Theory]
    [InlineData(32u)]
    [InlineData(64u)]
    [InlineData(8u)]
    public void Tensor_data_is_aligned_and_padded_with_zeros(uint alignment)
    {
        var bytes = Write(w =>
        {
            if (alignment != GgufConstants.DefaultAlignment)
                w.AddUInt32(Keys.General.Alignment, alignment);
            w.AddString("k", "odd-length value");
            w.AddTensorInfo("a", GgmlType.F32, [3]);        // 12 bytes: needs padding
            w.AddTensorInfo("b", GgmlType.F16, [5, 1]);     // 10 bytes
            w.AddTensorInfo("c", GgmlType.Q8_0, [2, 32]);   // 2 blocks of 34 bytes
            w.WriteMetadata();
            w.WriteTensorInfos();
            w.WriteTensorData("a", Enumerable.Repeat((byte)0xAA, 12).ToArray());
            w.WriteTensorData("b", Enumerable.Repeat((byte)0xBB, 10).ToArray());
            w.WriteTensorData("c", Enumerable.Repeat((byte)0xCC, 68).ToArray());
            w.Finish();
        });

        using var r = GgufReader.FromBytes(bytes);
        Assert.Equal(alignment, r.Alignment);
        Assert.Equal(0, r.DataStart % alignment);
        Assert.All(r.Tensors, t => Assert.Equal(0, t.DataOffset % alignment));
        Assert.Equal(new long[] { 12, 10, 68 }, r.Tensors.Select(t => t.ByteSize));
        Assert.Equal(new long[] { 1, 5 }, r.GetTensor("b").Dimensions);
        Assert.Equal(new long[] { 5, 1 }, r.GetTensor("b").Shape);
        Assert.Equal(0, bytes.Length % alignment);
        // Every byte outside the tensor data (after the infos) is padding and zero.
        var data = new bool[bytes.Length];
        foreach (var t in r.Tensors)
            for (var i = t.DataOffset; i < t.DataOffset + t.ByteSize; i++)
                data[i] = true;
        for (var i = (int)r.DataStart; i < bytes.Length; i++)
            if (!data[i])
                Assert.Equal(0, bytes[i]);
        Assert.All(r.GetTensorBytes(r.GetTensor("c")).ToArray(), b => Assert.Equal(0xCC, b));
    }

    [Fact]
    public void Adding_metadata_after_the_header_is_written_names_both_states()
    {
        var w = new GgufWriter(new MemoryStream());
        w.WriteMetadata();
        var e = Assert.Throws<InvalidOperationException>(() => w.AddUInt32("late", 1));
        Assert.Contains("expected the GGUF writer to be Empty, got MetadataWritten", e.Message);
        Assert.Contains("'late'", e.Message);
    }

    [Fact]
    public void Writing_tensor_infos_before_the_header_names_both_states()
    {
        var w = new GgufWriter(new MemoryStream());
        var e = Assert.Throws<InvalidOperationException>(() => w.WriteTensorInfos());
        Assert.Contains("expected the GGUF writer to be MetadataWritten, got Empty", e.Message);
    }

    [Fact]
    public void Writing_tensor_data_before_the_infos_names_both_states()
    {
        var w = new GgufWriter(new MemoryStream());
        w.AddTensorInfo("t", GgmlType.F32, [1]);
        w.WriteMetadata();
        var e = Assert.Throws<InvalidOperationException>(() => w.WriteTensorData("t", new byte[4]));
        Assert.Contains("expected the GGUF writer to be TensorInfosWritten, got MetadataWritten", e.Message);
    }

    [Fact]
    public void Tensor_data_out_of_declared_order_names_the_expected_tensor()
    {
        var w = new GgufWriter(new MemoryStream());
        w.AddTensorInfo("first", GgmlType.F32, [1]);
        w.AddTensorInfo("second", GgmlType.F32, [1]);
        w.WriteMetadata();
        w.WriteTensorInfos();
        var e = Assert.Throws<InvalidOperationException>(() => w.WriteTensorData("second", new byte[4]));
        Assert.Contains("expected data of tensor 'first'", e.Message);
        Assert.Contains("got 'second'", e.Message);
    }

    [Fact]
    public void Tensor_data_of_the_wrong_size_is_rejected_with_both_sizes()
    {
        var w = new GgufWriter(new MemoryStream());
        w.AddTensorInfo("t", GgmlType.F16, [4, 8]);
        w.WriteMetadata();
        w.WriteTensorInfos();
        var e = Assert.Throws<ArgumentException>(() => w.WriteTensorData("t", new byte[63]));
        Assert.Contains("64 bytes", e.Message);
        Assert.Contains("got 63 bytes", e.Message);
    }

    [Fact]
    public void Finishing_before_all_tensor_data_is_written_names_the_missing_tensor()
    {
        var w = new GgufWriter(new MemoryStream());
        w.AddTensorInfo("a", GgmlType.F32, [1]);
        w.AddTensorInfo("b", GgmlType.F32, [1]);
        w.WriteMetadata();
        w.WriteTensorInfos();
        w.WriteTensorData("a", new byte[4]);
        var e = Assert.Throws<InvalidOperationException>(() => w.Finish());
        Assert.Contains("got 1", e.Message);
        Assert.Contains("'b'", e.Message);
    }

    [Fact]
    public void Duplicate_keys_and_tensors_are_rejected_with_their_names()
    {
        var w = new GgufWriter(new MemoryStream());
        w.AddString("general.name", "x");
        var key = Assert.Throws<ErtasException>(() => w.AddUInt32("general.name", 1));
        Assert.Equal(ErrorCode.GgufDuplicateKey, key.Code);
        Assert.Contains("'general.name'", key.Message);
        w.AddTensorInfo("t", GgmlType.F32, [1]);
        var tensor = Assert.Throws<ErtasException>(() => w.AddTensorInfo("t", GgmlType.F16, [2]));
        Assert.Equal(ErrorCode.GgufDuplicateTensor, tensor.Code);
        Assert.Contains("'t'", tensor.Message);
    }

    [Fact]
    public void Rows_that_are_not_whole_quantization_blocks_are_rejected()
    {
        var w = new GgufWriter(new MemoryStream());
        var e = Assert.Throws<ArgumentException>(() => w.AddTensorInfo("q", GgmlType.Q4_K, [4, 100]));
        Assert.Contains("256", e.Message);
    }

    [Fact]
    public void Alignment_must_be_a_power_of_two_given_as_uint32()
    {
        var w = new GgufWriter(new MemoryStream());
        Assert.Throws<ArgumentException>(() => w.AddUInt32(Keys.General.Alignment, 24));
        Assert.Throws<ArgumentException>(() => w.AddUInt64(Keys.General.Alignment, 32));
    }

    [Fact]
    public void Shape_is_taken_row_major_and_stored_innermost_first()
    {
        var bytes = Write(w =>
        {
            w.AddTensorInfo("w", GgmlType.F32, [3, 5]);
            w.WriteMetadata();
            w.WriteTensorInfos();
            w.WriteTensorData("w", new byte[60]);
            w.Finish();
        });
        // name (8 + 1), n_dims, then ne[0] = 5 (the row length), ne[1] = 3.
        var info = 24 + 9;
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(info)));
        Assert.Equal(5ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(info + 4)));
        Assert.Equal(3ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(info + 12)));
        Assert.Equal(Encoding.ASCII.GetBytes("w"), bytes.AsSpan(32, 1).ToArray());
    }
}
