using System.Text;
using Ertas.Core;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Tests.Tokenization;

public class SentencePieceBpeTrainerTests
{
    private static readonly string[] VariedTexts =
    [
        "Hello, world!",
        "The bread was baked at 220 degrees for 35 minutes.",
        "  two  spaces and a trailing one ",
        "line one\nline two\twith a tab",
        "Quotes \"like this\", (parentheses) and it's 3:17 - or 15%?",
        "UPPER lower MiXeD CamelCaseWords supercalifragilistic",
        "emoji 😀 and CJK 中文 and accents: naïve café",
        "1234567890",
        "a",
        "",
    ];

    [Fact]
    public void TrainDefault_LaysOutPiecesLikeMistral()
    {
        var model = SentencePieceBpeTrainer.TrainDefault(512);
        Assert.Equal(512, model.Count);
        Assert.Equal(new SentencePiece("<unk>", 0f, SentencePieceType.Unknown), model[0]);
        Assert.Equal(new SentencePiece("<s>", 0f, SentencePieceType.Control), model[1]);
        Assert.Equal(new SentencePiece("</s>", 0f, SentencePieceType.Control), model[2]);
        for (var b = 0; b < 256; b++)
            Assert.Equal(new SentencePiece($"<0x{b:X2}>", 0f, SentencePieceType.Byte), model[3 + b]);
        for (var id = 259; id < model.Count; id++)
        {
            Assert.Equal(SentencePieceType.Normal, model.Types[id]);
            Assert.Equal(-(id - 259), model.Scores[id]); // 0, -1, -2, ... through merges and then characters
        }
        Assert.Equal(2, model.Pieces[259].EnumerateRunes().Count()); // the first merge comes first
        Assert.Single(model.Pieces[^1].EnumerateRunes());   // single characters come last
    }

    [Fact]
    public void TrainDefault_WritesMistralsTrainerAndNormalizerSpecs()
    {
        var model = SentencePieceModel.Parse(SentencePieceBpeTrainer.TrainDefault(600).ToBytes(), "trained");
        Assert.Equal(SentencePieceModelType.Bpe, model.ModelType);
        Assert.Equal(600, model.Trainer!.VocabSize);
        Assert.True(model.ByteFallback);
        Assert.True(model.SplitDigits);
        Assert.Equal((0, 1, 2, -1), (model.UnkId, model.BosId, model.EosId, model.PadId));
        Assert.Equal("identity", model.NormalizerName);
        Assert.True(model.AddDummyPrefix);
        Assert.False(model.RemoveExtraWhitespaces);
        Assert.True(model.Normalizer!.EscapeWhitespaces);
    }

    [Fact]
    public void TrainDefault_SameSize_GivesSameBytes()
    {
        Assert.Equal(SentencePieceBpeTrainer.TrainDefault(700).ToBytes(), SentencePieceBpeTrainer.TrainDefault(700).ToBytes());
    }

    [Fact]
    public void TrainDefault_SmallerVocabulary_IsAPrefixOfTheLargerOnesMerges()
    {
        var small = SentencePieceBpeTrainer.TrainDefault(400);
        var large = SentencePieceBpeTrainer.TrainDefault(800);
        var smallMerges = small.Pieces.Skip(259).Where(p => p.EnumerateRunes().Count() > 1).ToList();
        Assert.Equal(smallMerges, large.Pieces.Skip(259).Take(smallMerges.Count));
    }

    [Fact]
    public void Train_LearnedPieces_RespectSentencePieceRules()
    {
        var model = SentencePieceBpeTrainer.TrainDefault(1500);
        foreach (var piece in model.Pieces.Skip(259))
        {
            var runes = piece.EnumerateRunes().ToArray();
            Assert.True(runes.Length <= SentencePieceBpeTrainer.MaxPieceLength, piece);
            Assert.False(runes.Skip(1).Any(r => r.Value == SentencePieceBpeTrainer.WordBoundary), $"'{piece}' has ▁ inside");
            if (runes.Length > 1)
                Assert.False(runes.Any(Rune.IsDigit), $"'{piece}' merges a digit");
        }
        Assert.Equal(model.Count, model.Pieces.Distinct(StringComparer.Ordinal).Count());
        Assert.Contains("▁", model.Pieces);
        Assert.Contains("▁the", model.Pieces);
    }

    [Fact]
    public void Train_EveryCharacterOfTheText_IsAPiece()
    {
        const string text = "Zebras zig-zag; 42 oxen? Yes!";
        var model = SentencePieceBpeTrainer.Train(text, 320);
        foreach (var rune in text.Replace(' ', SentencePieceBpeTrainer.WordBoundary).EnumerateRunes())
            Assert.True(model.IdOf(rune.ToString()) >= 259, $"'{rune}' is missing");
    }

    [Theory]
    [InlineData(300)]
    [InlineData(512)]
    [InlineData(1000)]
    [InlineData(2000)]
    public void TrainDefault_SupportedSizes_FillTheRequestedVocabulary(int vocabSize)
    {
        var model = SentencePieceBpeTrainer.TrainDefault(vocabSize);
        Assert.Equal(vocabSize, model.Count);
        Assert.Equal(vocabSize, model.Trainer!.VocabSize);
    }

    [Fact]
    public void Train_TextWithTooFewMerges_StopsEarlyAndReportsTheRealSize()
    {
        var model = SentencePieceBpeTrainer.Train("abc abc", 1000);
        // Characters ▁ a b c and merges ab, abc, ▁abc (ties go to the ordinally smallest piece): 259 + 4 + 3.
        Assert.Equal(266, model.Count);
        Assert.Equal(266, model.Trainer!.VocabSize);
        Assert.Contains("▁abc", model.Pieces);
    }

    [Fact]
    public void Train_VocabularyWithNoRoomForCharacters_ThrowsNamingTheMinimum()
    {
        var e = Assert.Throws<ErtasException>(() => SentencePieceBpeTrainer.Train("abc abc", 259));
        Assert.Equal(ErrorCode.InvalidArgument, e.Code);
        Assert.Contains("260", e.Message);
    }

    [Fact]
    public void Train_MoreCharactersThanFit_LeavesOutTheRarestWhichEncodeAsBytes()
    {
        // 'q' and 'z' appear once each, 'a' 8 times, '▁' 7. Budget 4: three characters and one merge.
        var model = SentencePieceBpeTrainer.Train("aa aa aa ab ab q z", 263);
        Assert.Equal(263, model.Count);
        Assert.Equal(["▁a", "a", "▁", "b"], model.Pieces.Skip(259));
        var tokenizer = MistralTokenizer.FromModel(model);
        Assert.Equal([3 + 'q'], tokenizer.Encode("q", addBos: false).Skip(1));
        Assert.Equal("ab qz", tokenizer.Decode(tokenizer.Encode("ab qz", addBos: false)));
    }

    [Fact]
    public void TrainDefault_SmallestSupportedSize_StillRoundTripsText()
    {
        var tokenizer = MistralTokenizer.FromModel(SentencePieceBpeTrainer.TrainDefault(300));
        Assert.Equal(300, tokenizer.VocabSize);
        foreach (var text in VariedTexts)
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text, addBos: true)));
    }

    [Fact]
    public void TrainedTokenizer_EncodeThenDecode_GivesTheTextBack()
    {
        var tokenizer = MistralTokenizer.FromModel(SentencePieceBpeTrainer.TrainDefault(1000));
        foreach (var text in VariedTexts)
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text, addBos: true)));
    }

    [Fact]
    public void TrainedTokenizer_SavedAndLoaded_EncodesTheSame()
    {
        using var folder = new ScratchFolder();
        var model = SentencePieceBpeTrainer.TrainDefault(512);
        model.Save(folder.File("tokenizer.model"));
        var fromFile = MistralTokenizer.Load(folder.File("tokenizer.model"));
        var inMemory = MistralTokenizer.FromModel(model);
        foreach (var text in VariedTexts)
            Assert.Equal(inMemory.Encode(text, false), fromFile.Encode(text, false));
    }

    [Fact]
    public void TrainedTokenizer_UnknownCharacters_BecomeTheirUtf8Bytes()
    {
        var tokenizer = MistralTokenizer.FromModel(SentencePieceBpeTrainer.TrainDefault(512));
        foreach (var character in new[] { "😀", "中", "文", "ß" })
        {
            var ids = tokenizer.Encode(character, addBos: false);
            var expected = Encoding.UTF8.GetBytes(character).Select(b => 3 + b).ToArray();
            Assert.Equal(tokenizer.Model.IdOf("▁"), ids[0]);
            Assert.Equal(expected, ids.Skip(1));
        }
    }

    [Fact]
    public void TrainedTokenizer_EncodesCommonWordsAsWholePieces()
    {
        var tokenizer = MistralTokenizer.FromModel(SentencePieceBpeTrainer.TrainDefault(1000));
        var ids = tokenizer.Encode("the bread", addBos: false);
        Assert.Equal(["▁the", "▁bread"], ids.Select(tokenizer.IdToPiece));
    }

    /// <summary>
    /// Microsoft.ML.Tokenizers must agree with sentencepiece's (and llama.cpp's) algorithm: repeatedly merge the
    /// adjacent pair whose concatenation is the highest-scoring piece (leftmost on ties), then map leftover
    /// characters to byte pieces. Agreement on varied text shows the trained scores leave no room for the
    /// encoders to differ.
    /// </summary>
    [Fact]
    public void TrainedTokenizer_MatchesScoreGreedyReferenceEncoder()
    {
        var model = SentencePieceBpeTrainer.TrainDefault(1200);
        var tokenizer = MistralTokenizer.FromModel(model);
        var texts = VariedTexts.Concat(SampleSentences()).ToList();
        foreach (var text in texts)
            Assert.Equal(ReferenceEncode(model, text), tokenizer.Encode(text, addBos: false));
    }

    private static IEnumerable<string> SampleSentences() =>
    [
        "The keeper climbed the steps of the lighthouse every night.",
        "Programmers spend much of their time testing and reading error messages.",
        "Rivers carry sand and stones downstream, carving valleys.",
        "Untrained words: xylophone quokka zeitgeist rhythm",
        "Punctuation!!! ... ??? ;;; --- \"\"",
    ];

    private static List<int> ReferenceEncode(SentencePieceModel model, string text)
    {
        if (text.Length == 0)
            return [];
        var symbols = ("▁" + text.Replace(' ', '▁')).EnumerateRunes().Select(r => r.ToString()).ToList();
        while (true)
        {
            var bestIndex = -1;
            var bestScore = float.NegativeInfinity;
            for (var i = 0; i + 1 < symbols.Count; i++)
            {
                var id = model.IdOf(symbols[i] + symbols[i + 1]);
                if (id >= 0 && model.Types[id] == SentencePieceType.Normal && model.Scores[id] > bestScore)
                    (bestIndex, bestScore) = (i, model.Scores[id]);
            }
            if (bestIndex < 0)
                break;
            symbols[bestIndex] += symbols[bestIndex + 1];
            symbols.RemoveAt(bestIndex + 1);
        }
        var ids = new List<int>();
        foreach (var symbol in symbols)
        {
            var id = model.IdOf(symbol);
            if (id >= 0)
                ids.Add(id);
            else
                ids.AddRange(Encoding.UTF8.GetBytes(symbol).Select(b => 3 + b));
        }
        return ids;
    }
}
