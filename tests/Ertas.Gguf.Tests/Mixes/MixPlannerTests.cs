using Ertas.Core;
using Ertas.Gguf.Mixes;
using Ertas.Mistral;
using Xunit.Abstractions;

namespace Ertas.Gguf.Tests.Mixes;

/// <summary>
/// The type plan on shapes alone (no data): names, Mistral 7B's plan against FACTS §4 and published file sizes, and
/// rules the small parity models cannot reach (no GQA, tied embeddings). The byte-level judge is MixParityTests.
/// </summary>
public sealed class MixPlannerTests(ITestOutputHelper output)
{
    private static readonly MistralConfig Mistral7B = new()
    {
        HiddenSize = 4096,
        IntermediateSize = 14336,
        NumHiddenLayers = 32,
        NumAttentionHeads = 32,
        NumKeyValueHeads = 8,
        MaxPositionEmbeddings = 32768,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        SlidingWindow = 4096,
        VocabSize = 32000,
    };

    [Theory]
    [InlineData("q4_k_m", "Q4_K_M")]
    [InlineData("Q4_K_M", "Q4_K_M")]
    [InlineData("q8_0", "Q8_0")]
    [InlineData("Bf16", "BF16")]
    [InlineData(" q6_k ", "Q6_K")]
    public void Mix_names_are_case_insensitive(string text, string expected) =>
        Assert.Equal(expected, QuantizationMixes.Parse(text).Name);

    [Fact]
    public void An_unknown_mix_name_is_an_error_listing_every_valid_name()
    {
        var e = Assert.Throws<ErtasException>(() => QuantizationMixes.Parse("q4_k_xl"));
        Assert.Equal(ErrorCode.InvalidArgument, e.Code);
        Assert.Contains("'q4_k_xl'", e.Message, StringComparison.Ordinal);
        foreach (var mix in QuantizationMixes.All)
            Assert.Contains(mix.Name, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_mix_records_llama_cpps_file_type_number()
    {
        var expected = new Dictionary<string, uint>
        {
            ["F32"] = 0, ["F16"] = 1, ["Q4_0"] = 2, ["Q4_1"] = 3, ["Q8_0"] = 7, ["Q5_0"] = 8, ["Q5_1"] = 9, ["Q2_K"] = 10,
            ["Q3_K_S"] = 11, ["Q3_K_M"] = 12, ["Q3_K_L"] = 13, ["Q4_K_S"] = 14, ["Q4_K_M"] = 15, ["Q5_K_S"] = 16,
            ["Q5_K_M"] = 17, ["Q6_K"] = 18, ["BF16"] = 32,
        };
        Assert.Equal(expected.Keys.Order(), QuantizationMixes.All.Select(m => m.Name).Order());
        foreach (var mix in QuantizationMixes.All)
            Assert.Equal(expected[mix.Name], (uint)mix.FileType);
    }

    [Fact]
    public void Mistral_7b_q4_k_m_gives_q6_k_to_attn_v_and_ffn_down_of_the_layers_facts_names()
    {
        var plan = Plan7B(QuantizationMixes.Q4_K_M);
        int[] bumped = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
        for (var layer = 0; layer < 32; layer++)
        {
            var expected = bumped.Contains(layer) ? GgmlType.Q6_K : GgmlType.Q4_K;
            Assert.Equal(expected, plan[$"blk.{layer}.attn_v.weight"]);
            Assert.Equal(expected, plan[$"blk.{layer}.ffn_down.weight"]);
            foreach (var other in new[] { "attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up" })
                Assert.Equal(GgmlType.Q4_K, plan[$"blk.{layer}.{other}.weight"]);
            Assert.Equal(GgmlType.F32, plan[$"blk.{layer}.attn_norm.weight"]);
            Assert.Equal(GgmlType.F32, plan[$"blk.{layer}.ffn_norm.weight"]);
        }
        Assert.Equal(GgmlType.Q6_K, plan["output.weight"]);
        Assert.Equal(GgmlType.Q4_K, plan["token_embd.weight"]);
        Assert.Equal(GgmlType.F32, plan["output_norm.weight"]);
    }

    [Fact]
    public void Mistral_7b_output_is_q6_k_under_every_quantized_mix_but_q8_0()
    {
        foreach (var mix in QuantizationMixes.Quantized)
            Assert.Equal(mix == QuantizationMixes.Q8_0 ? GgmlType.Q8_0 : GgmlType.Q6_K, Plan7B(mix)["output.weight"]);
    }

    [Fact]
    public void Mistral_7b_file_sizes_match_the_published_quantizations()
    {
        // FACTS §4: Mistral 7B Q4_K_M about 4.4 GB, Q8_0 about 7.7 GB, F16 14.5 GB.
        var sizes = QuantizationMixes.All.ToDictionary(m => m.Name, m => TensorBytes7B(m));
        var weights = Mistral7B.ExpectedTensors().Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        foreach (var (name, bytes) in sizes)
            output.WriteLine($"{name,-7} {bytes / 1e9,6:F2} GB  {bytes * 8.0 / weights,5:F2} bits per weight");
        // TheBloke's mistral-7b-v0.1 GGUFs: Q4_K_M 4.37 GB, Q8_0 7.70 GB.
        Assert.InRange(sizes["Q4_K_M"] / 1e9, 4.3, 4.45);
        Assert.InRange(sizes["Q8_0"] / 1e9, 7.6, 7.75);
        Assert.InRange(sizes["F16"] / 1e9, 14.4, 14.5);
    }

    [Fact]
    public void Q2_k_gives_attn_v_q4_k_with_four_query_heads_per_kv_head_and_q3_k_without_grouping()
    {
        Assert.Equal(GgmlType.Q4_K, Plan7B(QuantizationMixes.Q2_K)["blk.5.attn_v.weight"]);
        var noGqa = MixPlanner.Plan(QuantizationMixes.Q2_K, new MixModel(32, 32, 32), Tensors7B());
        Assert.Equal(GgmlType.Q3_K, noGqa["blk.5.attn_v.weight"]);
        Assert.Equal(GgmlType.Q3_K, noGqa["blk.5.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q3_K, noGqa["blk.5.attn_output.weight"]);
        Assert.Equal(GgmlType.Q2_K, noGqa["blk.5.attn_q.weight"]);
    }

    [Fact]
    public void Without_an_output_tensor_token_embd_takes_the_output_rule()
    {
        var tied = Tensors7B().Where(t => t.Name != "output.weight").ToList();
        Assert.Equal(GgmlType.Q6_K, MixPlanner.Plan(QuantizationMixes.Q4_K_M, MixModel.FromConfig(Mistral7B), tied)["token_embd.weight"]);
    }

    [Fact]
    public void A_70b_shaped_model_gets_q5_k_attn_v_where_the_mix_says_q3_k_or_q4_k()
    {
        var tensors = Enumerable.Range(0, 80).Select(l => new MixTensor($"blk.{l}.attn_v.weight", GgmlType.F16, [1024, 8192])).ToList();
        var plan = MixPlanner.Plan(QuantizationMixes.Q3_K_S, new MixModel(80, 64, 8), tensors);
        Assert.All(plan.Values, t => Assert.Equal(GgmlType.Q5_K, t));
    }

    [Fact]
    public void Trailing_dimensions_of_one_count_as_one_dimensional_and_stay_unquantized()
    {
        var plan = MixPlanner.Plan(QuantizationMixes.Q8_0, new MixModel(1, 1, 1),
            [new MixTensor("blk.0.attn_q.weight", GgmlType.F16, [1, 256]), new MixTensor("blk.0.attn_k.weight", GgmlType.F16, [2, 256])]);
        Assert.Equal(GgmlType.F16, plan["blk.0.attn_q.weight"]);
        Assert.Equal(GgmlType.Q8_0, plan["blk.0.attn_k.weight"]);
    }

    private static List<MixTensor> Tensors7B() =>
        // As our F16 export has them: norms in F32, matrices in F16.
        Mistral7B.ExpectedTensors().Select(t => new MixTensor(HfTensorNames.ToGguf(t.Name)!, t.Shape.Length == 1 ? GgmlType.F32 : GgmlType.F16, t.Shape)).ToList();

    private static IReadOnlyDictionary<string, GgmlType> Plan7B(QuantizationMix mix) =>
        MixPlanner.Plan(mix, MixModel.FromConfig(Mistral7B), Tensors7B());

    private static long TensorBytes7B(QuantizationMix mix)
    {
        var plan = Plan7B(mix);
        return Tensors7B().Sum(t => plan[t.Name].Info().ByteSize(t.Shape.Aggregate(1L, (a, b) => a * b)));
    }
}
