using System.Text.Json;
using Ertas.Core;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Tests.Tokenization;

public class MistralTokenizerTests
{
    private static int[] ConformanceIds() =>
        JsonDocument.Parse(File.ReadAllText(SharedMistralFiles.ConformanceTokensV1)).RootElement
            .GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [SkippableFact]
    public void Encode_FirstUserSegment_MatchesMistralCommonIds()
    {
        var expected = ConformanceIds()[1..20]; // after BOS, up to and including "]" of "[/INST]"
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        Assert.Equal(expected, tokenizer.Encode("[INST] What's the result of 5 + 5? [/INST]", addBos: false));
    }

    [SkippableFact]
    public void Load_RealFile_ReportsMistralSpecialIds()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        Assert.Equal((32000, 1, 2, 0), (tokenizer.VocabSize, tokenizer.BosId, tokenizer.EosId, tokenizer.UnkId));
        Assert.Equal("▁[", tokenizer.IdToPiece(733));
        Assert.Equal("<0x0A>", tokenizer.IdToPiece(13));
    }

    [SkippableFact]
    public void Encode_AddBos_PrependsBosAndNeverAddsEos()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        var plain = tokenizer.Encode("Thanks", addBos: false);
        Assert.Equal([1, .. plain], tokenizer.Encode("Thanks", addBos: true));
        Assert.DoesNotContain(2, plain);
        Assert.Equal([8868], plain); // "▁Thanks", as in the conformance sample
    }

    [SkippableFact]
    public void Encode_TextThatLooksLikeControlTokens_StaysText()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        var ids = tokenizer.Encode("<s>[INST] hi</s>", addBos: false);
        Assert.DoesNotContain(tokenizer.BosId, ids);
        Assert.DoesNotContain(tokenizer.EosId, ids);
        Assert.Equal("<s>[INST] hi</s>", tokenizer.Decode(ids));
    }

    [SkippableFact]
    public void Encode_NewlinesAndTabs_UseBytePieces()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        var ids = tokenizer.Encode("a\nb\tc", addBos: false);
        Assert.Contains(13, ids); // <0x0A>
        Assert.Contains(12, ids); // <0x09>
    }

    [SkippableFact]
    public void Decode_LeavesOutControlTokensAndRestoresText()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        foreach (var text in new[] { "Hello world", "  two  spaces\nand a newline", " leading space", "Zürich 😀 中文 5 + 5 = 10" })
        {
            var ids = tokenizer.Encode(text, addBos: true).Append(tokenizer.EosId);
            Assert.Equal(text, tokenizer.Decode(ids));
        }
    }

    [SkippableFact]
    public void Decode_IdOutsideVocabulary_Throws()
    {
        var tokenizer = MistralTokenizer.Load(SharedMistralFiles.TokenizerV1);
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([1, 32000]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.IdToPiece(-1));
    }

    [Fact]
    public void Load_MissingFile_ThrowsTokenizerMissing()
    {
        using var folder = new ScratchFolder();
        var e = Assert.Throws<ErtasException>(() => MistralTokenizer.Load(folder.File("tokenizer.model")));
        Assert.Equal(ErrorCode.TokenizerMissing, e.Code);
    }

    [Fact]
    public void Load_FileThatIsNotAModel_ThrowsTokenizerCorruptNamingIt()
    {
        using var folder = new ScratchFolder();
        var path = folder.File("tokenizer.model");
        File.WriteAllText(path, "{\"this\": \"is tokenizer.json, not tokenizer.model\"}");
        var e = Assert.Throws<ErtasException>(() => MistralTokenizer.Load(path));
        Assert.Equal(ErrorCode.TokenizerCorrupt, e.Code);
        Assert.Equal(path, e.File);
    }

    [Fact]
    public void FromModel_UnigramModel_IsRejectedAsNotBpe()
    {
        var bpe = SentencePieceBpeTrainer.TrainDefault(400);
        var unigramSpec = new TrainerSpec(bpe.Trainer!.Fields.Select(f => f.Number == 3 ? ProtoField.Int32(3, 1) : f));
        var unigram = new SentencePieceModel(Enumerable.Range(0, bpe.Count).Select(i => bpe[i]).ToList(), unigramSpec, bpe.Normalizer!);
        var e = Assert.Throws<ErtasException>(() => MistralTokenizer.FromModel(unigram));
        Assert.Equal(ErrorCode.TokenizerCorrupt, e.Code);
        Assert.Contains("BPE", e.Message);
    }
}
