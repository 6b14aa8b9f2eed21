using System.Text;
using Ertas.Core;
using Ertas.Data;
using Ertas.Gguf;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using Ertas.Modeling;
using TorchSharp;
using Xunit.Abstractions;

namespace Ertas.Eval.Tests;

/// <summary>
/// The outside judge for the scorer: the log-probabilities it gets from llama.cpp must be the ones our own TorchSharp
/// Mistral computes from the same F32 GGUF, over continuation tokens that this test derives on its own (from the
/// training tokenizer and the chat template), so a wrong offset, a dropped token or a wrong context shows up.
/// </summary>
[Collection(EvalModelsCollection.Name)]
public sealed class EvalScoringParityTests(EvalModels models, ITestOutputHelper output)
{
    /// <summary>
    /// Same f32 weights on both sides, and the evaluator keeps an f32 KV cache: per-token log-probabilities measured
    /// within 7.9e-6 here. Scores from EvalScorer.Score are rounded to 4 decimals (up to 5e-5 each), so 2e-4 leaves a
    /// margin, yet stays four orders below the signature of a real mistake: an off-by-one position or a wrong token
    /// moves a log-probability by whole units on this 1024-piece vocabulary (every one here is near -13). With
    /// llama.cpp's default f16 cache the difference was 4.0e-3, which this tolerance would catch.
    /// </summary>
    private const double Tolerance = 2e-4;

    private static readonly DecodeSettings Settings = new(256, 256, 2, 8);

    // One chat multiple-choice case; two raw prompts with an ideal, one of them ending with a space (which belongs to
    // the answer); and raw multiple choice after a trailing space.
    private static readonly string[] SuiteLines =
    [
        """{"id":"sky","messages":[{"role":"system","content":"Answer in a few words."},{"role":"user","content":"What colour is the sky on a clear day?"}],"choices":["blue","green","a deep red"],"answer":0}""",
        """{"id":"sum","prompt":"Question: what is two plus two?\nAnswer:","ideal":" four, of course"}""",
        """{"id":"capital","prompt":"The capital of France is ","ideal":"Paris, on the Seine."}""",
        """{"id":"cat","prompt":"The cat sat on the ","choices":["mat","roof","old chair"],"answer":1}""",
    ];

    [Fact]
    public void ChoiceLogProbsAndTargetNll_FromLlamaCpp_MatchOurTorchSharpModelOverTheSameF32Gguf()
    {
        var (tokenizer, template, prepared) = Prepare("parity.jsonl", SuiteLines);
        var training = MistralTokenizer.Load(Path.Combine(models.Folder, "tokenizer.model"));
        using var llama = LlamaCppEvaluator.Load(models.F32, Settings);
        using var gguf = new GgufTensorSource(models.F32);
        using var ours = MistralModel.Load(gguf.ToMistralConfig(), gguf);

        var maxRaw = 0.0;    // ContinuationLogProbs, unrounded, per token
        var maxScored = 0.0; // EvalScorer.Score's rounded sums and target_nll
        var accDiffersFromAccNorm = false;
        var perTokenDiffers = false;
        foreach (var p in prepared)
        {
            var c = p.Case;
            var answers = c.Choices ?? [c.Ideal!];
            var oursPerAnswer = new List<double[]>();
            for (var a = 0; a < answers.Count; a++)
            {
                var (context, continuation) = OurTokens(c, answers[a], training, template);
                Assert.Equal(continuation, c.Choices is null ? p.IdealTokens : p.ChoiceTokens![a]);
                var reference = OurLogProbs(ours, context, continuation);
                var fromLlama = llama.ContinuationLogProbs(context, continuation, CancellationToken.None);
                Assert.Equal(reference.Length, fromLlama.Length);
                var diff = reference.Zip(fromLlama, (x, y) => Math.Abs(x - y)).Max();
                output.WriteLine($"  {c.Id} \"{answers[a]}\" ({continuation.Length} tokens): sum {reference.Sum():F4} ours, {fromLlama.Sum():F4} llama.cpp; max |token diff| {diff:E2}");
                Assert.True(diff <= Tolerance, $"{c.Id} \"{answers[a]}\": per-token log-probabilities differ by {diff:E3}");
                maxRaw = Math.Max(maxRaw, diff);
                oursPerAnswer.Add(reference);
            }

            var diagnostics = new List<DatasetDiagnostic>();
            var result = EvalScorer.Score(p, llama, tokenizer, diagnostics, CancellationToken.None);
            Assert.Empty(diagnostics);
            if (c.Choices is { } choices)
            {
                var sums = oursPerAnswer.Select(r => r.Sum()).ToArray();
                for (var i = 0; i < choices.Count; i++)
                {
                    var diff = Math.Abs(sums[i] - result.Choices![i].LogProb);
                    Assert.True(diff <= Tolerance, $"{c.Id} choice {i}: scorer {result.Choices[i].LogProb}, ours {sums[i]:F6}");
                    Assert.Equal(p.ChoiceTokens![i].Length, result.Choices[i].Tokens);
                    maxScored = Math.Max(maxScored, diff);
                }
                var perCharacter = sums.Select((s, i) => s / choices[i].Length).ToArray();
                // Agreeing picks prove something only if the best two are further apart than the two sides can differ.
                AssertClearWinner(c.Id, sums);
                AssertClearWinner(c.Id + " per character", perCharacter);
                Assert.Equal(ArgMax(sums), result.Predicted);
                Assert.Equal(ArgMax(perCharacter), result.PredictedNorm);
                Assert.Equal(result.Predicted == c.Answer, result.Pass);
                accDiffersFromAccNorm |= result.Predicted != result.PredictedNorm;
                perTokenDiffers |= ArgMax(sums.Select((s, i) => s / p.ChoiceTokens![i].Length).ToArray()) != result.PredictedNorm;
            }
            else
            {
                var nll = -oursPerAnswer[0].Average();
                var diff = Math.Abs(nll - result.TargetNll!.Value);
                output.WriteLine($"  {c.Id}: target_nll {nll:F4} ours, {result.TargetNll} scorer");
                Assert.True(diff <= Tolerance, $"{c.Id}: target_nll scorer {result.TargetNll}, ours {nll:F6}");
                maxScored = Math.Max(maxScored, diff);
            }
        }
        // Otherwise a scorer whose acc_norm did not normalise, or normalised by tokens, would pass unnoticed.
        Assert.True(accDiffersFromAccNorm, "no case where acc_norm (per character) picks differently from acc");
        Assert.True(perTokenDiffers, "no case where per-character and per-token normalisation pick differently");
        output.WriteLine($"max |log-prob diff| per token, llama.cpp vs TorchSharp: {maxRaw:E3}; max |diff| of the scorer's rounded sums and target_nll: {maxScored:E3} (tolerance {Tolerance:E0})");
    }

    [Fact]
    public void RawPromptEndingWithASpace_ScoresTheAnswerWithTheSpaceInItsFirstToken_FromTheTrimmedPrompt()
    {
        var (tokenizer, _, prepared) = Prepare("parity.jsonl", SuiteLines);
        var capital = prepared.Single(p => p.Case.Id == "capital");
        var first = tokenizer.IdToPiece(capital.IdealTokens![0]);
        // "is " + "Paris" is encoded "▁is", "▁Par..." when written whole; the lone "▁" the prompt alone ends with is
        // a token the model never sees before a word, so the scorer must not condition on it.
        Assert.StartsWith("▁", first, StringComparison.Ordinal);
        Assert.NotEqual("▁", first);
        var alone = tokenizer.Encode("The capital of France is ", addBos: true);
        Assert.Equal("▁", tokenizer.IdToPiece(alone[^1]));
        var whole = tokenizer.Encode("The capital of France is Paris, on the Seine.", addBos: true);
        Assert.Equal(whole.Skip(whole.Count - capital.IdealTokens.Length), capital.IdealTokens);
        Assert.Equal("Paris, on the Seine.", tokenizer.Decode(capital.IdealTokens).TrimStart());
    }

    [Fact]
    public void ChatContinuation_IsExactlyTheTrainedTokensOfTheConversationWithThatAnswer_WithoutTheClosingEos()
    {
        var tokenizer = MistralTokenizer.Load(Path.Combine(models.Folder, "tokenizer.model"));
        var template = ChatTemplates.Get(ChatTemplates.MistralV1Name, tokenizer);
        var messages = new List<ChatMessage>
        {
            new(ChatMessage.System, "You are terse."),
            new(ChatMessage.User, "Hello there."),
            new(ChatMessage.Assistant, "Hi."),
            new(ChatMessage.User, "Name a fruit."),
        };
        var evalCase = new EvalCase { Id = "fruit", File = "x.jsonl", Line = 1, Messages = messages, Choices = ["an apple", "a pear"], Answer = 0, Hash = "h" };
        var prompt = EvalScorer.PromptIds(evalCase, tokenizer, template);
        foreach (var answer in evalCase.Choices)
        {
            var continuation = EvalScorer.ContinuationIds(evalCase, answer, prompt, tokenizer, template);
            // What training encodes for the same conversation answered with this choice (prompt tokens not trained).
            var example = new DatasetExample("train.jsonl", 1, DatasetFormat.Chat, [.. messages, new ChatMessage(ChatMessage.Assistant, answer)], null);
            var encoded = ExampleEncoder.Encode(example, tokenizer, template, trainOnPrompt: false);
            Assert.Equal(prompt, encoded.Ids[..prompt.Length]);
            Assert.False(encoded.Trained[prompt.Length - 1]);
            Assert.All(encoded.Trained[prompt.Length..], Assert.True);
            Assert.Equal(tokenizer.EosId, encoded.Ids[^1]);
            Assert.Equal(encoded.Ids[prompt.Length..^1], continuation);
        }
    }

    [Fact]
    public void ChoicesThatDifferOnlyBySpaceVersusU2581_TokenizeIdentically_AndScoringReportsERTAS9101AndFails()
    {
        // SentencePiece writes spaces as U+2581 '▁', so the text "deep red" and "deep▁red" are the same pieces:
        // two different strings the model cannot tell apart, the one way to build a real tie.
        var (tokenizer, _, prepared) = Prepare("tie.jsonl",
        [
            """{"id":"tie","messages":[{"role":"user","content":"Pick one."}],"choices":["deep red","deep▁red"],"answer":0}""",
        ]);
        var p = Assert.Single(prepared);
        Assert.Equal(p.ChoiceTokens![0], p.ChoiceTokens[1]);
        using var llama = LlamaCppEvaluator.Load(models.F32, Settings);
        var diagnostics = new List<DatasetDiagnostic>();
        var result = EvalScorer.Score(p, llama, tokenizer, diagnostics, CancellationToken.None);
        var error = Assert.Single(diagnostics);
        Assert.Equal((ErrorCode.EvalChoicesTied, DiagnosticSeverity.Error, "tie.jsonl", 1), (error.Code, error.Severity, error.File, error.Line));
        Assert.Contains("ERTAS9101", error.ToDiagnostic(), StringComparison.Ordinal);
        Assert.False(result.Pass);
        Assert.Equal((-1, -1), (result.Predicted, result.PredictedNorm));
        Assert.Equal(result.Choices![0].LogProb, result.Choices[1].LogProb);
    }

    /// <summary>Reads and prepares cases exactly as EvalRun does: tokenizer and template from the GGUF's vocabulary.</summary>
    private (MistralTokenizer Tokenizer, IChatTemplate Template, IReadOnlyList<PreparedCase> Cases) Prepare(string file, string[] lines)
    {
        var diagnostics = new List<DatasetDiagnostic>();
        var cases = EvalSuiteReader.Read(file, Encoding.UTF8.GetBytes(string.Join("\n", lines)), diagnostics);
        using var gguf = new GgufTensorSource(models.F32);
        var tokenizer = TokenizerVocabularies.ToTokenizer(gguf.ReadVocabulary());
        var template = ChatTemplates.Get(ChatTemplates.MistralV1Name, tokenizer);
        var prepared = EvalScorer.Prepare(cases, tokenizer, template, Settings, diagnostics);
        Assert.Empty(diagnostics);
        Assert.Equal(lines.Length, prepared.Count);
        return (tokenizer, template, prepared);
    }

    /// <summary>
    /// The context and continuation worked out here, not by the scorer: chat from the template (the conversation
    /// with the answer, cut where the generation prompt ends and before the EOS); raw prompts by encoding the
    /// prompt + answer whole and cutting after the prompt's own tokens with its trailing spaces left to the answer.
    /// </summary>
    private static (int[] Context, int[] Continuation) OurTokens(EvalCase c, string answer, MistralTokenizer tokenizer, IChatTemplate template)
    {
        int[] context, whole;
        if (c.Messages is { } messages)
        {
            context = template.Encode(tokenizer, messages, addGenerationPrompt: true).Ids;
            whole = template.Encode(tokenizer, [.. messages, new ChatMessage(ChatMessage.Assistant, answer)]).Ids;
            Assert.Equal(tokenizer.EosId, whole[^1]);
            whole = whole[..^1];
        }
        else
        {
            context = tokenizer.Encode(c.Prompt!.TrimEnd(' '), addBos: true).ToArray();
            whole = tokenizer.Encode(c.Prompt + answer, addBos: true).ToArray();
        }
        Assert.Equal(context, whole[..context.Length]);
        return (context, whole[context.Length..]);
    }

    /// <summary>log p(continuation[i] | context, continuation[..i]) from one full forward of our model, in float64.</summary>
    private static double[] OurLogProbs(MistralModel model, int[] context, int[] continuation)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var ids = context.Concat(continuation).Select(i => (long)i).ToArray();
        var logits = model.forward(torch.tensor(ids, [1, ids.Length]), 0, null);            // (1, T, V)
        var logProbs = logits[0].to(torch.ScalarType.Float64).log_softmax(-1);               // (T, V)
        var result = new double[continuation.Length];
        for (var i = 0; i < continuation.Length; i++)
            // The logits at position t predict token t + 1.
            result[i] = logProbs[context.Length - 1 + i, continuation[i]].item<double>();
        return result;
    }

    private static void AssertClearWinner(string what, double[] scores)
    {
        var ordered = scores.Order().ToArray();
        Assert.True(ordered[^1] - ordered[^2] > 10 * Tolerance, $"{what}: the best two choices are too close to judge ({string.Join(", ", scores)})");
    }

    private static int ArgMax(double[] values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }
}
