using System.Text;
using Ertas.Cli;

namespace Ertas.Training.Tests;

[Collection(TrainingCollection.Name)]
public sealed class TrainCommandTests(TrainingFixture fixture)
{
    private static (int Exit, string Out, string Error) Cli(params string[] args)
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var exit = CliApp.Run(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public void Train_BadDatasetLines_AreReportedWithTheirLineNumbers_AndNothingIsWritten()
    {
        var data = Path.Combine(fixture.NewFolder("bad"), "bad.jsonl");
        File.WriteAllText(data, string.Join("\n",
            TrainingFixture.ChatLine("Hi?", "Hello."),
            "{\"messages\": [",
            TrainingFixture.ChatLine("Again?", "Yes."),
            "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}") + "\n", new UTF8Encoding(false));
        var output = Path.Combine(fixture.Root, "bad-out-" + Guid.NewGuid().ToString("N")[..8]);

        var (exit, _, error) = Cli("train", "--model", fixture.BaseFolder, "--data", data, "--out", output, "--seq-len", "128", "--max-steps", "1");

        Assert.NotEqual(0, exit);
        Assert.Contains($"{data}(2,", error);
        Assert.Contains($"{data}(4,", error);
        Assert.Contains("error ERTAS6001", error);
        Assert.Contains("error ERTAS6007", error);
        Assert.False(File.Exists(Path.Combine(output, Trainer.AdapterWeightsFile)));
    }

    [Fact]
    public void Train_EvalData_IsTheEvalSplit_AndCannotBeCombinedWithEvalFraction()
    {
        var evalFile = Path.Combine(fixture.NewFolder("eval-data"), "held.jsonl");
        File.WriteAllText(evalFile, TrainingFixture.ChatLine("What is the capital of Peru?", "The capital of Peru is Lima.") + "\n", new UTF8Encoding(false));
        var output = fixture.NewFolder("eval-data-out");
        var (exit, _, error) = Cli("train", "--model", fixture.BaseFolder, "--data", fixture.DataFile, "--eval-data", evalFile, "--out", output,
            "--seq-len", "128", "--max-steps", "2", "--rank", "4", "--eval-every", "1", "--seed", "3");
        Assert.True(exit == 0, error);
        Assert.Matches(@"step 1/2 loss \d+\.\d{3} .* eval_loss \d+\.\d{3}", error);
        Assert.All(File.ReadAllLines(Path.Combine(output, Trainer.MetricsFile)), line => Assert.Contains("\"eval_loss\"", line));

        var (both, _, bothError) = Cli("train", "--model", fixture.BaseFolder, "--data", fixture.DataFile, "--eval-data", evalFile,
            "--eval-fraction", "0.1", "--out", fixture.NewFolder("eval-both"));
        Assert.NotEqual(0, both);
        Assert.Contains("error ERTAS1001: give --eval-data or --eval-fraction, not both", bothError);
    }

    [Fact]
    public void Train_Cli_WritesTheAdapterFolder()
    {
        var output = fixture.NewFolder("cli-out");
        var (exit, _, error) = Cli("train", "--model", fixture.BaseFolder, "--data", fixture.DataFile, "--out", output,
            "--seq-len", "128", "--max-steps", "2", "--rank", "4", "--alpha", "8", "--targets", "q_proj,v_proj", "--lr", "1e-3",
            "--scheduler", "linear", "--warmup-steps", "1", "--eval-fraction", "0.125", "--eval-every", "1", "--seed", "3");

        Assert.True(exit == 0, error);
        Assert.Matches(@"step 2/2 loss \d+\.\d{3} lr .* eval_loss \d+\.\d{3}", error);
        Assert.True(File.Exists(Path.Combine(output, Trainer.AdapterWeightsFile)));
        Assert.Contains("\"r\": 4", File.ReadAllText(Path.Combine(output, Trainer.AdapterConfigFile)));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(output, Trainer.MetricsFile)).Length);
    }

    [Theory]
    [InlineData("--checkpoint-every", "-1")]
    [InlineData("--keep-checkpoints", "0")]
    [InlineData("--device", "tpu")]
    [InlineData("--compute", "fp8")]
    [InlineData("--scheduler", "step")]
    public void Train_UnsupportedOrInvalidOptions_AreUsageErrors(string option, string value)
    {
        var (exit, _, error) = Cli("train", "--model", fixture.BaseFolder, "--data", fixture.DataFile, "--out", fixture.NewFolder("x"), option, value);
        Assert.Equal((int)ExitCode.Usage, exit);
        Assert.Contains("ERTAS1001", error);
    }

    [SkippableFact]
    public void Train_DeviceCuda_WithoutACudaDevice_IsDeviceUnavailable_BeforeAnyWork()
    {
        Skip.If(Ertas.Modeling.ModelOptions.AutoDevice() == "cuda", "this machine has a CUDA device");
        var output = Path.Combine(fixture.Root, "cuda-out-" + Guid.NewGuid().ToString("N")[..8]);
        var (exit, _, error) = Cli("train", "--model", fixture.BaseFolder, "--data", fixture.DataFile, "--out", output, "--device", "cuda");
        Assert.Equal((int)ExitCode.Failure, exit);
        Assert.Contains("error ERTAS5004: device 'cuda' was requested but torch.cuda.is_available() is false", error);
        Assert.False(Directory.Exists(output)); // failed before preparing data or loading weights
    }

    [Fact]
    public void Train_ResumeFromAFolderThatDoesNotExist_IsCheckpointInvalid()
    {
        var output = fixture.NewFolder("resume-missing");
        var (exit, _, error) = Cli("train", "--model", fixture.BaseFolder, "--data", fixture.DataFile, "--out", output,
            "--seq-len", "128", "--max-steps", "1", "--resume", "latest");
        Assert.Equal((int)ExitCode.Failure, exit);
        Assert.Contains("error ERTAS7010: no complete checkpoint to resume from", error);
        Assert.False(File.Exists(Path.Combine(output, Trainer.AdapterWeightsFile)));
    }
}
