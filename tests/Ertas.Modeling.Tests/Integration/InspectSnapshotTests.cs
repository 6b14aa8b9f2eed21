using System.Text.Json.Nodes;
using Snapshooter.Xunit;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// <c>ertas inspect</c> is what users read to check an export, so its text is pinned by a snapshot: any change to the
/// exporter's metadata or tensor table, or to the report's layout, shows up as a diff in review.
/// </summary>
[Collection(CliModelsCollection.Name)]
public sealed class InspectSnapshotTests(CliModels models)
{
    [Fact]
    public void InspectText_OfASmallF16Export_MatchesTheSnapshot()
    {
        var result = Cli.Run("inspect", models.InspectF16);
        Assert.Equal(0, result.ExitCode);
        Assert.Empty(result.ErrorLines);
        Assert.DoesNotContain(Path.GetTempPath(), result.Out, StringComparison.Ordinal);
        Snapshot.Match(result.Out);
    }

    [Fact]
    public void InspectJson_OfASmallF16Export_DescribesTheFileAndAgreesWithTheText()
    {
        var result = Cli.Run("inspect", models.InspectF16, "--json");
        Assert.Equal(0, result.ExitCode);
        Assert.Empty(result.ErrorLines);
        var root = JsonNode.Parse(result.Out)!.AsObject();

        Assert.Equal("inspect-tiny-f16.gguf", (string?)root["file"]);
        Assert.Equal(3, (int)root["version"]!);
        Assert.Equal(32, (int)root["alignment"]!);

        var metadata = root["metadata"]!.AsObject();
        Assert.Equal("llama", (string?)metadata["general.architecture"]);
        Assert.Equal("inspect-tiny", (string?)metadata["general.name"]);
        Assert.Equal(1, (int)metadata["general.file_type"]!); // LLAMA_FTYPE_MOSTLY_F16
        Assert.Equal(2, (int)metadata["llama.block_count"]!);
        Assert.Equal(64, (int)metadata["llama.embedding_length"]!);
        Assert.Equal(128, (int)metadata["llama.feed_forward_length"]!);
        Assert.Equal(4, (int)metadata["llama.attention.head_count"]!);
        Assert.Equal(2, (int)metadata["llama.attention.head_count_kv"]!);
        Assert.Equal(16, (int)metadata["llama.rope.dimension_count"]!);
        Assert.Equal(1024, (int)metadata["llama.vocab_size"]!);
        var tokens = metadata["tokenizer.ggml.tokens"]!.AsObject();
        Assert.Equal("array", (string?)tokens["type"]);
        Assert.Equal(1024, (int)tokens["count"]!);
        Assert.Equal(["<unk>", "<s>", "</s>"], tokens["head"]!.AsArray().Take(3).Select(n => (string)n!));
        Assert.Equal(1, (int)metadata["tokenizer.ggml.bos_token_id"]!);
        Assert.Equal(2, (int)metadata["tokenizer.ggml.eos_token_id"]!);

        // embed + 2 layers x 9 + output_norm + output; matrices in F16, norms stay F32.
        var tensors = root["tensors"]!.AsArray().Select(t => t!.AsObject()).ToList();
        var text = Cli.Run("inspect", models.InspectF16).Out;
        Assert.Equal(21, tensors.Count);
        long weights = 0, bytes = 0;
        foreach (var t in tensors)
        {
            var shape = t["shape"]!.AsArray().Select(d => (long)d!).ToArray();
            var elements = shape.Aggregate(1L, (a, b) => a * b);
            var type = (string)t["type"]!;
            Assert.Equal(shape.Length == 1 ? "F32" : "F16", type);
            Assert.Equal(elements * (type == "F32" ? 4 : 2), (long)t["bytes"]!);
            weights += elements;
            bytes += (long)t["bytes"]!;
            Assert.Contains($"  {(string)t["name"]!} ", text, StringComparison.Ordinal);
        }
        Assert.Equal(["token_embd.weight", "blk.0.attn_norm.weight"], tensors.Take(2).Select(t => (string)t["name"]!));
        Assert.Equal([1024L, 64L], tensors[0]["shape"]!.AsArray().Select(d => (long)d!));
        Assert.Equal([32L, 64L], tensors.Single(t => (string)t["name"]! == "blk.1.attn_k.weight")["shape"]!.AsArray().Select(d => (long)d!));
        Assert.Equal(205_120, weights);
        Assert.Equal(weights, (long)root["weights"]!);
        Assert.Equal(bytes, (long)root["tensor_bytes"]!);
        Assert.Equal(Math.Round(bytes * 8.0 / weights, 4), (double)root["bits_per_weight"]!);
    }
}
