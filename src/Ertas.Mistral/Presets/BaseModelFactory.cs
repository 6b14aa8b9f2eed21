using Ertas.Core;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Presets;

/// <summary>What <c>ertas base create</c> was asked for; null fields take the preset's value.</summary>
public sealed record BaseModelRequest
{
    public required string Preset { get; init; }
    public ulong Seed { get; init; } = 1;
    public string? TokenizerPath { get; init; }
    public int? HiddenSize { get; init; }
    public int? IntermediateSize { get; init; }
    public int? Layers { get; init; }
    public int? Heads { get; init; }
    public int? KvHeads { get; init; }
    public int? VocabSize { get; init; }
    /// <summary>Set means the caller chose; a null <see cref="SlidingWindow"/> then means "full attention".</summary>
    public bool SlidingWindowGiven { get; init; }
    public int? SlidingWindow { get; init; }
}

/// <summary>
/// Writes complete Hugging Face Mistral folders with seeded random weights: the tiny preset the tests and the
/// demo train, and Mistral 7B's exact shapes for memory and speed benchmarks. Same request, same bytes.
/// </summary>
public static class BaseModelFactory
{
    public static IReadOnlyList<string> PresetNames { get; } = ["tiny", "100m", "7b", "7b-v3"];

    /// <summary>
    /// The tiny preset: ~3M parameters, rows of 256 so every K-quant applies, GQA (4 query heads per KV head, as 7B),
    /// 4 layers so that llama.cpp's per-layer quantization bumps show up.
    /// </summary>
    public static MistralConfig Tiny { get; } = new()
    {
        HiddenSize = 256,
        IntermediateSize = 768,
        NumHiddenLayers = 4,
        NumAttentionHeads = 8,
        NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 2048,
        SlidingWindow = null,
        VocabSize = 1024,
        TorchDtype = "float32",
    };

    /// <summary>
    /// The 100m preset, for training-speed benchmarks: GPT-2 small's width and depth (hidden 768, 12 layers) in Mistral's
    /// block (12 query heads over 4 KV heads of 64, SwiGLU of 2048, sliding window off) with 7B's vocabulary size
    /// (32000, padded like 7b's), so the embedding, lm_head and cross-entropy weigh what they do in a real run.
    /// 124.6M parameters: 75.5M in the projections, 24.6M each in the embedding and lm_head; bf16 like 7B.
    /// </summary>
    public static MistralConfig Preset100M { get; } = new()
    {
        HiddenSize = 768,
        IntermediateSize = 2048,
        NumHiddenLayers = 12,
        NumAttentionHeads = 12,
        NumKeyValueHeads = 4,
        MaxPositionEmbeddings = 4096,
        SlidingWindow = null,
        VocabSize = 32000,
        TorchDtype = "bfloat16",
    };

    /// <summary>
    /// Mistral 7B v0.3 (Mistral-7B-v0.3 / -Instruct-v0.3 config.json): v0.1's shapes with the v3 vocabulary of 32768
    /// pieces, rope_theta 1e6 and full attention (no sliding window).
    /// </summary>
    public static MistralConfig Mistral7BV3 { get; } = MistralConfig.Mistral7B with
    {
        VocabSize = 32768,
        RopeTheta = 1_000_000.0,
        SlidingWindow = null,
    };

    private static MistralConfig PresetConfig(string preset) => preset.ToLowerInvariant() switch
    {
        "tiny" => Tiny,
        "100m" => Preset100M,
        "7b" => MistralConfig.Mistral7B,
        "7b-v3" => Mistral7BV3,
        _ => throw new ErtasException(ErrorCode.InvalidArgument,
            $"unknown preset '{preset}'; valid presets: {string.Join(", ", PresetNames)}"),
    };

    public static MistralConfig ResolveConfig(BaseModelRequest request, int tokenizerVocabSize, bool vocabFromTokenizerFile)
    {
        var preset = PresetConfig(request.Preset);
        if (vocabFromTokenizerFile && request.VocabSize is { } asked && asked != tokenizerVocabSize)
            throw new ErtasException(ErrorCode.TokenizerVocabMismatch,
                $"--vocab-size {asked} disagrees with the tokenizer's {tokenizerVocabSize} pieces; leave --vocab-size out to use the tokenizer's",
                request.TokenizerPath);
        var config = preset with
        {
            HiddenSize = request.HiddenSize ?? preset.HiddenSize,
            IntermediateSize = request.IntermediateSize ?? preset.IntermediateSize,
            NumHiddenLayers = request.Layers ?? preset.NumHiddenLayers,
            NumAttentionHeads = request.Heads ?? preset.NumAttentionHeads,
            NumKeyValueHeads = request.KvHeads ?? preset.NumKeyValueHeads,
            VocabSize = tokenizerVocabSize,
            SlidingWindow = request.SlidingWindowGiven ? request.SlidingWindow : preset.SlidingWindow,
        };
        config.Validate("--preset " + request.Preset);
        return config;
    }

    /// <summary>Tensor entries (HF order) whose bytes are generated when the writer asks, one tensor at a time.</summary>
    public static IEnumerable<SafeTensorEntry> RandomWeights(MistralConfig config, ulong seed)
    {
        var dtype = config.TorchDtype == "bfloat16" ? DType.BF16 : DType.F32;
        foreach (var (name, shape) in config.ExpectedTensors())
        {
            var (center, halfWidth) = InitRange(config, name, shape);
            var stream = SeededUniform.StreamId(name);
            yield return new SafeTensorEntry(name, dtype, shape,
                bytes => FillUniform(bytes, dtype, seed, stream, center, halfWidth));
        }
    }

    /// <summary>
    /// Uniform init with the std a trained model's activations have: unit-variance embeddings, 1/sqrt(fan_in)
    /// projections (every block changes the residual stream, so attention bugs change outputs), norm weights
    /// near but not at 1 (a loader that drops them is caught), and an lm_head whose logits spread with std ~4, so
    /// greedy decoding has clear winners instead of near-ties that float rounding could flip.
    /// </summary>
    private static (float Center, float HalfWidth) InitRange(MistralConfig config, string name, long[] shape)
    {
        const float sqrt3 = 1.7320508f;
        if (shape.Length == 1) return (1.0f, 0.1f);
        float std = name switch
        {
            "model.embed_tokens.weight" => 1.0f,
            "lm_head.weight" => 4.0f / MathF.Sqrt(config.HiddenSize),
            _ => 1.0f / MathF.Sqrt(shape[1]),
        };
        return (0f, std * sqrt3);
    }

    private const int ChunkElements = 1 << 20;

    private static unsafe void FillUniform(Span<byte> bytes, DType dtype, ulong seed, ulong stream, float center, float halfWidth)
    {
        var count = bytes.Length / dtype.Size();
        var chunks = (count + ChunkElements - 1) / ChunkElements;
        fixed (byte* basePtr = bytes)
        {
            var address = (nint)basePtr;
            Parallel.For(0, chunks, chunk =>
            {
                var start = chunk * ChunkElements;
                var n = Math.Min(ChunkElements, count - start);
                var rng = new SeededUniform(seed, stream, (ulong)chunk);
                var values = new float[n];
                for (var i = 0; i < n; i++) values[i] = center + halfWidth * rng.NextSigned();
                if (dtype == DType.F32)
                {
                    values.AsSpan().CopyTo(new Span<float>((float*)address + start, n));
                }
                else
                {
                    var target = new Span<ushort>((ushort*)address + start, n);
                    FloatConversions.SingleToBFloat16(values, target);
                }
            });
        }
    }

    /// <summary>Writes config.json, safetensors (sharded at ~5 GB like HF for 7B) and tokenizer.model into <paramref name="folder"/>.</summary>
    public static MistralConfig Create(BaseModelRequest request, string folder, IProgressSink progress, CancellationToken ct = default)
    {
        var (tokenizerBytes, vocabSize, fromFile) = BuildTokenizer(request);
        var config = ResolveConfig(request, vocabSize, fromFile);
        Directory.CreateDirectory(folder);
        var totalBytes = config.ExpectedTensors().Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)) * (config.TorchDtype == "bfloat16" ? 2 : 4);
        progress.Report($"base create: preset {request.Preset}, {FormatCount(totalBytes / (config.TorchDtype == "bfloat16" ? 2 : 4))} parameters, seed {request.Seed}");
        AtomicFile.WriteAllBytes(Path.Combine(folder, "tokenizer.model"), tokenizerBytes);
        var meter = new ProgressMeter(totalBytes);
        long written = 0;
        var entries = RandomWeights(config, request.Seed).Select(e => e with
        {
            Fill = bytes =>
            {
                ct.ThrowIfCancellationRequested();
                e.Fill(bytes);
                written += bytes.Length;
                if (totalBytes > 1L << 30) progress.Report($"  {e.Name}: {meter.Describe(written)}");
            },
        });
        HfCheckpointWriter.Write(folder, config, entries.ToList(), maxShardBytes: 5L << 30);
        WriteTokenizerConfig(folder, config, Templates.ChatTemplates.JinjaFor(MistralTokenizer.FromModel(SentencePieceModel.Parse(tokenizerBytes, "tokenizer.model"))));
        return config;
    }

    private static (byte[] Bytes, int VocabSize, bool FromFile) BuildTokenizer(BaseModelRequest request)
    {
        if (request.TokenizerPath is { } path)
        {
            var tokenizer = MistralTokenizer.Load(path);
            return (File.ReadAllBytes(path), tokenizer.VocabSize, true);
        }
        var target = request.VocabSize ?? PresetConfig(request.Preset).VocabSize;
        var model = IsV3Preset(request.Preset)
            ? PadWithUnused(WithV3ControlPieces(SentencePieceBpeTrainer.TrainDefault(target - V3SpecialPieceCount)), target)
            : PadWithUnused(SentencePieceBpeTrainer.TrainDefault(target), target);
        return (model.ToBytes(), model.Count, false);
    }

    /// <summary>The control and user-defined pieces <see cref="WithV3ControlPieces"/> inserts.</summary>
    public const int V3SpecialPieceCount = 11 + (748 - 12 + 1) + 20;

    private static bool IsV3Preset(string preset) => preset.Equals("7b-v3", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// v3's special layout on the built-in vocabulary, so a v3 bench runs the mistral-v3 template and its control ids:
    /// unk/bos/eos, then ids 3-13 [INST], [/INST], [TOOL_CALLS], [AVAILABLE_TOOLS], [/AVAILABLE_TOOLS],
    /// [TOOL_RESULTS], [/TOOL_RESULTS], [IMG], [PREFIX], [MIDDLE], [SUFFIX] and [control_12] to [control_748] as
    /// control pieces up to id 750, and the user-defined [REFERENCE_DOC_19] to [REFERENCE_DOC_0] (751-770), as in
    /// Mistral's tokenizer.model.v3; the rest of <paramref name="model"/> follows. Control pieces never match text,
    /// so the ids of text change but not how text splits.
    /// </summary>
    public static SentencePieceModel WithV3ControlPieces(SentencePieceModel model)
    {
        string[] named = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]", "[IMG]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]"];
        var specials = named.Select(p => new SentencePiece(p, 0f, SentencePieceType.Control))
            .Concat(Enumerable.Range(12, 748 - 12 + 1).Select(i => new SentencePiece($"[control_{i}]", 0f, SentencePieceType.Control)))
            .Concat(Enumerable.Range(0, 20).Select(i => new SentencePiece($"[REFERENCE_DOC_{19 - i}]", 0f, SentencePieceType.UserDefined)))
            .ToList();
        const int leading = 3; // unk, bos, eos keep their ids
        var pieces = Enumerable.Range(0, leading).Select(i => model[i]).Concat(specials)
            .Concat(Enumerable.Range(leading, model.Count - leading).Select(i => model[i]))
            .ToList();
        var trainer = model.Trainer ?? TrainerSpec.ForBpe(pieces.Count);
        return new SentencePieceModel(pieces,
            TrainerSpec.ForBpe(pieces.Count, trainer.ByteFallback, trainer.SplitDigits, trainer.UnkId, trainer.BosId, trainer.EosId),
            model.Normalizer ?? NormalizerSpec.Identity());
    }

    /// <summary>
    /// The embedded text cannot teach 32000 merges, so the 7b and 100m presets fill the rest of its vocabulary with
    /// UNUSED pieces: real rows in the embedding, never produced by the tokenizer, as sentencepiece defines them.
    /// </summary>
    private static SentencePieceModel PadWithUnused(SentencePieceModel model, int target)
    {
        if (model.Count >= target) return model;
        var pieces = Enumerable.Range(0, model.Count).Select(i => model[i]).ToList();
        for (var i = model.Count; i < target; i++)
            pieces.Add(new SentencePiece($"<unused{i - model.Count}>", 0f, SentencePieceType.Unused));
        return new SentencePieceModel(pieces, TrainerSpec.ForBpe(target), model.Normalizer ?? NormalizerSpec.Identity());
    }

    /// <summary>HF's tokenizer_config.json, so transformers' LlamaTokenizer and chat template work on the folder too.</summary>
    private static void WriteTokenizerConfig(string folder, MistralConfig config, string? chatTemplate)
    {
        var json = System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["add_bos_token"] = true,
            ["add_eos_token"] = false,
            ["bos_token"] = "<s>",
            ["eos_token"] = "</s>",
            ["unk_token"] = "<unk>",
            ["pad_token"] = null,
            ["model_max_length"] = config.MaxPositionEmbeddings,
            ["tokenizer_class"] = "LlamaTokenizer",
            ["legacy"] = true,
            // Null for a v3 vocabulary until Ertas carries Mistral's v3 Jinja: the v1 one would render [INST] as text.
            ["chat_template"] = chatTemplate,
        }, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        AtomicFile.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), json + "\n");
    }

    private static string FormatCount(long n) => n >= 1_000_000_000 ? $"{n / 1e9:F2}B" : $"{n / 1e6:F2}M";
}
