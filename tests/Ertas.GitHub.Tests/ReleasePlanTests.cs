using Ertas.Core;
using Ertas.Gguf;

namespace Ertas.GitHub.Tests;

public sealed class ReleasePlanTests : IDisposable
{
    private readonly ReleaseFixture _model = new();

    public void Dispose() => _model.Dispose();

    [Fact]
    public void The_assets_are_the_lock_outputs_the_lock_the_snapshot_the_card_and_SHA256SUMS_which_matches_every_file()
    {
        var release = _model.Prepare();

        Assert.Equal(
            ["Modelfile", ReleasePlan.ModelCardName, ReleasePlan.ChecksumsName, "Tiny-1.0.0.Q8_0.gguf", "Tiny-1.0.0.lora.gguf", "Tiny.Q8_0.verified.json", ModelLock.FileName],
            release.Assets.Select(a => a.Name).Order(StringComparer.Ordinal));
        Assert.Equal("v1.0.0", release.Tag);
        Assert.False(release.Prerelease);

        var sumsPath = Path.Combine(release.StagingDirectory, ReleasePlan.ChecksumsName);
        var lines = File.ReadAllText(sumsPath).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var expected = release.Assets.Where(a => a.Kind != ReleaseFileKind.Checksums)
            .OrderBy(a => a.Name, StringComparer.Ordinal)
            .Select(a => $"{ReleaseFixture.Sha256(a.Path)}  {a.Name}");
        Assert.Equal(expected, lines);
        Assert.Equal(release.Sha256Sums, File.ReadAllText(sumsPath));
        Assert.All(release.Assets, a => Assert.Equal(new FileInfo(a.Path).Length, a.Bytes));
    }

    [Fact]
    public void An_output_changed_after_the_build_is_refused_naming_the_file_and_saying_to_rebuild()
    {
        File.AppendAllText(_model.GgufPath, "x");

        var e = Assert.Throws<ErtasException>(() => _model.Prepare());

        Assert.Equal(ErrorCode.ReleaseAssetStale, e.Code);
        Assert.Contains(_model.GgufName, e.Message, StringComparison.Ordinal);
        Assert.Contains("rebuild", e.Message, StringComparison.Ordinal);
        Assert.Equal(_model.GgufPath, e.File);
    }

    [Fact]
    public void An_output_of_the_same_size_with_other_bytes_is_refused_by_its_hash()
    {
        var bytes = File.ReadAllBytes(_model.GgufPath);
        bytes[^1] ^= 0xFF;
        File.WriteAllBytes(_model.GgufPath, bytes);

        var e = Assert.Throws<ErtasException>(() => _model.Prepare());

        Assert.Equal(ErrorCode.ReleaseAssetStale, e.Code);
        Assert.Contains("SHA-256", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_gguf_over_the_largest_asset_is_split_into_shards_that_merge_back_byte_for_byte_and_the_card_says_how()
    {
        const long max = 10_000;
        var original = File.ReadAllBytes(_model.GgufPath);
        Assert.True(original.Length > max);

        var release = _model.Prepare(_model.DefaultOptions() with { MaxAssetBytes = max });

        var split = Assert.Single(release.Splits);
        Assert.Equal(_model.GgufName, split.Name);
        Assert.True(split.Shards.Count >= 2, $"{split.Shards.Count} shards");
        Assert.Null(release.Find(_model.GgufName));
        Assert.Equal($"Tiny-1.0.0.Q8_0-00001-of-{split.Shards.Count:D5}.gguf", split.Shards[0]);
        var shards = split.Shards.Select(n => release.Find(n)!).ToList();
        Assert.All(shards, s => Assert.True(s.Bytes <= max, $"{s.Name} is {s.Bytes} bytes"));
        Assert.All(shards, s => Assert.Equal(ReleaseFileKind.GgufShard, s.Kind));

        var merged = Path.Combine(_model.Staging("merged"), "joined.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(merged)!);
        GgufSplit.Merge(shards[0].Path, merged);
        Assert.Equal(original, File.ReadAllBytes(merged));

        var card = File.ReadAllText(release.Find(ReleasePlan.ModelCardName)!.Path);
        Assert.Contains($"llama-gguf-split --merge {split.Shards[0]} {_model.GgufName}", card, StringComparison.Ordinal);
        Assert.Contains($"ertas gguf merge {split.Shards[0]} {_model.GgufName}", card, StringComparison.Ordinal);
        Assert.Contains($"llama-cli -m {split.Shards[0]} -cnv", card, StringComparison.Ordinal);
        Assert.Contains(ReleaseFixture.Sha256(_model.GgufPath), card, StringComparison.Ordinal);
        Assert.Contains("Ollama needs one file", card, StringComparison.Ordinal);
        Assert.Contains("shards", release.Notes, StringComparison.Ordinal);
    }

    [Fact]
    public void The_model_card_has_Hugging_Face_front_matter_from_the_GGUF_metadata_and_the_lock()
    {
        var release = _model.Prepare();
        var card = File.ReadAllText(release.Find(ReleasePlan.ModelCardName)!.Path);

        var frontMatter = card[..(card.IndexOf("\n---\n", 4, StringComparison.Ordinal) + 5)];
        Assert.Equal(
            "---\n"
            + "license: \"apache-2.0\"\n"
            + "base_model: \"mistralai/Mistral-7B-v0.1\"\n"
            + "base_model_relation: finetune\n"
            + "pipeline_tag: text-generation\n"
            + "tags:\n- gguf\n- mistral\n- lora\n- llama.cpp\n- ollama\n- ertas\n"
            + "datasets:\n- \"capitals\"\n"
            + "---\n",
            frontMatter);
        Assert.Contains("# Tiny 1.0.0\n\nAnswers questions about capital cities.", card, StringComparison.Ordinal);
        Assert.Contains("[`0123456789ab`](https://github.example/octo/models/commit/0123456789abcdef0123456789abcdef01234567)", card, StringComparison.Ordinal);
        Assert.Contains("| Tiny.Q8_0.verified.json | `Tiny-1.0.0.Q8_0.gguf` | 12 | 11 | 91.7 % | mean_score 0.9167, mean_target_nll 0.018 |", card, StringComparison.Ordinal);
        Assert.Contains("llama-cli -m Tiny-1.0.0.Q8_0.gguf -cnv", card, StringComparison.Ordinal);
        Assert.Contains("llama-server -m Tiny-1.0.0.Q8_0.gguf", card, StringComparison.Ordinal);
        Assert.Contains("ollama create tiny -f Modelfile", card, StringComparison.Ordinal);
        Assert.Contains("sha256sum -c SHA256SUMS", card, StringComparison.Ordinal);
        Assert.Contains($"[`{_model.GgufName}`](https://github.example/octo/models/releases/download/v1.0.0/{_model.GgufName})", card, StringComparison.Ordinal);
        Assert.Contains(ReleaseFixture.Sha256(_model.GgufPath), card, StringComparison.Ordinal);
        Assert.DoesNotContain("Split GGUFs", card, StringComparison.Ordinal);
    }

    [Fact]
    public void Two_preparations_of_one_build_write_the_same_card_checksums_and_notes()
    {
        var first = _model.Prepare(staging: "a");
        var second = _model.Prepare(staging: "b");

        foreach (var name in new[] { ReleasePlan.ModelCardName, ReleasePlan.ChecksumsName })
        {
            Assert.Equal(File.ReadAllBytes(first.Find(name)!.Path), File.ReadAllBytes(second.Find(name)!.Path));
        }

        Assert.Equal(first.Notes, second.Notes);
        Assert.Equal(first.Sha256Sums, second.Sha256Sums);
    }

    [Fact]
    public void Two_files_with_one_asset_name_are_refused()
    {
        var other = Path.Combine(_model.Staging("elsewhere"), "Modelfile");
        Directory.CreateDirectory(Path.GetDirectoryName(other)!);
        File.WriteAllText(other, "FROM ./other.gguf\n");

        var e = Assert.Throws<ErtasException>(() => _model.Prepare(_model.DefaultOptions() with { ExtraAssets = [other] }));

        Assert.Equal(ErrorCode.ReleaseAssetInvalid, e.Code);
        Assert.Contains("'Modelfile'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tag_naming_another_version_is_refused_and_the_model_prefixed_form_is_accepted()
    {
        var e = Assert.Throws<ErtasException>(() => _model.Prepare(_model.DefaultOptions() with { Tag = "v1.0.1" }));
        Assert.Equal(ErrorCode.InvalidArgument, e.Code);
        Assert.Contains("v1.0.1", e.Message, StringComparison.Ordinal);

        Assert.Equal("Tiny-v1.0.0", _model.Prepare(_model.DefaultOptions() with { Tag = "Tiny-v1.0.0" }).Tag);
    }
}
