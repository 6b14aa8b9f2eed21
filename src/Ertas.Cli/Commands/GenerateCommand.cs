using System.Diagnostics;
using Ertas.Core;
using Ertas.Gguf;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using Ertas.Modeling;
using TorchSharp;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas generate</c>: run our TorchSharp Mistral on an HF folder or a GGUF file we wrote.</summary>
public sealed class GenerateCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["generate"];
    public string Usage => "ertas generate --model DIR|FILE.gguf --prompt TEXT [--chat] --max-tokens N --greedy [--ids]";
    public string Summary => "Continue a prompt with our TorchSharp model (greedy decoding) and print the text or the ids.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "A Hugging Face Mistral folder or a GGUF file.", "DIR|FILE", Required: true),
        new("--prompt", "The prompt text.", "TEXT", Required: true),
        new("--chat", "Wrap the prompt as one user turn of the mistral-v1 chat template."),
        new("--max-tokens", "Most tokens to generate (default 64); generation also stops at EOS.", "N"),
        new("--greedy", "Greedy decoding (argmax, lowest id on ties); the only mode, accepted for clarity."),
        new("--ids", "Print the generated ids on one line instead of text."),
        new("--dtype", "Compute type: f32 (default) or bf16.", "TYPE"),
        new("--device", "cpu (default), cuda or auto (cuda when TorchSharp sees one).", "DEVICE"),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var modelPath = args.Require("--model");
        var maxTokens = args.GetInt("--max-tokens", 64, min: 1, max: 1 << 20);
        var options = new ModelOptions
        {
            DType = args.Get("--dtype")?.ToLowerInvariant() switch
            {
                null or "f32" or "float32" => torch.ScalarType.Float32,
                "bf16" or "bfloat16" => torch.ScalarType.BFloat16,
                var other => throw new ErtasException(ErrorCode.InvalidArgument, $"unknown --dtype '{other}'; valid: f32, bf16"),
            },
            Device = args.Get("--device")?.ToLowerInvariant() switch
            {
                null or "cpu" => "cpu",
                "cuda" => "cuda",
                "auto" => ModelOptions.AutoDevice(),
                var other => throw new ErtasException(ErrorCode.InvalidArgument, $"unknown --device '{other}'; valid: cpu, cuda, auto"),
            },
        };

        var clock = Stopwatch.StartNew();
        using var loaded = LoadedModel.Open(modelPath, options);
        var loadSeconds = clock.Elapsed.TotalSeconds;
        var prompt = args.Has("--chat")
            ? ChatTemplates.Get(ChatTemplates.AutoName, loaded.Tokenizer)
                .Encode(loaded.Tokenizer, [new ChatMessage(ChatMessage.User, args.Require("--prompt"))], addGenerationPrompt: true).Ids
            : loaded.Tokenizer.Encode(args.Require("--prompt"), addBos: true).ToArray();
        if (prompt.Length + maxTokens > loaded.Config.MaxPositionEmbeddings)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"prompt ({prompt.Length} tokens) plus --max-tokens {maxTokens} exceeds the model's context of {loaded.Config.MaxPositionEmbeddings}");

        clock.Restart();
        var result = new Generator(loaded.Model).Generate(prompt, new GenerationOptions
        {
            MaxNewTokens = maxTokens,
            EosTokenId = loaded.Tokenizer.EosId,
        });
        var seconds = clock.Elapsed.TotalSeconds;
        var ids = result.TokenIds;
        if (args.Has("--ids"))
            context.Out.WriteLine(string.Join(' ', ids));
        else
            context.Out.WriteLine(loaded.Tokenizer.Decode(ids.Where(id => id != loaded.Tokenizer.EosId)));
        context.Error.WriteLine(
            $"generate: {prompt.Length} prompt tokens, {ids.Count} generated in {seconds:F2} s ({ids.Count / Math.Max(seconds, 1e-9):F1} tokens/s), load {loadSeconds:F2} s, stop: {result.StopReason}");
        return 0;
    }
}

/// <summary>A model and its tokenizer from either an HF folder or a GGUF file, loaded one tensor at a time.</summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(MistralModel model, MistralTokenizer tokenizer)
    {
        Model = model;
        Tokenizer = tokenizer;
    }

    public MistralModel Model { get; }
    public MistralTokenizer Tokenizer { get; }
    public MistralConfig Config => Model.Config;

    public static LoadedModel Open(string path, ModelOptions options)
    {
        if (File.Exists(path))
        {
            using var gguf = new GgufTensorSource(path);
            var tokenizer = TokenizerVocabularies.ToTokenizer(gguf.ReadVocabulary());
            return new LoadedModel(MistralModel.Load(gguf.ToMistralConfig(), gguf, options), tokenizer);
        }
        if (Directory.Exists(path))
        {
            using var checkpoint = HfCheckpoint.Open(path);
            var tokenizerPath = checkpoint.TokenizerPath
                ?? throw new ErtasException(ErrorCode.TokenizerMissing, "the checkpoint folder has no tokenizer.model", Path.Combine(path, "tokenizer.model"));
            var tokenizer = MistralTokenizer.Load(tokenizerPath);
            if (tokenizer.VocabSize != checkpoint.Config.VocabSize)
                throw new ErtasException(ErrorCode.TokenizerVocabMismatch,
                    $"tokenizer.model has {tokenizer.VocabSize} pieces but config.json says vocab_size {checkpoint.Config.VocabSize}", tokenizerPath);
            return new LoadedModel(MistralModel.Load(checkpoint.Config, checkpoint, options), tokenizer);
        }
        throw new ErtasException(ErrorCode.FileNotFound, $"model '{path}' is neither a GGUF file nor a checkpoint folder", path);
    }

    public void Dispose() => Model.Dispose();
}
