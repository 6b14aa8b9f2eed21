using Ertas.Cli;

namespace Ertas.Eval.Tests;

/// <summary>What one in-process <c>ertas</c> invocation printed and returned.</summary>
public sealed record EvalCliResult(int ExitCode, string Out, string Error)
{
    public IReadOnlyList<string> ErrorLines =>
        Error.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
}

/// <summary>The real <c>ertas</c> entry point, run in-process exactly as Program.Main runs it.</summary>
public static class EvalCli
{
    public static EvalCliResult Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(args, stdout, stderr, CancellationToken.None);
        return new EvalCliResult(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>
    /// Runs with the CI variable unset: <c>ertas eval</c> treats CI=true like --ci, and the test host may well run on
    /// CI, so tests of local behaviour must not inherit it. Tests run serially (AssemblyInfo), so this is safe.
    /// </summary>
    public static EvalCliResult RunLocally(params string[] args)
    {
        var ci = Environment.GetEnvironmentVariable("CI");
        Environment.SetEnvironmentVariable("CI", null);
        try
        {
            return Run(args);
        }
        finally
        {
            Environment.SetEnvironmentVariable("CI", ci);
        }
    }

    /// <summary>Runs and insists on success, so a fixture that cannot build its model says why.</summary>
    public static EvalCliResult Succeed(params string[] args)
    {
        var result = Run(args);
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"ertas {string.Join(' ', args)} exited {result.ExitCode}:\n{result.Error}");
        return result;
    }
}

[CollectionDefinition(Name)]
public sealed class EvalModelsCollection : ICollectionFixture<EvalModels>
{
    public const string Name = "tiny GGUF models for evals";
}

/// <summary>
/// GGUF files made once through the CLI, as a user makes them: the tiny preset (seed 7), its F32 export and a Q8_0
/// quantization. The weights are untrained, so outputs are garbage, but deterministic garbage: all that scoring
/// parity and the snapshot/gate machinery need.
/// </summary>
public sealed class EvalModels : IDisposable
{
    private readonly TempDirectory _root = new();

    public EvalModels()
    {
        Folder = _root.Combine("tiny");
        F32 = _root.Combine("tiny.F32.gguf");
        // The .Q8_0.gguf suffix is what names the quantization in snapshot files (NAME.Q8_0.verified.json).
        Q8_0 = _root.Combine("tiny-1.0.0.Q8_0.gguf");
        EvalCli.Succeed("base", "create", "--preset", "tiny", "--out", Folder, "--seed", "7");
        EvalCli.Succeed("export", "--model", Folder, "--out", F32, "--type", "f32");
        EvalCli.Succeed("quantize", F32, Q8_0, "--type", "Q8_0");
    }

    /// <summary>HF folder of <c>base create --preset tiny --seed 7</c> (its tokenizer.model is what training uses).</summary>
    public string Folder { get; }

    /// <summary>That folder exported to GGUF with f32 tensors: the same weights llama.cpp and TorchSharp can both run.</summary>
    public string F32 { get; }

    /// <summary>The F32 GGUF quantized to Q8_0, named as the SDK names release files.</summary>
    public string Q8_0 { get; }

    public void Dispose() => _root.Dispose();
}
