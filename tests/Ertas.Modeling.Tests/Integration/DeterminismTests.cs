namespace Ertas.Modeling.Tests.Integration;

/// <summary>Same arguments, same bytes: a build that reruns must not see a changed base model or GGUF.</summary>
[Collection(CliModelsCollection.Name)]
public sealed class DeterminismTests(CliModels models) : IDisposable
{
    private readonly TempFolder _work = new();

    public void Dispose() => _work.Dispose();

    [Fact]
    public void BaseCreate_TwiceWithTheSameArguments_WritesByteIdenticalFolders()
    {
        var first = _work.Combine("first");
        var second = _work.Combine("second");
        Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "7", "--out", first);
        Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "7", "--out", second);
        AssertSameFiles(first, second);
        AssertSameFiles(first, models.TinyFolder); // and the same as the fixture's, made earlier in the process
    }

    [Fact]
    public void BaseCreate_WithAnotherSeed_ChangesTheWeightsOnly()
    {
        var other = _work.Combine("seed8");
        Cli.Succeed("base", "create", "--preset", "tiny", "--seed", "8", "--out", other);
        Assert.Equal(FileNames(models.TinyFolder), FileNames(other));
        Assert.NotEqual(Bytes(models.TinyFolder, "model.safetensors"), Bytes(other, "model.safetensors"));
        foreach (var name in FileNames(other).Where(n => n != "model.safetensors"))
            Assert.Equal(Bytes(models.TinyFolder, name), Bytes(other, name));
    }

    [Fact]
    public void Export_Twice_WritesByteIdenticalGgufFiles()
    {
        var again = _work.Combine("again.gguf");
        Cli.Succeed("export", "--model", models.TinyFolder, "--out", again, "--type", "f32");
        Assert.True(File.ReadAllBytes(models.TinyF32).AsSpan().SequenceEqual(File.ReadAllBytes(again)),
            "a second export of the same folder differs from the first");
        var f16a = _work.Combine("a-f16.gguf");
        var f16b = _work.Combine("b-f16.gguf");
        Cli.Succeed("export", "--model", models.TinyFolder, "--out", f16a, "--type", "f16");
        Cli.Succeed("export", "--model", models.TinyFolder, "--out", f16b, "--type", "f16");
        Assert.True(File.ReadAllBytes(f16a).AsSpan().SequenceEqual(File.ReadAllBytes(f16b)), "two f16 exports differ");
    }

    private static void AssertSameFiles(string expected, string actual)
    {
        Assert.Equal(FileNames(expected), FileNames(actual));
        foreach (var name in FileNames(expected))
            Assert.True(Bytes(expected, name).AsSpan().SequenceEqual(Bytes(actual, name)), $"{name} differs between {expected} and {actual}");
    }

    private static string[] FileNames(string folder) =>
        Directory.GetFiles(folder, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(folder, f)).Order(StringComparer.Ordinal).ToArray();

    private static byte[] Bytes(string folder, string name) => File.ReadAllBytes(Path.Combine(folder, name));
}
