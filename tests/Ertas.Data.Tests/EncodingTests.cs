using System.Text.Json;
using Ertas.Core;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Data.Tests;

public sealed class EncodingTests
{
    /// <summary>Maximal runs of consecutive trained ids.</summary>
    private static List<int[]> TrainedRuns(EncodedExample encoded)
    {
        var runs = new List<int[]>();
        var current = new List<int>();
        for (var i = 0; i <= encoded.Count; i++)
        {
            if (i < encoded.Count && encoded.Trained[i])
            {
                current.Add(encoded.Ids[i]);
                continue;
            }
            if (current.Count > 0)
                runs.Add([.. current]);
            current.Clear();
        }
        return runs;
    }

    [Fact]
    public void LossMask_CoversExactlyEachAssistantAnswerAndItsEos()
    {
        using var scratch = new ScratchFolder();
        var tokenizer = TestData.TinyTokenizer;
        var report = TestData.Validate(scratch, "mask.jsonl",
            [TestData.ChatLine(("system", "You are terse."), ("user", "What is two plus two?"), ("assistant", "It is four."),
                ("user", "And three plus three?"), ("assistant", "Six, of course."))]);

        var encoded = Assert.Single(report.Encoded!);
        var runs = TrainedRuns(encoded);
        Assert.Equal(2, runs.Count);
        Assert.All(runs, run => Assert.Equal(tokenizer.EosId, run[^1]));
        Assert.Equal(["It is four.", "Six, of course."], runs.Select(run => tokenizer.Decode(run)));
        Assert.Equal(tokenizer.Encode("It is four.", addBos: false).Count + 1 + tokenizer.Encode("Six, of course.", addBos: false).Count + 1,
            encoded.Trained.Count(t => t));
        Assert.Equal("[INST] You are terse.\n\nWhat is two plus two? [/INST] It is four. [INST] And three plus three? [/INST] Six, of course.",
            tokenizer.Decode(encoded.Ids));
    }

    [Fact]
    public void TrainOnPrompt_TrainsEveryId()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "all.jsonl", [TestData.ChatLine(("user", "Hi"), ("assistant", "Hello"))],
            TestData.Options() with { TrainOnPrompt = true });

        Assert.All(Assert.Single(report.Encoded!).Trained, Assert.True);
    }

    [Fact]
    public void SystemMessages_AreFoldedIntoTheFirstUserTurn_JoinedByABlankLine_ExactlyAsTheTemplateDoes()
    {
        using var scratch = new ScratchFolder();
        var report = TestData.Validate(scratch, "sys.jsonl",
        [
            TestData.ChatLine(("system", "Rule one."), ("system", "Rule two."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Again"), ("assistant", "Hello again")),
            TestData.ChatLine(("user", "Rule one.\n\nRule two.\n\nHi"), ("assistant", "Hello"), ("user", "Again"), ("assistant", "Hello again")),
        ], TestData.Options() with { DuplicatePolicy = DuplicatePolicy.Warn });

        Assert.Equal(2, report.Encoded!.Count);
        Assert.Equal(report.Encoded[1].Ids, report.Encoded[0].Ids);
        Assert.Equal(report.Encoded[1].Trained, report.Encoded[0].Trained);
    }

    [SkippableFact]
    public void ChatExample_WithTheRealMistralTokenizer_MatchesMistralCommonsReferenceIds()
    {
        var tokenizerPath = TestData.RequireShared("mistral", "tokenizer.model.v1");
        var samplePath = TestData.RequireShared("mistral", "conformance", "no_tools", "sample.json");
        var expectedPath = TestData.RequireShared("mistral", "conformance", "no_tools", "tokens_v1.json");
        var tokenizer = MistralTokenizer.Load(tokenizerPath);
        var messages = ChatFile.Load(samplePath).ToList();
        Assert.Equal(ChatMessage.User, messages[^1].Role);
        messages.RemoveAt(messages.Count - 1); // a training example ends with the assistant's answer
        using var scratch = new ScratchFolder();
        var line = JsonSerializer.Serialize(new { messages = messages.Select(m => new { role = m.Role, content = m.Content }) });
        var path = scratch.WriteLines("conformance.jsonl", [line]);

        var report = DatasetValidator.Validate([path], tokenizer, TestData.Options(4096));

        Assert.Empty(report.Diagnostics);
        var ids = Assert.Single(report.Encoded!).Ids;
        using var expected = JsonDocument.Parse(File.ReadAllBytes(expectedPath));
        var reference = expected.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.True(ids.Length < reference.Length);
        Assert.Equal(reference[..ids.Length], ids);
        Assert.Equal(tokenizer.EosId, ids[^1]);
    }

    [Fact]
    public void AV3Tokenizer_WithInstAsControlTokens_IsRefusedByTheV1Template_BeforeAnyExampleIsEncoded()
    {
        // Mistral's v3 tokenizer layout: [INST] and [/INST] are control ids 3 and 4, right after <unk>, <s>, </s>.
        var tiny = TestData.TinyTokenizer.Model;
        var pieces = Enumerable.Range(0, tiny.Count).Select(i => new SentencePiece(tiny.Pieces[i], tiny.Scores[i], tiny.Types[i])).ToList();
        pieces.InsertRange(3, [new SentencePiece("[INST]", 0, SentencePieceType.Control), new SentencePiece("[/INST]", 0, SentencePieceType.Control)]);
        var v3Like = MistralTokenizer.FromModel(new SentencePieceModel(pieces, tiny.Trainer!, tiny.Normalizer!));
        using var scratch = new ScratchFolder();
        var path = scratch.WriteLines("train.jsonl", [TestData.ChatLine(("user", "Hi?"), ("assistant", "Hello."))]);

        var error = Assert.Throws<ErtasException>(() => DatasetValidator.Validate([path], v3Like, TestData.Options()));
        Assert.Equal(ErrorCode.TemplateTokenizerMismatch, error.Code);
        Assert.Contains("'[INST]' as a control token (id 3)", error.Message);

        // The v1 layout (the built-in vocabulary, like Mistral 7B v0.1/v0.2) fits.
        Assert.Single(DatasetValidator.Validate([path], TestData.TinyTokenizer, TestData.Options()).Encoded!);
    }
}
