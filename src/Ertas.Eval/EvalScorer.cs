using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Eval;

/// <summary>A case turned into token ids: the prompt, and for likelihood scoring each choice's (or the ideal
/// answer's) tokens exactly as the model would see them after that prompt.</summary>
public sealed record PreparedCase(EvalCase Case, int[] Prompt, int MaxTokens, int[][]? ChoiceTokens, int[]? IdealTokens);

/// <summary>
/// Scores cases on one model. Prompts are the chat template's ids (what training saw), fed to llama.cpp as ids.
/// Multiple choice follows lm-evaluation-harness: each choice scored by the sum of its tokens' log-probabilities after
/// the prompt; acc takes the argmax of the sum, acc_norm of the sum divided by the choice's length in characters.
/// </summary>
public static class EvalScorer
{
    /// <summary>Encodes every case; a case that does not fit the template or the context is an error at its line.</summary>
    public static IReadOnlyList<PreparedCase> Prepare(IReadOnlyList<EvalCase> cases, MistralTokenizer tokenizer, IChatTemplate template,
        DecodeSettings settings, List<DatasetDiagnostic> diagnostics)
    {
        var prepared = new List<PreparedCase>();
        foreach (var c in cases)
        {
            try
            {
                var prompt = PromptIds(c, tokenizer, template);
                var maxTokens = c.MaxTokens ?? settings.MaxTokens;
                int[][]? choices = c.Choices?.Select(choice => ContinuationIds(c, choice, prompt, tokenizer, template)).ToArray();
                var ideal = c.Ideal is { Length: > 0 } i && !c.IsMultipleChoice ? ContinuationIds(c, i, prompt, tokenizer, template) : null;
                var needed = choices is not null
                    ? prompt.Length + choices.Max(x => x.Length)
                    : Math.Max(prompt.Length + maxTokens, ideal is null ? 0 : prompt.Length + ideal.Length);
                if (needed > settings.ContextSize)
                {
                    diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.EvalCaseTooLong, c.File, c.Line, 0,
                        $"case \"{c.Id}\" needs {needed} tokens ({prompt.Length} of prompt + " +
                        (choices is not null ? $"{choices.Max(x => x.Length)} of its longest choice" : $"{maxTokens} to generate") +
                        $") but the eval context holds {settings.ContextSize}; shorten it, lower max_tokens, or raise EvalContextSize"));
                    continue;
                }
                prepared.Add(new PreparedCase(c, prompt, maxTokens, choices, ideal));
            }
            catch (ErtasException e) when (e.Code == ErrorCode.TemplateHasNoTools && c.Tools.Count > 0)
            {
                diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.EvalToolsUnsupported, c.File, c.Line, c.ToolsColumn,
                    $"case \"{c.Id}\" offers tools, but this model's template is {template.Name}, which has no tool tokens: tools need a model " +
                    $"on Mistral's v3 tokenizer (Mistral-7B v0.3) and the {ChatTemplates.MistralV3Name} template; remove \"tools\" or evaluate a v3 model"));
            }
            catch (ErtasException e)
            {
                diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.EvalInvalidConversation, c.File, c.Line, 0,
                    $"case \"{c.Id}\": {e.Message}"));
            }
        }
        return prepared;
    }

    public static int[] PromptIds(EvalCase c, MistralTokenizer tokenizer, IChatTemplate template) =>
        c.Messages is not null
            ? template.Encode(tokenizer, c.Messages, addGenerationPrompt: true, c.Tools).Ids
            : tokenizer.Encode(c.Prompt!, addBos: true).ToArray();

    /// <summary>
    /// The tokens of <paramref name="answer"/> after the prompt. Chat: the template's encoding of the conversation
    /// with the answer as the assistant turn, minus the prompt and the closing EOS. Raw prompts: lm-evaluation-harness's
    /// pair encoding (encode prompt + answer whole, drop the prompt's tokens), so the tokens are the ones the model
    /// would see; trailing spaces of the prompt belong to the answer.
    /// </summary>
    public static int[] ContinuationIds(EvalCase c, string answer, int[] prompt, MistralTokenizer tokenizer, IChatTemplate template)
    {
        int[] whole;
        var promptIds = prompt;
        if (c.Messages is not null)
        {
            var conversation = c.Messages.Append(new ChatMessage(ChatMessage.Assistant, answer)).ToList();
            whole = template.Encode(tokenizer, conversation, tools: c.Tools).Ids;
            if (whole.Length > 0 && whole[^1] == tokenizer.EosId)
                whole = whole[..^1];
        }
        else
        {
            var context = c.Prompt!;
            var trimmed = context.TrimEnd(' ');
            answer = context[trimmed.Length..] + answer;
            promptIds = tokenizer.Encode(trimmed, addBos: true).ToArray();
            whole = tokenizer.Encode(trimmed + answer, addBos: true).ToArray();
        }
        var shared = 0;
        while (shared < promptIds.Length && shared < whole.Length && whole[shared] == promptIds[shared])
            shared++;
        if (shared != promptIds.Length || whole.Length == shared)
            throw new ErtasException(ErrorCode.EvalInvalidConversation,
                $"the answer \"{Abbreviate(answer)}\" does not tokenize as a continuation of the prompt (it merges with the prompt's last token)");
        // A raw prompt whose trailing spaces moved to the answer is scored from the trimmed prompt.
        return whole[shared..];
    }

    /// <summary>Scores one prepared case. Choices that all score exactly the same are an error (ERTAS9101) and fail.</summary>
    public static CaseResult Score(PreparedCase p, LlamaCppEvaluator model, MistralTokenizer tokenizer, List<DatasetDiagnostic> diagnostics, CancellationToken cancellationToken)
    {
        var c = p.Case;
        if (p.ChoiceTokens is not null)
        {
            var scores = new List<ChoiceScore>();
            for (var i = 0; i < p.ChoiceTokens.Length; i++)
            {
                var context = ContextFor(c, p.Prompt, tokenizer);
                var logProbs = model.ContinuationLogProbs(context, p.ChoiceTokens[i], cancellationToken);
                scores.Add(new ChoiceScore(c.Choices![i], logProbs.Sum(), p.ChoiceTokens[i].Length));
            }
            // Picks and ties come from the exact sums; only what is stored is rounded. On a partial tie the lower index wins.
            var predicted = ArgMax(scores.Select(s => s.LogProb).ToArray());
            var predictedNorm = ArgMax(scores.Select((s, i) => s.LogProb / c.Choices![i].Length).ToArray());
            var tied = scores.All(s => s.LogProb == scores[0].LogProb);
            scores = scores.Select(s => s with { LogProb = EvalSnapshot.Round(s.LogProb) }).ToList();
            if (tied)
                diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.EvalChoicesTied, c.File, c.Line, 0,
                    $"case \"{c.Id}\": every choice scores the same ({EvalSnapshot.Format(scores[0].LogProb)}), so the model cannot tell them apart; " +
                    "this is not counted as a pass (is the model untrained, or are the choices the same tokens?)"));
            var pass = !tied && predicted == c.Answer;
            return new CaseResult
            {
                Id = c.Id, Hash = c.Hash, Tags = c.Tags, Pass = pass, Score = pass ? 1 : 0,
                Choices = scores, Answer = c.Answer, Predicted = tied ? -1 : predicted, PredictedNorm = tied ? -1 : predictedNorm,
            };
        }

        var (ids, stopped) = model.Generate(p.Prompt, p.MaxTokens, tokenizer.EosId, cancellationToken);
        // Control pieces stay visible: a v3 model's answer may be a [TOOL_CALLS] list, which asserts must see.
        var output = tokenizer.DecodeWithControlPieces(ids);
        var results = c.Asserts.Select(a => Assertions.Evaluate(a, output)).ToList();
        var totalWeight = c.Asserts.Sum(a => a.Weight);
        var score = results.Select((r, i) => r.Score * c.Asserts[i].Weight).Sum() / totalWeight;
        double? nll = null;
        if (p.IdealTokens is not null)
            nll = -model.ContinuationLogProbs(ContextFor(c, p.Prompt, tokenizer), p.IdealTokens, cancellationToken).Average();
        var rounded = EvalSnapshot.Round(score);
        return EvalSnapshot.Rounded(new CaseResult
        {
            Id = c.Id, Hash = c.Hash, Tags = c.Tags, Pass = rounded >= c.Threshold, Score = score,
            Output = output, Stopped = stopped ? "eos" : "max_tokens", FirstToken = ids.Length > 0 ? ids[0] : tokenizer.EosId,
            Asserts = results, TargetNll = nll,
        });
    }

    /// <summary>The context the continuation tokens follow: the prompt, or for raw prompts the prompt without its
    /// trailing spaces (they were moved into the continuation).</summary>
    private static int[] ContextFor(EvalCase c, int[] prompt, MistralTokenizer tokenizer) =>
        c.Messages is null && c.Prompt!.EndsWith(' ') ? tokenizer.Encode(c.Prompt.TrimEnd(' '), addBos: true).ToArray() : prompt;

    private static int ArgMax(double[] values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    private static string Abbreviate(string text) => text.Length <= 40 ? text : text[..37] + "...";
}
