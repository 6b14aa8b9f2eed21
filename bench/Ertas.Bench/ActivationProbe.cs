using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Ertas.Modeling;
using Ertas.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Bench;

/// <summary>
/// Diagnostics behind <see cref="TrainingMemoryPlanner.LayerActivations"/>, run by hand through the training worker
/// (<c>dotnet Ertas.Bench.dll training-worker KIND ARGS</c>). Each loads a base with <see cref="Trainer.Load"/> (r 16,
/// all seven projections) and reads resident memory (VmRSS, and VmHWM reset through /proc/self/clear_refs), with
/// glibc's mmap threshold lowered to 64 KB so that every tensor that is freed leaves RSS (the trainer's 1 MB leaves
/// small ones in the heap, where freed blocks are reused and growth hides).
/// <list type="bullet">
/// <item><c>activation-probe BASE COMPUTE DROPOUT LAYERS CHECKPOINTING BxT...</c>: RSS after each of the first LAYERS
/// layers of a training forward (the rest are skipped), so the bytes a layer leaves until backward read off as the difference between
/// layers; fit across batch sizes and lengths they give the per-position and per-(T x T) terms. Then the logits, the loss,
/// the backward's peak above them and what is still held after it.</item>
/// <item><c>layer-backward BASE COMPUTE DROPOUT CHECKPOINTING BxT...</c>: one layer alone on an input that needs a
/// gradient: its forward peak, what it holds after, and its backward's peak (with checkpointing: the recompute).</item>
/// <item><c>module-probe BASE COMPUTE BxT</c>: the same for single modules (a norm, LoRA projections, the MLP).</item>
/// <item><c>fingerprint BASE COMPUTE CHECKPOINTING</c>: losses and a hash of the logits and LoRA gradients of two packed
/// training steps with dropout, to show a memory change leaves results bit-identical.</item>
/// </list>
/// </summary>
public static class ActivationProbe
{
    private const int ProbeMmapThreshold = 64 << 10;

    public static string Run(IReadOnlyList<string> args, TextWriter log)
    {
        var (baseFolder, compute, dropout) = (args[0], Enum.Parse<ComputePrecision>(args[1]), double.Parse(args[2], CultureInfo.InvariantCulture));
        var layers = int.Parse(args[3], CultureInfo.InvariantCulture);
        var checkpointing = args[4] == "1";
        var shapes = Shapes(args.Skip(5));
        using var trainer = Load(baseFolder, compute, dropout, shapes.Max(s => s.T));
        var model = trainer.Model;
        return EachShape(shapes, log, (b, t) =>
        {
            var before = Rss();
            var afterLayer = new List<long>();
            long beforeLayers = 0, afterForward, afterLoss, peak, afterBackward;
            using (NewDisposeScope())
            {
                using var returned = new ReturnedGradients();
                var (ids, positions, segments) = Rows(b, t, model.Config.VocabSize);
                var logits = model.ForwardPacked(ids, positions, segments, (layer, x, i) =>
                {
                    if (i >= layers) return x; // later layers would only repeat the first ones: skipped, for time
                    if (i == 0) beforeLayers = Rss();
                    var y = checkpointing ? ActivationCheckpoint.Run(layer, x, LayerParameters(model, i), returned) : layer(x);
                    afterLayer.Add(Rss());
                    return y;
                });
                afterForward = Rss();
                var loss = F.cross_entropy(logits.view(-1, logits.shape[^1]), ids.view(-1), reduction: nn.Reduction.Sum);
                afterLoss = Rss();
                ResetPeak();
                (loss / (b * t)).backward();
                peak = Hwm();
                afterBackward = Rss();
            }
            foreach (var p in trainer.Trainable) p.grad?.zero_();
            var perLayer = afterLayer.Zip(afterLayer.Skip(1), (x, y) => y - x).ToList();
            return string.Create(CultureInfo.InvariantCulture,
                $"{compute} dropout {dropout} checkpointing {checkpointing} B {b} T {t}: per layer KB [{string.Join(' ', perLayer)}], first layer {afterLayer[0] - beforeLayers} KB, " +
                $"before the layers {beforeLayers - before} KB (embedding, mask, RoPE rows), final norm and logits {afterForward - afterLayer[^1]} KB, " +
                $"loss {afterLoss - afterForward} KB, backward peak {peak - afterLoss} KB above that, held after backward {afterBackward - before} KB");
        });
    }

    public static string LayerBackward(IReadOnlyList<string> args, TextWriter log)
    {
        var (baseFolder, compute, dropout) = (args[0], Enum.Parse<ComputePrecision>(args[1]), double.Parse(args[2], CultureInfo.InvariantCulture));
        var checkpointing = args[3] == "1";
        var shapes = Shapes(args.Skip(4));
        using var trainer = Load(baseFolder, compute, dropout, shapes.Max(s => s.T));
        var model = trainer.Model;
        var parameters = LayerParameters(model, 1);
        return EachShape(shapes, log, (b, t) =>
        {
            long forwardPeak = 0, held = 0, backwardPeak = 0, after = 0;
            using (NewDisposeScope())
            {
                var (ids, positions, segments) = Rows(b, t, model.Config.VocabSize);
                model.ForwardPacked(ids, positions, segments, (layer, x, i) =>
                {
                    if (i != 1) return x;
                    var input = x.detach().requires_grad_(); // as a middle layer's input: it needs a gradient
                    var gradient = randn_like(input);
                    var before = Rss();
                    ResetPeak();
                    var y = checkpointing ? ActivationCheckpoint.Run(layer, input, parameters) : layer(input);
                    (forwardPeak, held) = (Hwm() - before, Rss() - before);
                    ResetPeak();
                    y.backward([gradient]);
                    (backwardPeak, after) = (Hwm() - before - held, Rss() - before);
                    return x;
                });
            }
            foreach (var p in trainer.Trainable) p.grad?.zero_();
            return string.Create(CultureInfo.InvariantCulture,
                $"{compute} dropout {dropout} checkpointing {checkpointing} B {b} T {t}: forward peak {forwardPeak} KB, held after it {held} KB, " +
                $"backward peak {backwardPeak} KB above that, held after backward {after} KB");
        });
    }

    /// <summary>
    /// <paramref name="measure"/>(B, T) for each shape, after a first small pass (1 x 16) that allocates the NF4
    /// workspaces later passes reuse and is not reported; each after a full collection, so finalizable handles of the
    /// previous pass are gone. Logs every line and returns the measured ones.
    /// </summary>
    private static string EachShape(IReadOnlyList<(int B, int T)> shapes, TextWriter log, Func<int, int, string> measure)
    {
        var results = new List<string>();
        foreach (var (b, t, measured) in shapes.Take(1).Select(_ => (B: 1, T: 16, Measured: false)).Concat(shapes.Select(s => (s.B, s.T, Measured: true))))
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var line = measure(b, t);
            log.WriteLine(line);
            if (measured) results.Add(line);
        }
        return string.Join("\n", results);
    }

    public static string ModuleProbe(IReadOnlyList<string> args, TextWriter log)
    {
        var (baseFolder, compute) = (args[0], Enum.Parse<ComputePrecision>(args[1]));
        var (b, t) = Shapes(args.Skip(2))[0];
        using var trainer = Load(baseFolder, compute, 0.05, t);
        var model = trainer.Model;
        var layer = model.model.layers[1];
        var c = model.Config;
        var dtype = model.model.embed_tokens.weight.dtype;
        var modules = new (string Name, long In, Func<Tensor, Tensor> Run)[]
        {
            ("input_layernorm", c.HiddenSize, layer.input_layernorm.call),
            ("q_proj", c.HiddenSize, layer.self_attn.q_proj.call),
            ("k_proj", c.HiddenSize, layer.self_attn.k_proj.call),
            ("o_proj", c.NumAttentionHeads * c.HeadDim, layer.self_attn.o_proj.call),
            ("down_proj", c.IntermediateSize, layer.mlp.down_proj.call),
            ("mlp", c.HiddenSize, layer.mlp.call),
        };
        var results = new List<string>();
        foreach (var measured in new[] { false, true })
            foreach (var (name, features, run) in modules)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                using var scope = NewDisposeScope();
                var x = randn([b, t, features]).to(dtype).requires_grad_();
                var before = Rss();
                ResetPeak();
                var y = run(x);
                var (peak, held) = (Hwm() - before, Rss() - before);
                double positions = b * t;
                var line = string.Create(CultureInfo.InvariantCulture,
                    $"{compute} {name}: peak {peak * 1024 / positions:F0} B/position, held {held * 1024 / positions:F0} B/position (output {y.NumberOfElements * y.ElementSize / positions:F0})");
                if (measured)
                {
                    log.WriteLine(line);
                    results.Add(line);
                }
            }
        return string.Join("\n", results);
    }

    public static string Fingerprint(IReadOnlyList<string> args, TextWriter log)
    {
        var (baseFolder, compute, checkpointing) = (args[0], Enum.Parse<ComputePrecision>(args[1]), args[2] == "1");
        set_num_threads(2);
        manual_seed(7);
        var options = new TrainingOptions
        {
            Rank = 8, Alpha = 16, Dropout = 0.1, Compute = compute, Device = "cpu", SequenceLength = 64, BatchSize = 2, GradientCheckpointing = checkpointing,
        };
        using var trainer = Trainer.Load(baseFolder, options);
        var model = trainer.Model;
        model.train();
        using (no_grad()) // B starts at zero; moved, every factor's gradient depends on the whole path
            foreach (var p in trainer.Trainable) p.add_(randn(p.shape) * 0.01);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var losses = new List<string>();
        for (var step = 0; step < 2; step++)
        {
            using var scope = NewDisposeScope();
            using var returned = new ReturnedGradients();
            var ids = randint(1, model.Config.VocabSize, [2, 64], dtype: ScalarType.Int64);
            // Two packed examples per row: 40 and 24 tokens, positions restarting at the second.
            var positions = cat([arange(40, dtype: ScalarType.Int64), arange(24, dtype: ScalarType.Int64)]).unsqueeze(0).expand(2, 64).contiguous();
            var segments = cat([zeros(40, ScalarType.Int64), ones(24, ScalarType.Int64)]).unsqueeze(0).expand(2, 64).contiguous();
            Func<Func<Tensor, Tensor>, Tensor, int, Tensor>? runLayer = checkpointing
                ? (layer, x, i) => ActivationCheckpoint.Run(layer, x, LayerParameters(model, i), returned)
                : null;
            var logits = model.ForwardPacked(ids, positions, segments, runLayer);
            var loss = F.cross_entropy(logits.view(-1, logits.shape[^1]), ids.view(-1));
            loss.backward();
            losses.Add(BitConverter.SingleToInt32Bits(loss.item<float>()).ToString("x8", CultureInfo.InvariantCulture));
            hash.AppendData(MemoryMarshal.AsBytes(logits.data<float>().ToArray().AsSpan()));
        }
        foreach (var p in trainer.Trainable) hash.AppendData(MemoryMarshal.AsBytes(p.grad!.data<float>().ToArray().AsSpan()));
        var result = $"{compute} checkpointing {checkpointing}: losses {string.Join(' ', losses)} sha256 {Convert.ToHexString(hash.GetCurrentHash())}";
        log.WriteLine(result);
        return result;
    }

    private static Trainer Load(string baseFolder, ComputePrecision compute, double dropout, int sequenceLength)
    {
        set_num_threads(2);
        var trainer = Trainer.Load(baseFolder, new TrainingOptions
        {
            Rank = 16, Alpha = 16, Dropout = dropout, Compute = compute, Device = "cpu", SequenceLength = sequenceLength, BatchSize = 1,
        });
        Mallopt(-3, ProbeMmapThreshold); // M_MMAP_THRESHOLD, after Trainer.Load has set its own
        trainer.Model.train();
        return trainer;
    }

    /// <summary>The LoRA factors of layer <paramref name="index"/>, as the trainer passes them to a checkpoint.</summary>
    private static List<Tensor> LayerParameters(Ertas.Modeling.MistralModel model, int index) =>
        [.. model.named_parameters()
            .Where(p => p.parameter.requires_grad && p.name.StartsWith($"model.layers.{index}.", StringComparison.Ordinal))
            .Select(p => (Tensor)p.parameter)];

    private static List<(int B, int T)> Shapes(IEnumerable<string> args) =>
        [.. args.Select(s => s.Split('x')).Select(p => (int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture)))];

    /// <summary>Random ids, one example per row (positions 0..T-1, one segment).</summary>
    private static (Tensor Ids, Tensor Positions, Tensor Segments) Rows(int b, int t, int vocab) =>
        (randint(1, vocab, [b, t], dtype: ScalarType.Int64),
         arange(t, dtype: ScalarType.Int64).unsqueeze(0).expand(b, t).contiguous(),
         zeros([b, t], ScalarType.Int64));

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int parameter, int value);

    private static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5"); // VmHWM back to VmRSS
    private static long Rss() => Status("VmRSS:");
    private static long Hwm() => Status("VmHWM:");

    private static long Status(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        return 0;
    }
}
