using Ertas.Cli;
using Ertas.Cli.Commands;
using Ertas.Core;
using Ertas.Gguf;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Eval.Tests;

/// <summary>
/// <c>ertas chat</c> on the untrained tiny GGUF: its answers are garbage, but deterministic garbage, so every answer
/// the command prints can be checked against greedy decoding that this test runs on its own (the evaluator over our
/// template's ids for the conversation the test itself builds).
/// </summary>
[Collection(EvalModelsCollection.Name)]
public sealed class ChatCommandTests(EvalModels models)
{
    private const int MaxTokens = 12;

    // The evaluator's settings and the chat's flags describe the same llama.cpp context, so their logits agree exactly.
    private static readonly DecodeSettings Decode = new(256, 256, 2, MaxTokens);
    private static readonly string[] Settings = ["--context", "256", "--threads", "2"];

    private static readonly string NewLine = Environment.NewLine;

    [Fact]
    public void TwoMessages_AreAnsweredInTurn_AsGreedyDecodingOfOurTemplatesIdsWithTheFirstAnswerInTheHistory()
    {
        var result = Chat("--message", "hello there", "--message", "and then?");

        Assert.Equal(0, result.ExitCode);
        var first = Greedy(out _, new ChatMessage(ChatMessage.User, "hello there"));
        Assert.NotEmpty(first);
        var second = Greedy(out var secondPrompt,
            new ChatMessage(ChatMessage.User, "hello there"),
            new ChatMessage(ChatMessage.Assistant, first),
            new ChatMessage(ChatMessage.User, "and then?"));
        // The second prompt closes the first answer with EOS before the next [INST], as training wrote it.
        Assert.Contains(Tokenizer().EosId, secondPrompt);
        Assert.Equal(first + NewLine + second + NewLine, result.Out);
    }

    [Fact]
    public void SystemMessage_IsPartOfThePrompt_ExactlyAsOurTemplateEncodesIt()
    {
        const string system = "You are a terse assistant.";
        var tokenizer = Tokenizer();
        var template = ChatTemplates.Get(ChatTemplates.MistralV1Name, tokenizer);
        var conversation = new ChatConversation(tokenizer, template, system);

        var (ids, dropped) = conversation.Prompt("hi", 1000);

        Assert.Equal(0, dropped);
        var expected = template.Encode(tokenizer,
            [new ChatMessage(ChatMessage.System, system), new ChatMessage(ChatMessage.User, "hi")], addGenerationPrompt: true).Ids;
        Assert.Equal(expected, ids);
        Assert.Contains(system, tokenizer.Decode(ids));
        Assert.NotEqual(new ChatConversation(tokenizer, template, null).Prompt("hi", 1000).Ids, ids);

        var result = Chat("--system", system, "--message", "hi");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal(Greedy(out _, new ChatMessage(ChatMessage.System, system), new ChatMessage(ChatMessage.User, "hi")) + NewLine, result.Out);
    }

    [Fact]
    public void LongHistory_DropsTheOldestExchangesButKeepsTheSystemMessage_AndAMessageThatCannotFitIsAnError()
    {
        var tokenizer = Tokenizer();
        var template = ChatTemplates.Get(ChatTemplates.MistralV1Name, tokenizer);
        var conversation = new ChatConversation(tokenizer, template, "Be brief.");
        conversation.Record("first question", "first answer");
        conversation.Record("second question", "second answer");
        var lastExchangeOnly = template.Encode(tokenizer,
        [
            new ChatMessage(ChatMessage.System, "Be brief."),
            new ChatMessage(ChatMessage.User, "second question"), new ChatMessage(ChatMessage.Assistant, "second answer"),
            new ChatMessage(ChatMessage.User, "third"),
        ], addGenerationPrompt: true).Ids;

        var (ids, dropped) = conversation.Prompt("third", lastExchangeOnly.Length);

        Assert.Equal(1, dropped);
        Assert.Equal(lastExchangeOnly, ids);
        Assert.Equal(1, conversation.ExchangeCount);
        var error = Assert.Throws<ErtasException>(() => conversation.Prompt("third", 5));
        Assert.Equal(ErrorCode.InvalidArgument, error.Code);

        // Through the command: a context this small holds one exchange at most, so later turns drop earlier ones.
        var result = EvalCli.Run("chat", models.F32, "--threads", "2", "--context", "48", "--max-tokens", "8",
            "--message", "one two three", "--message", "four five six", "--message", "seven eight nine");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("dropped the oldest", result.Error);
        Assert.Equal(3, result.Out.Split(NewLine).Length - 1);
        var tooLong = EvalCli.Run("chat", models.F32, "--threads", "2", "--context", "32", "--max-tokens", "8",
            "--message", string.Join(' ', Enumerable.Repeat("word", 40)));
        Assert.Equal((int)ExitCode.Usage, tooLong.ExitCode);
        Assert.Contains("error ERTAS1001", Assert.Single(tooLong.ErrorLines));
    }

    [Fact]
    public void Interactive_ResetClearsTheHistory_SoTheNextAnswerIsAFreshFirstTurnAnswer()
    {
        var result = Interactive("hello\n/reset\nhi\n/exit\nnever answered\n");

        Assert.Equal(0, result.ExitCode);
        var hello = Greedy(out _, new ChatMessage(ChatMessage.User, "hello"));
        var hi = Greedy(out _, new ChatMessage(ChatMessage.User, "hi"));
        Assert.Equal(hello + NewLine + hi + NewLine, result.Out);
        Assert.Contains("/reset", result.ErrorLines[0]);
        Assert.Contains(ChatTemplates.MistralV1Name, result.ErrorLines[0]);
    }

    [Fact]
    public void Interactive_EndOfInputWithoutExit_EndsTheChatWithExitCodeZero()
    {
        var result = Interactive("hello\n\n");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(Greedy(out _, new ChatMessage(ChatMessage.User, "hello")) + NewLine, result.Out);
    }

    [SkippableFact]
    public void Temperature_WithTheSameSeed_RepeatsTheAnswer_AndAnotherSeedChangesIt()
    {
        string[] sampled = ["--max-tokens", "16", "--temperature", "0.8", "--message", "hi"];
        var first = ChatWithoutMaxTokens([.. sampled, "--seed", "5"]);
        var again = ChatWithoutMaxTokens([.. sampled, "--seed", "5"]);
        var otherSeed = ChatWithoutMaxTokens([.. sampled, "--seed", "6"]);

        Assert.Equal(0, first.ExitCode);
        Assert.Equal(first.Out, again.Out);
        Skip.If(first.Out == otherSeed.Out, "seeds 5 and 6 happened to draw the same 16 tokens; the seed's effect is not shown by this pair");
        Assert.NotEqual(first.Out, otherSeed.Out);
    }

    [Fact]
    public void Lora_IsAppliedToEveryTurn_AZeroUpdateKeepsTheBaseAnswerAndANonZeroOneChangesIt()
    {
        using var folder = new TempDirectory();
        var zero = WriteAdapter(folder.Combine("zero.lora.gguf"), scaleB: 0f);
        var random = WriteAdapter(folder.Combine("random.lora.gguf"), scaleB: 0.5f);
        var baseAnswer = Chat("--message", "hello", "--message", "more");

        var withZero = Chat("--lora", zero, "--message", "hello", "--message", "more");
        var withRandom = Chat("--lora", random, "--message", "hello", "--message", "more");

        Assert.Equal(0, withZero.ExitCode);
        Assert.Equal(0, withRandom.ExitCode);
        Assert.Equal(baseAnswer.Out, withZero.Out);
        var baseTurns = baseAnswer.Out.Split(NewLine);
        var loraTurns = withRandom.Out.Split(NewLine);
        Assert.NotEqual(baseTurns[0], loraTurns[0]);
        Assert.Equal(withRandom.Out, Chat("--lora", random, "--message", "hello", "--message", "more").Out);
    }

    [Fact]
    public void Lora_ThatLlamaCppWouldRefuse_IsAnErtasErrorNotANativeCrash()
    {
        using var folder = new TempDirectory();
        var wrongShape = WriteAdapter(folder.Combine("wrong.lora.gguf"), scaleB: 0.5f, extraInputs: 256);

        var mismatch = Chat("--lora", wrongShape, "--message", "hi");
        var model = Chat("--lora", models.F32, "--message", "hi");
        var missing = Chat("--lora", folder.Combine("absent.lora.gguf"), "--message", "hi");

        Assert.Equal((int)ExitCode.Failure, mismatch.ExitCode);
        Assert.Contains("error ERTAS7022", Assert.Single(mismatch.ErrorLines));
        Assert.Equal((int)ExitCode.Failure, model.ExitCode);
        Assert.Contains("error ERTAS7021", Assert.Single(model.ErrorLines));
        Assert.Equal((int)ExitCode.Failure, missing.ExitCode);
        Assert.Contains("error ERTAS1004", Assert.Single(missing.ErrorLines));
        Assert.Empty(mismatch.Out + model.Out + missing.Out);
    }

    [Fact]
    public void StreamedPieces_OfByteFallbackCharacters_JoinToTheDecodedTextWithoutReplacementCharacters()
    {
        var tokenizer = Tokenizer();
        const string text = "Grüße, 日本語 and 🙂 too";
        var ids = tokenizer.Encode(text, addBos: false);
        // The tiny vocabulary spells these characters as several byte tokens, so a token-by-token decoder would split them.
        Assert.Contains(ids, id => tokenizer.IdToPiece(id).StartsWith("<0x", StringComparison.Ordinal));
        var stream = new StreamingDetokenizer(tokenizer);

        var pieces = ids.Select(stream.Add).Append(stream.Flush()).ToList();

        Assert.Equal(tokenizer.Decode(ids), string.Concat(pieces));
        Assert.Equal(text, string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
    }

    [Fact]
    public void Greedy_OnTiedLogits_TakesTheLowestId()
    {
        Assert.Equal(1, ChatSampler.Greedy().Next([0f, 3f, 1f, 3f]));
    }

    [Fact]
    public void BadInput_IsOneErtasDiagnosticLine_WithTheExitCodeOfItsKind()
    {
        var missing = EvalCli.Run("chat", Path.Combine(Path.GetDirectoryName(models.F32)!, "absent.gguf"), "--message", "hi");
        Assert.Equal((int)ExitCode.Failure, missing.ExitCode);
        Assert.Contains("error ERTAS1004", Assert.Single(missing.ErrorLines));
        Assert.Empty(missing.Out);

        var negative = Chat("--temperature", "-1", "--message", "hi");
        Assert.Equal((int)ExitCode.Usage, negative.ExitCode);
        Assert.Contains("error ERTAS1001", Assert.Single(negative.ErrorLines));

        var seedAlone = Chat("--seed", "3", "--message", "hi");
        Assert.Equal((int)ExitCode.Usage, seedAlone.ExitCode);
        Assert.Contains("error ERTAS1001", Assert.Single(seedAlone.ErrorLines));

        var noModel = EvalCli.Run("chat", "--message", "hi");
        Assert.Equal((int)ExitCode.Usage, noModel.ExitCode);
        Assert.Contains("error ERTAS1002", Assert.Single(noModel.ErrorLines));

        using var folder = new TempDirectory();
        var text = folder.Combine("notes.gguf");
        File.WriteAllText(text, "these are notes, not a model");
        var notGguf = EvalCli.Run("chat", text, "--message", "hi");
        Assert.Equal((int)ExitCode.Failure, notGguf.ExitCode);
        Assert.Contains("error ERTAS4001", Assert.Single(notGguf.ErrorLines));
    }

    private EvalCliResult Chat(params string[] args) => ChatWithoutMaxTokens(["--max-tokens", $"{MaxTokens}", .. args]);

    private EvalCliResult ChatWithoutMaxTokens(params string[] args) => EvalCli.Run(["chat", models.F32, .. Settings, .. args]);

    /// <summary>The command with its lines read from <paramref name="input"/> instead of the console.</summary>
    private EvalCliResult Interactive(string input)
    {
        var command = new ChatCommand(new StringReader(input));
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var parsed = ParsedArgs.Parse([models.F32, .. Settings, "--max-tokens", $"{MaxTokens}"], command.Options, command.MaxPositionals);
        var code = command.Run(parsed, new CliContext(stdout, stderr, CancellationToken.None));
        return new EvalCliResult(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>
    /// A llama.cpp LoRA GGUF of rank 4 on every block's attn_q and ffn_down, written by hand as convert_lora_to_gguf.py
    /// lays it out (A [r, in], B [out, r] row-major), with seeded values and B scaled by <paramref name="scaleB"/>.
    /// <paramref name="extraInputs"/> widens A beyond the model's inputs, which llama.cpp refuses.
    /// </summary>
    private string WriteAdapter(string path, float scaleB, int extraInputs = 0)
    {
        const int rank = 4;
        using var model = new GgufReader(models.F32);
        var targets = model.Tensors.Where(t => t.Name.EndsWith(".attn_q.weight", StringComparison.Ordinal)
            || t.Name.EndsWith(".ffn_down.weight", StringComparison.Ordinal)).ToList();
        var random = new Random(11);
        using var stream = File.Create(path);
        var writer = new GgufWriter(stream);
        writer.AddString(Keys.General.Architecture, model.Architecture!);
        writer.AddString(Keys.General.Type, Keys.GeneralTypes.Adapter);
        writer.AddString(Keys.General.Name, "test-lora");
        writer.AddString(Keys.Adapter.Type, "lora");
        writer.AddFloat32(Keys.Adapter.LoraAlpha, rank);
        // ggml order: the base is [in, out].
        var shapes = targets.Select(t => (Name: t.Name, In: t.Dimensions[0] + extraInputs, Out: t.Dimensions[1])).ToList();
        foreach (var (name, inputs, outputs) in shapes)
        {
            writer.AddTensorInfo(name + ".lora_a", GgmlType.F32, [rank, inputs]);
            writer.AddTensorInfo(name + ".lora_b", GgmlType.F32, [outputs, rank]);
        }
        writer.WriteMetadata();
        writer.WriteTensorInfos();
        foreach (var (name, inputs, outputs) in shapes)
        {
            writer.WriteTensorData(name + ".lora_a", Enumerable.Range(0, (int)(rank * inputs)).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray());
            writer.WriteTensorData(name + ".lora_b", Enumerable.Range(0, (int)(outputs * rank)).Select(_ => scaleB * (float)(random.NextDouble() * 2 - 1)).ToArray());
        }
        writer.Finish();
        return path;
    }

    private MistralTokenizer Tokenizer()
    {
        using var gguf = new GgufTensorSource(models.F32);
        return TokenizerVocabularies.ToTokenizer(gguf.ReadVocabulary());
    }

    /// <summary>The answer greedy decoding gives after our template's ids for <paramref name="conversation"/>.</summary>
    private string Greedy(out int[] prompt, params ChatMessage[] conversation)
    {
        var tokenizer = Tokenizer();
        prompt = ChatTemplates.Get(ChatTemplates.MistralV1Name, tokenizer).Encode(tokenizer, conversation, addGenerationPrompt: true).Ids;
        using var llama = LlamaCppEvaluator.Load(models.F32, Decode);
        var (ids, _) = llama.Generate(prompt, MaxTokens, tokenizer.EosId, CancellationToken.None);
        return tokenizer.Decode(ids);
    }
}
