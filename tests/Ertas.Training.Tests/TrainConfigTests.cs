using System.Text;
using System.Text.Json;
using Ertas.Cli;
using Ertas.Core;

namespace Ertas.Training.Tests;

[Collection(TrainingCollection.Name)]
public sealed class TrainConfigTests(TrainingFixture fixture)
{
    private static (int Exit, string Error) Cli(params string[] args)
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var exit = CliApp.Run(args, stdout, stderr);
        return (exit, stderr.ToString());
    }

    /// <summary>Writes <paramref name="json"/> as train.json in a fresh folder beside the fixture's base and data.</summary>
    private string WriteConfig(string json)
    {
        var path = Path.Combine(fixture.NewFolder("config"), "train.json");
        File.WriteAllText(path, json, new UTF8Encoding(false));
        return path;
    }

    [Fact]
    public void Train_Config_GivesTheSettings_WithPathsRelativeToTheFile_AndCommandLineOptionsOverrideIt()
    {
        var config = WriteConfig("""
            {
              // comments and trailing commas are fine
              "model": "../base",
              "data": ["../capitals.jsonl"],
              "out": "adapter",
              "seq-len": 128,
              "max-steps": 2,
              "rank": 4,
              "alpha": 8,
              "targets": ["q_proj", "v_proj"],
              "lr": 1e-3,
              "scheduler": "linear",
              "no-quantize": true,
              "device": "cpu",
            }
            """);
        var elsewhere = fixture.NewFolder("cwd"); // relative paths follow the file, not the working directory
        var previous = Environment.CurrentDirectory;
        int exit;
        string error;
        try
        {
            Environment.CurrentDirectory = elsewhere;
            (exit, error) = Cli("train", "--config", config, "--rank", "2", "--max-steps", "3");
        }
        finally
        {
            Environment.CurrentDirectory = previous;
        }

        Assert.True(exit == 0, error);
        var output = Path.Combine(Path.GetDirectoryName(config)!, "adapter");
        using var peft = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(output, Trainer.AdapterConfigFile)));
        Assert.Equal(2, peft.RootElement.GetProperty("r").GetInt32());            // the command line wins
        Assert.Equal(8, peft.RootElement.GetProperty("lora_alpha").GetDouble());  // the file gives the rest
        Assert.Equal(["q_proj", "v_proj"], peft.RootElement.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(3, File.ReadAllLines(Path.Combine(output, Trainer.MetricsFile)).Length);
        Assert.False(ErtasAdapterInfo.TryRead(output)!.QuantizeBase);
        Assert.Contains("step 3/3 ", error);
        Assert.True(File.Exists(Path.Combine(output, Trainer.LossCurveFile)));
    }

    [Fact]
    public void Train_Config_UnknownKey_IsTrainingConfigInvalid_AtItsLineAndColumn()
    {
        var config = WriteConfig("{\n  \"rank\": 8,\n    \"rnak\": 16\n}\n");
        var (exit, error) = Cli("train", "--config", config);
        Assert.Equal((int)ExitCode.Failure, exit);
        Assert.Contains($"{config}(3,5): error ERTAS7001: unknown key \"rnak\"", error);
        Assert.Contains("valid keys: alpha, batch-size", error);
    }

    [Theory]
    [InlineData("\"rank\": \"16\"", 2, 11, "\"rank\" expects an integer, got a string")]
    [InlineData("\"rank\": 1.5", 2, 11, "\"rank\" expects an integer, got a number")]
    [InlineData("\"lr\": \"2e-4\"", 2, 9, "\"lr\" expects a number, got a string")]
    [InlineData("\"no-quantize\": 1", 2, 18, "\"no-quantize\" expects true or false, got a number")]
    [InlineData("\"targets\": {\"q\": 1}", 2, 14, "\"targets\" expects a string or an array of strings, got an object")]
    [InlineData("\"data\": [\"a.jsonl\", 3]", 2, 23, "\"data\" expects a path string or an array of path strings, got an array holding a number")]
    [InlineData("\"rank\": 8,\n  \"rank\": 4", 3, 3, "\"rank\" is given twice")]
    [InlineData("\"rank\": 0", 2, 3, "\"rank\": --rank must be at least 1, got 0")]
    [InlineData("\"scheduler\": \"step\"", 2, 3, "\"scheduler\": unknown --scheduler 'step'")]
    [InlineData("\"template\": \"chatml\"", 2, 3, "\"template\": unknown --template 'chatml'; valid names: auto, mistral-v1, mistral-v3")]
    [InlineData("\"rank\": 8 \"alpha\": 4", 2, 13, "not valid JSON")]
    public void Train_Config_BadValue_IsTrainingConfigInvalid_AtTheValueOrKey(string body, int line, int column, string message)
    {
        var config = WriteConfig("{\n  " + body + "\n}\n");
        var (exit, error) = Cli("train", "--config", config, "--model", fixture.BaseFolder, "--data", fixture.DataFile, "--out", fixture.NewFolder("o"));
        Assert.Equal((int)ExitCode.Failure, exit);
        Assert.Contains($"{config}({line},{column}): error ERTAS7001: {message}", error);
    }

    [Fact]
    public void Train_WithoutModel_InTheConfigOrOnTheCommandLine_IsAMissingArgument()
    {
        var config = WriteConfig("{\"data\": \"../capitals.jsonl\", \"out\": \"o\"}");
        var (exit, error) = Cli("train", "--config", config);
        Assert.Equal((int)ExitCode.Usage, exit);
        Assert.Contains("ERTAS1002: missing required option --model (give it on the command line or in --config)", error);
    }

    [Fact]
    public void ConfigFile_ResolvesPathsAgainstItsFolder_KeepsLatest_AndJoinsLists()
    {
        var config = WriteConfig("""{"data": ["a.jsonl", "/abs/b.jsonl"], "resume": "latest", "cache-dir": "c", "targets": "q_proj,v_proj", "gradient-checkpointing": false}""");
        var folder = Path.GetDirectoryName(config)!;
        var file = TrainingConfigFile.Read(config, new Dictionary<string, ConfigValueKind>
        {
            ["data"] = ConfigValueKind.PathList, ["resume"] = ConfigValueKind.PathOrLatest, ["cache-dir"] = ConfigValueKind.Path,
            ["targets"] = ConfigValueKind.TextList, ["gradient-checkpointing"] = ConfigValueKind.Flag,
        });
        Assert.Equal([Path.Combine(folder, "a.jsonl"), "/abs/b.jsonl"], file.Find("data")!.Values);
        Assert.Equal(["latest"], file.Find("resume")!.Values);
        Assert.Equal([Path.Combine(folder, "c")], file.Find("cache-dir")!.Values);
        Assert.Equal(["q_proj,v_proj"], file.Find("targets")!.Values);
        Assert.Null(file.Find("gradient-checkpointing")); // false = not given
        Assert.Equal(1, file.Find("data")!.Line);
        Assert.Equal(2, file.Find("data")!.Column);

        var auto = TrainingConfigFile.Read(WriteConfig("""{"resume": "auto"}"""), new Dictionary<string, ConfigValueKind> { ["resume"] = ConfigValueKind.PathOrLatest });
        Assert.Equal(["auto"], auto.Find("resume")!.Values); // a keyword, not a path beside the file

        var missing = Assert.Throws<ErtasException>(() => TrainingConfigFile.Read(Path.Combine(folder, "none.json"), new Dictionary<string, ConfigValueKind>()));
        Assert.Equal(ErrorCode.FileNotFound, missing.Code);
    }
}
