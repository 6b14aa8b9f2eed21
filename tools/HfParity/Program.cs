// Writes tiny Mistral checkpoints plus what our TorchSharp model computes on them (token ids, full-sequence
// logits, greedy continuations) so that compare.py can check the same folders with Hugging Face transformers and
// the sentencepiece library, the references we did not write. Usage: dotnet run --project tools/HfParity -- OUTDIR
using System.Text.Json;
using Ertas.Cli;
using Ertas.Cli.Commands;
using Ertas.Modeling;
using TorchSharp;
using static TorchSharp.torch;

var outDir = args.Length > 0 ? args[0] : "hf-parity";
Directory.CreateDirectory(outDir);

string[] prompts =
[
    "Once upon a time",
    "The quick brown fox jumps over the lazy dog. 1234567 and 3.14159!",
    "  leading spaces, tabs\tand\nnewlines",
    "Ünïcödé façade, 東京, emoji 🙂 and code: for (int i = 0; i < n; i++) { x += y; }",
];

// (name, base create arguments, sequence length for the full-logits check)
(string Name, string[] Args)[] models =
[
    ("tiny", ["--preset", "tiny", "--seed", "11"]),
    // A window far shorter than the test sequence, so the sliding-window mask and RoPE at long range are judged.
    ("tiny-window8", ["--preset", "tiny", "--seed", "12", "--hidden-size", "128", "--intermediate-size", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--sliding-window", "8"]),
];

foreach (var (name, createArgs) in models)
{
    var folder = Path.Combine(outDir, name);
    var rc = CliApp.Run(["base", "create", "--out", folder, "--force", .. createArgs], Console.Out, Console.Error);
    if (rc != 0) return rc;

    using var loaded = LoadedModel.Open(folder, ModelOptions.Default);
    var cases = new List<object>();
    foreach (var prompt in prompts)
    {
        var ids = loaded.Tokenizer.Encode(prompt, addBos: true).ToArray();
        var greedy = new Ertas.Modeling.Generator(loaded.Model).Generate(ids, new GenerationOptions { MaxNewTokens = 48, StopAtEos = false });
        // Full-sequence logits over prompt + continuation (>= 40 tokens, longer than the window of 8).
        var sequence = ids.Concat(greedy.TokenIds).ToArray();
        float[] logits;
        using (no_grad())
        using (var input = tensor(sequence.Select(i => (long)i).ToArray(), dtype: ScalarType.Int64).reshape(1, sequence.Length))
        using (var output = loaded.Model.forward(input))
            logits = output.reshape(-1).data<float>().ToArray();
        cases.Add(new { prompt, ids, greedy = greedy.TokenIds, sequence, vocab = loaded.Config.VocabSize, logits });
    }
    var json = JsonSerializer.Serialize(new { model = name, cases });
    File.WriteAllText(Path.Combine(outDir, name + ".ours.json"), json);
    Console.WriteLine($"{name}: {cases.Count} cases written");
}
return 0;
