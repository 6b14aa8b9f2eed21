using System.Text.Json.Nodes;
using Ertas.Core;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Presets;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// Broken inputs a user really produces (interrupted downloads, hand-edited configs, mixed-up files, typos) must end
/// in one MSBuild-format diagnostic with the right ERTAS code, a non-zero exit code, and no output file or temp file
/// left behind: never a stack trace, never a half-written GGUF.
/// </summary>
[Collection(CliModelsCollection.Name)]
public sealed class BadInputTests(CliModels models) : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    [Fact]
    public void Export_TruncatedSafetensors_FailsWithSafetensorsTruncated()
    {
        var folder = CopyOfTiny("truncated");
        Truncate(Path.Combine(folder, "model.safetensors"), keepFraction: 0.5);
        AssertExportFails(folder, ErrorCode.SafetensorsTruncated);
    }

    [Fact]
    public void Generate_TruncatedSafetensors_FailsWithSafetensorsTruncated()
    {
        var folder = CopyOfTiny("truncated");
        Truncate(Path.Combine(folder, "model.safetensors"), keepFraction: 0.5);
        AssertFailsWithoutWriting(ErrorCode.SafetensorsTruncated, folder,
            "generate", "--model", folder, "--prompt", "Hello", "--max-tokens", "4");
    }

    [Fact]
    public void Export_ConfigThatIsNotValidJson_FailsWithConfigInvalidJson()
    {
        var folder = CopyOfTiny("bad-json");
        var config = Path.Combine(folder, "config.json");
        File.WriteAllText(config, File.ReadAllText(config)[..40]); // cut mid-object, as a failed save leaves it
        var error = AssertExportFails(folder, ErrorCode.ConfigInvalidJson);
        Assert.Contains("config.json(", error, StringComparison.Ordinal); // points at line and column
    }

    [Fact]
    public void Export_ConfigWithoutHiddenSize_FailsWithConfigMissingFieldNamingIt()
    {
        var folder = CopyOfTiny("no-hidden-size");
        EditConfig(folder, c => c.Remove("hidden_size"));
        var error = AssertExportFails(folder, ErrorCode.ConfigMissingField);
        Assert.Contains("hidden_size", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_ConfigWhoseHeadsAreNotAMultipleOfKvHeads_FailsWithConfigContradiction()
    {
        var folder = CopyOfTiny("contradiction");
        EditConfig(folder, c => c["num_key_value_heads"] = 3); // 8 query heads cannot share 3 KV heads evenly
        var error = AssertExportFails(folder, ErrorCode.ConfigContradiction);
        Assert.Contains("num_key_value_heads 3", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_TensorWithTheWrongShape_FailsWithCheckpointShapeMismatchNamingTheTensor()
    {
        // Weights made for intermediate_size 512 under the tiny config, which says 768.
        var folder = _work.Combine("wrong-shape");
        Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "7", "--intermediate-size", "512", "--out", folder);
        File.Copy(Path.Combine(models.TinyFolder, "config.json"), Path.Combine(folder, "config.json"), overwrite: true);
        var error = AssertExportFails(folder, ErrorCode.CheckpointShapeMismatch);
        Assert.Contains("model.layers.0.mlp.gate_proj.weight", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_ShardedCheckpointMissingAShard_FailsWithCheckpointShardMissing()
    {
        var folder = _work.Combine("sharded");
        var config = MistralConfig.Load(models.TinyFolder);
        HfCheckpointWriter.Write(folder, config, BaseModelFactory.RandomWeights(config, seed: 7).ToList(), maxShardBytes: 4L << 20);
        File.Copy(Path.Combine(models.TinyFolder, "tokenizer.model"), Path.Combine(folder, "tokenizer.model"));
        Assert.True(File.Exists(Path.Combine(folder, CheckpointLayout.IndexFileName)));
        var shards = Directory.GetFiles(folder, "model-*-of-*.safetensors").Order(StringComparer.Ordinal).ToArray();
        Assert.True(shards.Length >= 3, $"expected several shards, got {shards.Length}");
        File.Delete(shards[1]);
        var error = AssertExportFails(folder, ErrorCode.CheckpointShardMissing);
        Assert.Contains(Path.GetFileName(shards[1]), error, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_TokenizerWhoseVocabularyDisagreesWithConfig_FailsWithTokenizerVocabMismatch()
    {
        var other = _work.Combine("vocab-512");
        Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "7", "--vocab-size", "512", "--out", other);
        var folder = CopyOfTiny("mixed-tokenizer");
        File.Copy(Path.Combine(other, "tokenizer.model"), Path.Combine(folder, "tokenizer.model"), overwrite: true);
        var error = AssertExportFails(folder, ErrorCode.TokenizerVocabMismatch);
        Assert.Contains("1024", error, StringComparison.Ordinal);
        Assert.Contains("512", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Inspect_TruncatedGguf_FailsWithGgufTruncated() =>
        AssertFailsWithoutWriting(ErrorCode.GgufTruncated, _work.Path, "inspect", TruncatedGguf());

    [Fact]
    public void Generate_TruncatedGguf_FailsWithGgufTruncated() =>
        AssertFailsWithoutWriting(ErrorCode.GgufTruncated, _work.Path,
            "generate", "--model", TruncatedGguf(), "--prompt", "Hello", "--max-tokens", "4");

    [Fact]
    public void Inspect_GgufWithBadMagic_FailsWithGgufBadMagic() =>
        AssertFailsWithoutWriting(ErrorCode.GgufBadMagic, _work.Path, "inspect", BadMagicGguf());

    [Fact]
    public void Generate_GgufWithBadMagic_FailsWithGgufBadMagic() =>
        AssertFailsWithoutWriting(ErrorCode.GgufBadMagic, _work.Path,
            "generate", "--model", BadMagicGguf(), "--prompt", "Hello", "--max-tokens", "4");

    [Fact]
    public void UnknownVerb_FailsWithUnknownCommand() =>
        AssertFailsWithoutWriting(ErrorCode.UnknownCommand, _work.Path, "frobnicate", "--out", _work.Combine("x.gguf"));

    [Fact]
    public void UnknownOption_FailsWithInvalidArgumentNamingIt()
    {
        var error = AssertFailsWithoutWriting(ErrorCode.InvalidArgument, _work.Path,
            "export", "--model", models.TinyFolder, "--out", _work.Combine("x.gguf"), "--type", "f32", "--quantise");
        Assert.Contains("--quantise", error, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingRequiredOption_FailsWithMissingArgumentNamingIt()
    {
        var error = AssertFailsWithoutWriting(ErrorCode.MissingArgument, _work.Path,
            "export", "--model", models.TinyFolder, "--out", _work.Combine("x.gguf"));
        Assert.Contains("--type", error, StringComparison.Ordinal);
    }

    [Fact]
    public void BadType_FailsWithInvalidArgumentListingTheValidTypes()
    {
        var error = AssertFailsWithoutWriting(ErrorCode.InvalidArgument, _work.Path,
            "export", "--model", models.TinyFolder, "--out", _work.Combine("x.gguf"), "--type", "q4_k_xl");
        Assert.Contains("'q4_k_xl'", error, StringComparison.Ordinal);
        Assert.Contains("F32, F16, BF16, Q8_0", error, StringComparison.Ordinal);
        Assert.Contains("Q4_K_M", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_ToAnExistingFileWithoutForce_RefusesAndLeavesTheFileUntouched()
    {
        var existing = _work.Combine("model.gguf");
        File.WriteAllText(existing, "a file the user cares about");
        var error = AssertFailsWithoutWriting(ErrorCode.OutputExists, _work.Path,
            "export", "--model", models.TinyFolder, "--out", existing, "--type", "f32");
        Assert.Contains("--force", error, StringComparison.Ordinal);
        Assert.Equal("a file the user cares about", File.ReadAllText(existing));
    }

    /// <summary>Exports into a fresh, empty folder and asserts it stays empty.</summary>
    private string AssertExportFails(string modelFolder, ErrorCode expected)
    {
        var output = Directory.CreateDirectory(_work.Combine("out-" + Guid.NewGuid().ToString("N"))).FullName;
        return AssertFailsWithoutWriting(expected, output,
            "export", "--model", modelFolder, "--out", Path.Combine(output, "model.gguf"), "--type", "f16");
    }

    /// <summary>
    /// Runs the CLI and asserts: non-zero exit, exactly one stderr line, in MSBuild diagnostic format with the
    /// expected code, nothing on stdout, and <paramref name="watchedFolder"/> holding exactly the files it held before.
    /// Returns the diagnostic line.
    /// </summary>
    private static string AssertFailsWithoutWriting(ErrorCode expected, string watchedFolder, params string[] args)
    {
        var before = Listing(watchedFolder);
        var result = Cli.Run(args);
        Assert.NotEqual(0, result.ExitCode);
        var line = Assert.Single(result.ErrorLines);
        Assert.Matches(Cli.Diagnostic(), line);
        Assert.Contains($": error ERTAS{(int)expected:D4}: ", line, StringComparison.Ordinal);
        Assert.Equal("", result.Out);
        Assert.Equal(before, Listing(watchedFolder));
        return line;
    }

    private static string[] Listing(string folder) =>
        Directory.GetFiles(folder, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(folder, f))
            .Order(StringComparer.Ordinal)
            .ToArray();

    private string CopyOfTiny(string name)
    {
        var target = Directory.CreateDirectory(_work.Combine(name)).FullName;
        foreach (var file in Directory.GetFiles(models.TinyFolder))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        return target;
    }

    private static void Truncate(string path, double keepFraction)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.SetLength((long)(stream.Length * keepFraction));
    }

    private static void EditConfig(string folder, Action<JsonObject> edit)
    {
        var path = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(config);
        File.WriteAllText(path, config.ToJsonString());
    }

    private string TruncatedGguf()
    {
        var path = _work.Combine("truncated.gguf");
        using var source = File.OpenRead(models.TinyF32);
        using var target = File.Create(path);
        var buffer = new byte[source.Length * 2 / 3];
        source.ReadExactly(buffer);
        target.Write(buffer);
        return path;
    }

    private string BadMagicGguf()
    {
        var path = _work.Combine("bad-magic.gguf");
        var bytes = File.ReadAllBytes(models.TinyF32);
        "GGML"u8.CopyTo(bytes); // an older llama.cpp format's magic, or any file renamed to .gguf
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
