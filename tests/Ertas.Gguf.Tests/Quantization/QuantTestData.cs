namespace Ertas.Gguf.Tests.Quantization;

/// <summary>Seeded inputs that reach the different branches of ggml's quantizers.</summary>
internal static class QuantTestData
{
    public static readonly string[] Patterns =
    [
        "gaussian", "outliers", "zeros", "constant", "negative-constant", "tiny", "large", "mixed-sign-blocks",
        "positive", "block-scales", "zero-blocks", "signed-zeros", "ties", "fp16-subnormal-scales",
    ];

    public static float[] Create(string pattern, int elements, int seed)
    {
        var random = new Random(seed);
        var x = new float[elements];
        switch (pattern)
        {
            case "gaussian":
                Fill(x, random, 1f);
                break;
            case "outliers":
                Fill(x, random, 1f);
                for (var i = 0; i < x.Length; i++)
                    if (random.Next(50) == 0)
                        x[i] *= 100f;
                break;
            case "zeros":
                break;
            case "constant":
                Array.Fill(x, 0.37f);
                break;
            case "negative-constant":
                Array.Fill(x, -2.5f);
                break;
            case "tiny":
                Fill(x, random, 1e-30f);
                break;
            case "large":
                Fill(x, random, 1e4f);
                break;
            case "mixed-sign-blocks":
                // Whole 32-element groups of one sign: the min of a positive group is clamped to zero, a negative
                // group has max below zero.
                Fill(x, random, 1f);
                for (var i = 0; i < x.Length; i++)
                    x[i] = (i / 32 % 3 == 0 ? -1 : 1) * MathF.Abs(x[i]) + (i / 32 % 3 == 2 ? 3f : 0f);
                break;
            case "positive":
                Fill(x, random, 1f);
                for (var i = 0; i < x.Length; i++)
                    x[i] = MathF.Abs(x[i]) + 0.5f;
                break;
            case "block-scales":
                // Every 16 elements a magnitude between 1e-8 and 1e4: sub-block scales far apart inside one block.
                Fill(x, random, 1f);
                for (var i = 0; i < x.Length; i += 16)
                {
                    var scale = MathF.Pow(10f, (float)(random.NextDouble() * 12 - 8));
                    for (var j = i; j < Math.Min(i + 16, x.Length); j++)
                        x[j] *= scale;
                }
                break;
            case "zero-blocks":
                Fill(x, random, 1f);
                for (var i = 0; i < x.Length; i += 16)
                    if (random.Next(3) == 0)
                        Array.Clear(x, i, Math.Min(16, x.Length - i));
                break;
            case "signed-zeros":
                for (var i = 0; i < x.Length; i++)
                    x[i] = random.Next(4) switch { 0 => -0f, 1 => 0f, 2 => (float)random.NextDouble(), _ => -(float)random.NextDouble() };
                break;
            case "ties":
                // Multiples of 1/8 with equal magnitudes of both signs: ties in absmax and rounding at .5.
                for (var i = 0; i < x.Length; i++)
                    x[i] = (random.Next(33) - 16) / 8f;
                break;
            case "fp16-subnormal-scales":
                // Scales below 2^-14 round into f16 subnormals.
                Fill(x, random, 3e-5f);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(pattern), pattern, null);
        }
        return x;
    }

    /// <summary>Standard normal samples times <paramref name="scale"/> (Box-Muller in double, rounded once to float).</summary>
    public static void Fill(float[] x, Random random, float scale)
    {
        for (var i = 0; i < x.Length; i++)
        {
            var u1 = 1.0 - random.NextDouble();
            var u2 = random.NextDouble();
            x[i] = (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2)) * scale;
        }
    }
}
