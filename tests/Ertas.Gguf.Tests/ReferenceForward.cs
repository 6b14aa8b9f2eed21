using Ertas.Mistral;

namespace Ertas.Gguf.Tests;

/// <summary>
/// A plain float32 Mistral forward pass on Hugging Face weights (rotate-half RoPE, GQA, SwiGLU), small enough to read
/// in one go: the reference llama.cpp's logits are compared with.
/// </summary>
internal static class ReferenceForward
{
    /// <param name="interleavedRope">Rotate adjacent pairs instead of halves: the wrong convention for HF weights,
    /// used to show that the comparison notices a missing Q/K permutation.</param>
    public static float[][] Logits(MistralConfig c, InMemoryTensorSource w, int[] tokens, bool interleavedRope = false)
    {
        var hd = c.HeadDim;
        var x = tokens.Select(t => w.Data("model.embed_tokens.weight").AsSpan(t * c.HiddenSize, c.HiddenSize).ToArray()).ToArray();
        for (var layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            string P(string s) => $"model.layers.{layer}.{s}.weight";
            var qs = new float[tokens.Length][];
            var ks = new float[tokens.Length][];
            var vs = new float[tokens.Length][];
            for (var t = 0; t < tokens.Length; t++)
            {
                var h = RmsNorm(x[t], w.Data(P("input_layernorm")), c.RmsNormEps);
                qs[t] = Rope(MatVec(w.Data(P("self_attn.q_proj")), h), c.NumAttentionHeads, hd, t, c.RopeTheta, interleavedRope);
                ks[t] = Rope(MatVec(w.Data(P("self_attn.k_proj")), h), c.NumKeyValueHeads, hd, t, c.RopeTheta, interleavedRope);
                vs[t] = MatVec(w.Data(P("self_attn.v_proj")), h);
            }
            for (var t = 0; t < tokens.Length; t++)
            {
                var attention = new float[c.NumAttentionHeads * hd];
                for (var head = 0; head < c.NumAttentionHeads; head++)
                {
                    var kv = head / c.QueryGroups;
                    var scores = new double[t + 1];
                    for (var s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (var d = 0; d < hd; d++)
                            dot += qs[t][head * hd + d] * ks[s][kv * hd + d];
                        scores[s] = dot / Math.Sqrt(hd);
                    }
                    var max = scores.Max();
                    var weights = scores.Select(v => Math.Exp(v - max)).ToArray();
                    var sum = weights.Sum();
                    for (var d = 0; d < hd; d++)
                    {
                        double acc = 0;
                        for (var s = 0; s <= t; s++)
                            acc += weights[s] / sum * vs[s][kv * hd + d];
                        attention[head * hd + d] = (float)acc;
                    }
                }
                Add(x[t], MatVec(w.Data(P("self_attn.o_proj")), attention));
                var h2 = RmsNorm(x[t], w.Data(P("post_attention_layernorm")), c.RmsNormEps);
                var gate = MatVec(w.Data(P("mlp.gate_proj")), h2);
                var up = MatVec(w.Data(P("mlp.up_proj")), h2);
                for (var i = 0; i < gate.Length; i++)
                    gate[i] = gate[i] / (1 + MathF.Exp(-gate[i])) * up[i];
                Add(x[t], MatVec(w.Data(P("mlp.down_proj")), gate));
            }
        }
        return x.Select(row => MatVec(w.Data("lm_head.weight"), RmsNorm(row, w.Data("model.norm.weight"), c.RmsNormEps))).ToArray();
    }

    private static float[] MatVec(float[] matrix, float[] vector)
    {
        var rows = matrix.Length / vector.Length;
        var result = new float[rows];
        for (var r = 0; r < rows; r++)
        {
            double acc = 0;
            for (var k = 0; k < vector.Length; k++)
                acc += matrix[r * vector.Length + k] * vector[k];
            result[r] = (float)acc;
        }
        return result;
    }

    private static float[] RmsNorm(float[] x, float[] weight, double eps)
    {
        var meanSquare = x.Select(v => (double)v * v).Average();
        var scale = 1 / Math.Sqrt(meanSquare + eps);
        return x.Select((v, i) => (float)(v * scale) * weight[i]).ToArray();
    }

    private static float[] Rope(float[] v, int heads, int hd, int position, double theta, bool interleaved)
    {
        var half = hd / 2;
        for (var head = 0; head < heads; head++)
            for (var i = 0; i < half; i++)
            {
                var angle = position * Math.Pow(theta, -2.0 * i / hd);
                var (cos, sin) = ((float)Math.Cos(angle), (float)Math.Sin(angle));
                var (a, b) = interleaved ? (head * hd + 2 * i, head * hd + 2 * i + 1) : (head * hd + i, head * hd + i + half);
                var (x1, x2) = (v[a], v[b]);
                v[a] = x1 * cos - x2 * sin;
                v[b] = x2 * cos + x1 * sin;
            }
        return v;
    }

    private static void Add(float[] target, float[] delta)
    {
        for (var i = 0; i < target.Length; i++)
            target[i] += delta[i];
    }
}
