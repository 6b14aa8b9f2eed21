// Writes a tiny Mistral base, two LoRA adapters in PEFT's format (one over the plain base, one over our NF4 base,
// i.e. QLoRA) and what our TorchSharp network computes with them, plus our NF4 encoding of every adapted weight,
// so that compare.py can judge them with Hugging Face transformers + peft + bitsandbytes, references we did not
// write. Usage: dotnet run --project tools/PeftParity -- OUTDIR
using System.Runtime.InteropServices;
using System.Text.Json;
using Ertas.Cli;
using Ertas.Mistral.Tokenization;
using Ertas.Training;
using TorchSharp;
using static TorchSharp.torch;

var outDir = args.Length > 0 ? args[0] : "peft-parity";
Directory.CreateDirectory(outDir);
var baseFolder = Path.Combine(outDir, "base");
var rc = CliApp.Run(["base", "create", "--preset", "tiny", "--seed", "21", "--out", baseFolder, "--force"], Console.Out, Console.Error);
if (rc != 0) return rc;
var tokenizer = MistralTokenizer.Load(Path.Combine(baseFolder, "tokenizer.model"));

string[] prompts =
[
    "Once upon a time",
    "[INST] What is the capital of France? [/INST] The capital of France is Paris.",
    "Ünïcödé façade, 東京, emoji 🙂 and code: for (int i = 0; i < n; i++) { x += y; }",
];

foreach (var (name, quantize) in new[] { ("lora", false), ("qlora", true) })
{
    var options = new TrainingOptions
    {
        Rank = 8, Alpha = 16, Dropout = 0.1, QuantizeBase = quantize, Seed = 5, Device = "cpu",
        TargetModules = LoraOptions.AllProjections, BaseModelName = "base",
    };
    using var trainer = Trainer.Load(baseFolder, options);
    // A fresh adapter has B = 0 and would leave the base unchanged; give B seeded values so the update is judged.
    using (no_grad())
    {
        var generator = new Generator(7);
        foreach (var target in trainer.Targets)
        {
            var b = target.Module.lora_B.weight;
            b.copy_(randn(b.shape, ScalarType.Float32, generator: generator).mul_(0.02).to(b.dtype));
        }
    }
    var adapterFolder = Path.Combine(outDir, "adapter-" + name);
    trainer.SaveAdapter(adapterFolder);
    trainer.Model.eval();

    var cases = new List<object>();
    foreach (var prompt in prompts)
    {
        var ids = tokenizer.Encode(prompt, addBos: true).ToArray();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var input = tensor(ids.Select(i => (long)i).ToArray(), dtype: ScalarType.Int64).reshape(1, ids.Length);
        var logits = trainer.Model.forward(input).to(ScalarType.Float32).reshape(-1).data<float>().ToArray();
        cases.Add(new { prompt, ids, vocab = trainer.Model.Config.VocabSize, logits });
    }

    // Our NF4 encoding of each adapted weight, for a byte-level comparison with bitsandbytes.quantize_4bit.
    var nf4 = new List<object>();
    if (quantize)
        foreach (var target in trainer.Targets)
        {
            var q = target.Module.QuantizedBase!;
            nf4.Add(new
            {
                name = target.Name,
                shape = q.Shape,
                packed = Convert.ToBase64String(q.PackedCodes.data<byte>().ToArray()),
                absmax_codes = Convert.ToBase64String(q.QuantizedAbsmax.data<byte>().ToArray()),
                absmax_scales = q.AbsmaxScales.data<float>().ToArray(),
                offset = q.AbsmaxOffset,
            });
        }
    File.WriteAllText(Path.Combine(outDir, name + ".ours.json"), JsonSerializer.Serialize(new { adapter = name, quantize, cases, nf4 }));
    Console.WriteLine($"{name}: {cases.Count} cases, {nf4.Count} NF4 weights written");
}
return 0;
