using Ertas.Mistral;

namespace Ertas.Modeling.Tests.Modeling;

/// <summary>
/// Mistral written as plain loops in double precision straight from the definitions (FACTS §2, HF's rotate-half RoPE,
/// the i - W &lt; j &lt;= i window), sharing no code with the TorchSharp network: the reference it is checked against.
/// </summary>
internal static class NaiveMistral
{
    public static double[][] Forward(MistralConfig c, InMemoryTensorSource w, long[] tokens)
    {
        int n = tokens.Length, h = c.HiddenSize, hd = c.HeadDim, heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads;
        var x = tokens.Select(t => Row(w.Data("model.embed_tokens.weight"), (int)t, h)).ToArray();
        for (var l = 0; l < c.NumHiddenLayers; l++)
        {
            var p = $"model.layers.{l}.";
            var xn = x.Select(v => RmsNorm(v, w.Data(p + "input_layernorm.weight"), c.RmsNormEps)).ToArray();
            var q = xn.Select((v, t) => Rope(MatVec(w.Data(p + "self_attn.q_proj.weight"), v), t, heads, hd, c.RopeTheta)).ToArray();
            var k = xn.Select((v, t) => Rope(MatVec(w.Data(p + "self_attn.k_proj.weight"), v), t, kvHeads, hd, c.RopeTheta)).ToArray();
            var val = xn.Select(v => MatVec(w.Data(p + "self_attn.v_proj.weight"), v)).ToArray();
            for (var i = 0; i < n; i++)
            {
                var attended = new double[heads * hd];
                for (var head = 0; head < heads; head++)
                {
                    var kvHead = head / (heads / kvHeads);
                    var visible = Enumerable.Range(0, i + 1).Where(j => c.SlidingWindow is not { } win || i - j < win).ToArray();
                    var scores = visible.Select(j => Enumerable.Range(0, hd).Sum(d => q[i][head * hd + d] * k[j][kvHead * hd + d]) / Math.Sqrt(hd)).ToArray();
                    var max = scores.Max();
                    var exp = scores.Select(s => Math.Exp(s - max)).ToArray();
                    var total = exp.Sum();
                    for (var a = 0; a < visible.Length; a++)
                        for (var d = 0; d < hd; d++)
                            attended[head * hd + d] += exp[a] / total * val[visible[a]][kvHead * hd + d];
                }
                var o = MatVec(w.Data(p + "self_attn.o_proj.weight"), attended);
                for (var d = 0; d < h; d++) x[i][d] += o[d];

                var hn = RmsNorm(x[i], w.Data(p + "post_attention_layernorm.weight"), c.RmsNormEps);
                var gate = MatVec(w.Data(p + "mlp.gate_proj.weight"), hn);
                var up = MatVec(w.Data(p + "mlp.up_proj.weight"), hn);
                var act = gate.Select((g, m) => g / (1 + Math.Exp(-g)) * up[m]).ToArray();
                var down = MatVec(w.Data(p + "mlp.down_proj.weight"), act);
                for (var d = 0; d < h; d++) x[i][d] += down[d];
            }
        }
        var head_ = c.TieWordEmbeddings ? w.Data("model.embed_tokens.weight") : w.Data("lm_head.weight");
        return x.Select(v => MatVec(head_, RmsNorm(v, w.Data("model.norm.weight"), c.RmsNormEps))).ToArray();
    }

    private static double[] Row(float[] matrix, int row, int width) =>
        [.. Enumerable.Range(0, width).Select(i => (double)matrix[row * width + i])];

    /// <summary>W (out, in) row-major times v (in).</summary>
    private static double[] MatVec(float[] weight, double[] v)
    {
        var rows = weight.Length / v.Length;
        var y = new double[rows];
        for (var r = 0; r < rows; r++)
            for (var i = 0; i < v.Length; i++)
                y[r] += weight[r * v.Length + i] * v[i];
        return y;
    }

    private static double[] RmsNorm(double[] v, float[] weight, double eps)
    {
        var rms = Math.Sqrt(v.Sum(a => a * a) / v.Length + eps);
        return [.. v.Select((a, i) => a / rms * weight[i])];
    }

    /// <summary>Rotate-half RoPE: dimension d pairs with d + hd/2, both turned by position * theta^(-2d/hd).</summary>
    private static double[] Rope(double[] v, int position, int heads, int hd, double theta)
    {
        var r = (double[])v.Clone();
        for (var head = 0; head < heads; head++)
            for (var d = 0; d < hd / 2; d++)
            {
                var angle = position * Math.Pow(theta, -2.0 * d / hd);
                var (a, b) = (v[head * hd + d], v[head * hd + d + hd / 2]);
                r[head * hd + d] = a * Math.Cos(angle) - b * Math.Sin(angle);
                r[head * hd + d + hd / 2] = b * Math.Cos(angle) + a * Math.Sin(angle);
            }
        return r;
    }
}
