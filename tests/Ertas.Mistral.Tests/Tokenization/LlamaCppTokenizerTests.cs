using System.Text;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using LLama;
using LLama.Common;

namespace Ertas.Mistral.Tests.Tokenization;

/// <summary>
/// llama.cpp is the tokenizer that finally runs an exported model: load a vocabulary-only GGUF holding our pieces,
/// scores and types and check it encodes exactly as <see cref="MistralTokenizer"/> does.
/// </summary>
public class LlamaCppTokenizerTests
{
    private static readonly string[] Texts =
    [
        "Hello, world!",
        "The bread was baked at 220 degrees for 35 minutes.",
        "  two  spaces and a trailing one ",
        "line one\nline two\twith a tab",
        "Quotes \"like this\", (parentheses) and it's 3:17 - or 15%?",
        "Untrained words: xylophone quokka zeitgeist rhythm",
        "emoji 😀 and CJK 中文 and accents: naïve café",
        "<s>[INST] looks special [/INST]</s>",
    ];

    [Fact]
    public void TrainedVocabulary_LlamaCppEncodesLikeMicrosoftMlTokenizers()
    {
        var model = SentencePieceBpeTrainer.TrainDefault(1000);
        var tokenizer = MistralTokenizer.FromModel(model);
        using var folder = new ScratchFolder();
        var path = folder.File("vocab.gguf");
        VocabOnlyGguf.Write(path, model);
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
        foreach (var text in Texts)
        {
            var llama = weights.Tokenize(text, add_bos: true, special: false, Encoding.UTF8).Select(t => (int)t).ToArray();
            Assert.Equal(tokenizer.Encode(text, addBos: true), llama);
        }
    }

    [SkippableFact]
    public void MistralVocabulary_LlamaCppEncodesTheConformanceSegmentsLikeMistralCommon()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        using var folder = new ScratchFolder();
        var path = folder.File("vocab.gguf");
        VocabOnlyGguf.Write(path, tokenizer.Model);
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
        foreach (var message in ChatFile.Load(SharedMistralFiles.ConformanceSample))
        {
            var text = message.Role == ChatMessage.User ? $"[INST] {message.Content} [/INST]" : message.Content;
            var llama = weights.Tokenize(text, add_bos: false, special: false, Encoding.UTF8).Select(t => (int)t).ToArray();
            Assert.Equal(tokenizer.Encode(text, addBos: false), llama);
        }
    }
}

/// <summary>
/// The smallest GGUF llama.cpp loads with vocab_only: the llama hyperparameters it reads before the vocabulary,
/// the tokenizer arrays, no tensors (GGUF layout from FACTS §3).
/// </summary>
internal static class VocabOnlyGguf
{
    public static void Write(string path, SentencePieceModel model)
    {
        using var stream = File.Create(path);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        var uints = new (string Key, uint Value)[]
        {
            ("llama.context_length", 512), ("llama.embedding_length", 64), ("llama.block_count", 1),
            ("llama.feed_forward_length", 128), ("llama.attention.head_count", 4), ("llama.attention.head_count_kv", 4),
            ("llama.rope.dimension_count", 16), ("tokenizer.ggml.bos_token_id", (uint)model.BosId),
            ("tokenizer.ggml.eos_token_id", (uint)model.EosId), ("tokenizer.ggml.unknown_token_id", (uint)model.UnkId),
        };
        w.Write("GGUF"u8);
        w.Write(3u);
        w.Write(0UL); // tensors
        w.Write((ulong)(uints.Length + 6));
        Key(w, "general.architecture"); String(w, "llama");
        Key(w, "llama.attention.layer_norm_rms_epsilon"); w.Write(6u); w.Write(1e-5f);
        foreach (var (key, value) in uints)
        {
            Key(w, key); w.Write(4u); w.Write(value);
        }
        Key(w, "tokenizer.ggml.model"); String(w, "llama");
        Key(w, "tokenizer.ggml.tokens"); w.Write(9u); w.Write(8u); w.Write((ulong)model.Count);
        foreach (var piece in model.Pieces)
            StringBody(w, piece);
        Key(w, "tokenizer.ggml.scores"); w.Write(9u); w.Write(6u); w.Write((ulong)model.Count);
        foreach (var score in model.Scores)
            w.Write(score);
        Key(w, "tokenizer.ggml.token_type"); w.Write(9u); w.Write(5u); w.Write((ulong)model.Count);
        foreach (var type in model.GgufTokenTypes())
            w.Write(type);
        // Padding to the 32-byte alignment where tensor data would start.
        while (stream.Position % 32 != 0)
            w.Write((byte)0);
    }

    private static void Key(BinaryWriter w, string key) => StringBody(w, key);

    private static void String(BinaryWriter w, string value)
    {
        w.Write(8u);
        StringBody(w, value);
    }

    private static void StringBody(BinaryWriter w, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }
}
