using Ertas.Mistral;

namespace Ertas.Gguf.Tests;

public class GgufConstantsTests
{
    [Theory]
    [InlineData(GgmlType.F32, 1, 4)]
    [InlineData(GgmlType.F16, 1, 2)]
    [InlineData(GgmlType.BF16, 1, 2)]
    [InlineData(GgmlType.Q4_0, 32, 18)]
    [InlineData(GgmlType.Q4_1, 32, 20)]
    [InlineData(GgmlType.Q5_0, 32, 22)]
    [InlineData(GgmlType.Q5_1, 32, 24)]
    [InlineData(GgmlType.Q8_0, 32, 34)]
    [InlineData(GgmlType.Q2_K, 256, 84)]
    [InlineData(GgmlType.Q3_K, 256, 110)]
    [InlineData(GgmlType.Q4_K, 256, 144)]
    [InlineData(GgmlType.Q5_K, 256, 176)]
    [InlineData(GgmlType.Q6_K, 256, 210)]
    [InlineData(GgmlType.Q8_K, 256, 292)]
    public void Block_sizes_match_ggml(GgmlType type, int block, int bytes)
    {
        Assert.Equal(block, type.Info().BlockSize);
        Assert.Equal(bytes, type.Info().BytesPerBlock);
    }

    [Fact]
    public void Enum_values_match_the_spec()
    {
        Assert.Equal(30u, (uint)GgmlType.BF16);
        Assert.Equal(14u, (uint)GgmlType.Q6_K);
        Assert.Equal(12u, (uint)GgufValueType.Float64);
        Assert.Equal(32u, (uint)LlamaFileType.MostlyBF16);
        Assert.Equal(15u, (uint)LlamaFileType.MostlyQ4_K_M);
        Assert.Equal(0x46554747u, BitConverter.ToUInt32("GGUF"u8));
    }

    [Fact]
    public void Arch_keys_format_on_the_architecture()
    {
        Assert.Equal("llama.attention.head_count_kv", Keys.Llama(Keys.Attention.HeadCountKv));
        Assert.Equal("llama.rope.dimension_count", Keys.Format(Keys.Rope.DimensionCount, "llama"));
        Assert.Equal("blk.7.ffn_down.weight", TensorNames.Weight(TensorNames.FeedForwardDown, 7));
        Assert.Equal("token_embd.weight", TensorNames.Weight(TensorNames.TokenEmbedding));
    }

    [Fact]
    public void Every_Mistral_7B_tensor_maps_to_a_unique_GGUF_name_and_back()
    {
        var hf = MistralConfig.Mistral7B.ExpectedTensors().Select(t => t.Name).ToList();
        var gguf = hf.Select(n => HfTensorNames.ToGguf(n)).ToList();
        Assert.All(gguf, Assert.NotNull);
        Assert.Equal(gguf.Count, gguf.Distinct().Count());
        Assert.Equal(hf, gguf.Select(n => HfTensorNames.ToHf(n!)));
        Assert.Equal(291, gguf.Count);
    }

    [Theory]
    [InlineData("model.embed_tokens.weight", "token_embd.weight")]
    [InlineData("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight")]
    [InlineData("model.layers.31.self_attn.q_proj.weight", "blk.31.attn_q.weight")]
    [InlineData("model.layers.5.self_attn.o_proj.weight", "blk.5.attn_output.weight")]
    [InlineData("model.layers.2.post_attention_layernorm.weight", "blk.2.ffn_norm.weight")]
    [InlineData("model.layers.2.mlp.down_proj.weight", "blk.2.ffn_down.weight")]
    [InlineData("model.norm.weight", "output_norm.weight")]
    [InlineData("lm_head.weight", "output.weight")]
    public void Hf_names_map_to_llama_cpp_names(string hf, string gguf)
    {
        Assert.Equal(gguf, HfTensorNames.ToGguf(hf));
        Assert.Equal(hf, HfTensorNames.ToHf(gguf));
    }

    [Theory]
    [InlineData("model.layers.0.self_attn.rotary_emb.inv_freq")]
    [InlineData("model.layers.x.mlp.up_proj.weight")]
    [InlineData("model.layers.01.mlp.up_proj.weight")]
    [InlineData("rope_freqs.weight")]
    [InlineData("blk.0.attn_q")]
    public void Unknown_names_map_to_null(string name)
    {
        Assert.Null(HfTensorNames.ToGguf(name));
        Assert.Null(HfTensorNames.ToHf(name));
    }
}

public class RopePermutationTests
{
    [Fact]
    public void Hf_to_gguf_interleaves_each_heads_halves_as_a_hand_computed_example()
    {
        // Two heads of head_dim 4, one column: HF rows [x0 x1 y0 y1 | ...] become [x0 y0 x1 y1 | ...].
        float[] hf = [0, 1, 2, 3, 4, 5, 6, 7];
        var gguf = new float[8];
        RopePermutation.HfToGguf<float>(hf, gguf, rows: 8, rowLength: 1, headCount: 2);
        Assert.Equal(new float[] { 0, 2, 1, 3, 4, 6, 5, 7 }, gguf);
    }

    [Fact]
    public void Whole_rows_move_together()
    {
        // One head of head_dim 6, rows of two columns: row r holds (10r, 10r+1).
        var hf = Enumerable.Range(0, 6).SelectMany(r => new float[] { 10 * r, 10 * r + 1 }).ToArray();
        var gguf = new float[12];
        RopePermutation.HfToGguf<float>(hf, gguf, rows: 6, rowLength: 2, headCount: 1);
        Assert.Equal(new float[] { 0, 1, 30, 31, 10, 11, 40, 41, 20, 21, 50, 51 }, gguf);
    }

    [Fact]
    public void Matches_convert_hf_to_gguf_reshape_swapaxes_formula()
    {
        // numpy: w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)
        const int heads = 3, headDim = 8, cols = 5, rows = heads * headDim;
        var hf = Enumerable.Range(0, rows * cols).Select(i => (float)i).ToArray();
        var expected = new float[rows * cols];
        var half = headDim / 2;
        var o = 0;
        for (var h = 0; h < heads; h++)
            for (var i = 0; i < half; i++)
                for (var j = 0; j < 2; j++)
                    for (var c = 0; c < cols; c++)
                        expected[o++] = hf[((h * 2 + j) * half + i) * cols + c];
        var gguf = new float[rows * cols];
        RopePermutation.HfToGguf<float>(hf, gguf, rows, cols, heads);
        Assert.Equal(expected, gguf);
    }

    [Theory]
    [InlineData(32, 128)]
    [InlineData(8, 128)]
    [InlineData(4, 16)]
    [InlineData(1, 2)]
    public void Gguf_to_hf_inverts_hf_to_gguf(int heads, int headDim)
    {
        var random = new Random(heads * 1000 + headDim);
        var rows = heads * headDim;
        const int cols = 3;
        var original = Enumerable.Range(0, rows * cols).Select(_ => random.NextSingle()).ToArray();
        var permuted = new float[original.Length];
        var restored = new float[original.Length];
        RopePermutation.HfToGguf<float>(original, permuted, rows, cols, heads);
        RopePermutation.GgufToHf<float>(permuted, restored, rows, cols, heads);
        Assert.Equal(original, restored);
        if (headDim > 2)
            Assert.NotEqual(original, permuted);
        for (var r = 0; r < rows; r++)
            Assert.Equal(r, RopePermutation.GgufRowForHfRow(RopePermutation.HfRowForGgufRow(r, headDim), headDim));
    }

    [Fact]
    public void Rows_that_do_not_split_into_even_heads_are_rejected()
    {
        Assert.Throws<ArgumentException>(() => RopePermutation.HfToGguf<float>(new float[12], new float[12], 12, 1, 4));
    }
}
