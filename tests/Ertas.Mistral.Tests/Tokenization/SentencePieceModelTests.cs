using Ertas.Core;
using Ertas.Mistral.Tokenization;
using Microsoft.ML.Tokenizers;

namespace Ertas.Mistral.Tests.Tokenization;

public class SentencePieceModelTests
{
    [SkippableFact]
    public void RealMistralFile_ReadThenWritten_IsByteIdentical()
    {
        var original = File.ReadAllBytes(SharedMistralFiles.TokenizerV1);
        var model = SentencePieceModel.Parse(original, "tokenizer.model.v1");
        var written = model.ToBytes();
        Assert.Equal(original.Length, written.Length);
        Assert.True(original.AsSpan().SequenceEqual(written), "re-serialized tokenizer.model.v1 differs from the original");
    }

    [SkippableFact]
    public void RealMistralFile_ExposesTrainerAndNormalizerFacts()
    {
        var model = SentencePieceModel.Load(SharedMistralFiles.TokenizerV1);
        Assert.Equal(32000, model.Count);
        Assert.Equal(SentencePieceModelType.Bpe, model.ModelType);
        Assert.Equal(32000, model.Trainer!.VocabSize);
        Assert.True(model.ByteFallback);
        Assert.True(model.SplitDigits);
        Assert.Equal((0, 1, 2, -1), (model.UnkId, model.BosId, model.EosId, model.PadId));
        Assert.Equal("identity", model.NormalizerName);
        Assert.True(model.AddDummyPrefix);
        Assert.False(model.RemoveExtraWhitespaces);
        Assert.True(model.Normalizer!.EscapeWhitespaces);
    }

    [SkippableFact]
    public void RealMistralFile_PiecesScoresAndTypesMatchMistralsLayout()
    {
        var model = SentencePieceModel.Load(SharedMistralFiles.TokenizerV1);
        Assert.Equal(new SentencePiece("<unk>", 0f, SentencePieceType.Unknown), model[0]);
        Assert.Equal(new SentencePiece("<s>", 0f, SentencePieceType.Control), model[1]);
        Assert.Equal(new SentencePiece("</s>", 0f, SentencePieceType.Control), model[2]);
        Assert.Equal(new SentencePiece("<0x00>", 0f, SentencePieceType.Byte), model[3]);
        Assert.Equal(new SentencePiece("<0xFF>", 0f, SentencePieceType.Byte), model[258]);
        Assert.Equal(new SentencePiece("▁t", -2f, SentencePieceType.Normal), model[261]);
        Assert.Equal(new SentencePiece("in", -3f, SentencePieceType.Normal), model[262]);
        var counts = model.Types.GroupBy(t => t).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(31741, counts[SentencePieceType.Normal]);
        Assert.Equal(1, counts[SentencePieceType.Unknown]);
        Assert.Equal(2, counts[SentencePieceType.Control]);
        Assert.Equal(256, counts[SentencePieceType.Byte]);
        Assert.Equal(1, model.IdOf("<s>"));
        Assert.Equal(-1, model.IdOf("no such piece here"));
    }

    [SkippableFact]
    public void RealMistralFile_PieceIdsAgreeWithMicrosoftMlTokenizers()
    {
        var path = SharedMistralFiles.TokenizerV1;
        var model = SentencePieceModel.Load(path);
        using var stream = File.OpenRead(path);
        var reference = LlamaTokenizer.Create(stream);
        var mismatches = reference.Vocabulary.Where(kv => model.Pieces[kv.Value] != kv.Key).Take(5).ToList();
        Assert.True(mismatches.Count == 0, "first mismatches: " + string.Join(", ", mismatches));
    }

    [SkippableFact]
    public void RealMistralFile_GgufTokenTypesUseGgufNumbering()
    {
        var types = SentencePieceModel.Load(SharedMistralFiles.TokenizerV1).GgufTokenTypes();
        // FACTS §3: 1 normal, 2 unknown, 3 control, 6 byte.
        Assert.Equal([2, 3, 3, 6], types[..4]);
        Assert.Equal(6, types[258]);
        Assert.Equal(1, types[259]);
        Assert.Equal(32000, types.Length);
    }

    [Fact]
    public void BuiltModel_SurvivesWriteAndRead_IncludingNegativePadId()
    {
        var pieces = new[]
        {
            new SentencePiece("<unk>", 0f, SentencePieceType.Unknown),
            new SentencePiece("<s>", 0f, SentencePieceType.Control),
            new SentencePiece("</s>", 0f, SentencePieceType.Control),
            new SentencePiece("<pad>", 0f, SentencePieceType.UserDefined),
            new SentencePiece("▁é", -1.5f),
            new SentencePiece("x", -2.25f, SentencePieceType.Unused),
        };
        var model = new SentencePieceModel(pieces, TrainerSpec.ForBpe(6, padId: -1), NormalizerSpec.Identity());
        var back = SentencePieceModel.Parse(model.ToBytes(), "built");
        Assert.Equal(pieces, Enumerable.Range(0, back.Count).Select(i => back[i]));
        Assert.Equal(-1, back.PadId);
        Assert.Equal(6, back.Trainer!.VocabSize);
        Assert.Equal(model.ToBytes(), back.ToBytes());
    }

    [Fact]
    public void Save_WritesAFileThatLoadsBack()
    {
        using var folder = new ScratchFolder();
        var model = SentencePieceBpeTrainer.TrainDefault(400);
        var path = folder.File("sub/tokenizer.model");
        model.Save(path);
        Assert.Equal(model.ToBytes(), File.ReadAllBytes(path));
        Assert.Equal(model.Pieces, SentencePieceModel.Load(path).Pieces);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!));
    }

    [Fact]
    public void Load_MissingFile_ThrowsTokenizerMissingNamingThePath()
    {
        using var folder = new ScratchFolder();
        var path = folder.File("tokenizer.model");
        var e = Assert.Throws<ErtasException>(() => SentencePieceModel.Load(path));
        Assert.Equal(ErrorCode.TokenizerMissing, e.Code);
        Assert.Equal(path, e.File);
    }

    public static TheoryData<string, byte[]> NotModelProtos() => new()
    {
        { "truncated varint", [0x0A, 0x85] },
        { "length past the end", [0x0A, 0x10, 0x0A, 0x01] },
        { "pieces as a varint", [0x08, 0x01] },
        { "group wire type", [0x0B, 0x0C] },
        { "JSON text", "{\"messages\": []}"u8.ToArray() },
        { "no pieces, only a normalizer spec", [0x1A, 0x02, 0x18, 0x01] },
        { "empty file", [] },
        { "piece score as varint", [0x0A, 0x05, 0x0A, 0x01, (byte)'a', 0x10, 0x00] },
        { "piece type out of range", [0x0A, 0x0A, 0x0A, 0x01, (byte)'a', 0x15, 0, 0, 0, 0, 0x18, 0x09] },
        { "piece text not UTF-8", [0x0A, 0x03, 0x0A, 0x01, 0xFF] },
        { "trainer model_type as a string", [0x0A, 0x03, 0x0A, 0x01, (byte)'a', 0x12, 0x03, 0x1A, 0x01, (byte)'x'] },
    };

    [Theory]
    [MemberData(nameof(NotModelProtos))]
    public void Parse_NotAModelProto_ThrowsTokenizerCorruptNamingTheFile(string what, byte[] bytes)
    {
        var e = Assert.Throws<ErtasException>(() => SentencePieceModel.Parse(bytes, "/data/bad.model"));
        Assert.Equal(ErrorCode.TokenizerCorrupt, e.Code);
        Assert.Equal("/data/bad.model", e.File);
        Assert.Contains("/data/bad.model", e.Message);
        Assert.False(string.IsNullOrEmpty(what));
    }

    [Fact]
    public void Parse_TruncatedRealModel_ThrowsTokenizerCorrupt()
    {
        var bytes = SentencePieceBpeTrainer.TrainDefault(400).ToBytes();
        var e = Assert.Throws<ErtasException>(() => SentencePieceModel.Parse(bytes.AsSpan(0, bytes.Length - 3), "cut.model"));
        Assert.Equal(ErrorCode.TokenizerCorrupt, e.Code);
    }
}
