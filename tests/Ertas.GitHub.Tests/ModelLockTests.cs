using Ertas.Core;

namespace Ertas.GitHub.Tests;

public sealed class ModelLockTests : IDisposable
{
    private readonly ReleaseFixture _model = new("1.2.0-rc.1");

    public void Dispose() => _model.Dispose();

    [Fact]
    public void Read_gives_every_field_with_settings_in_file_order_and_outputs_under_the_lock_folder()
    {
        var lockFile = _model.Lock();

        Assert.Equal(Path.GetFullPath(_model.LockPath), lockFile.FullPath);
        Assert.Equal(Path.GetFullPath(_model.Bin), lockFile.Directory);
        Assert.Equal("Tiny", lockFile.Model);
        Assert.Equal("1.2.0-rc.1", lockFile.Version);
        Assert.True(lockFile.SemanticVersion.IsPrerelease);
        Assert.Equal(ReleaseFixture.TrainKey, lockFile.TrainKey);
        Assert.Equal(("0.1.0", "0.1.0", "42"), (lockFile.EngineVersion, lockFile.SdkVersion, lockFile.Seed));
        Assert.Equal(["BaseModel", "LoraRank", "LoraAlpha", "LearningRate", "Seed", "DataSeed"], lockFile.Settings.Select(s => s.Key));
        Assert.Equal(new LockInput("TrainingData", "data/capitals.jsonl", new string('a', 64)), lockFile.Inputs[0]);
        var gguf = lockFile.Outputs.Single(o => o.Kind == LockOutput.GgufKind);
        Assert.Equal(_model.GgufPath, lockFile.PathOf(gguf));
        Assert.Equal(new FileInfo(_model.GgufPath).Length, gguf.Bytes);
        Assert.Equal(ReleaseFixture.Sha256(_model.GgufPath), gguf.Sha256);
    }

    [Fact]
    public void A_missing_lock_is_refused_naming_the_file()
    {
        var path = Path.Combine(_model.Bin, "nope", ModelLock.FileName);

        var e = Assert.Throws<ErtasException>(() => ModelLock.Read(path));

        Assert.Equal(ErrorCode.FileNotFound, e.Code);
        Assert.Equal(path, e.File);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{ not json", "is not valid JSON")]
    [InlineData("""{"model":"Tiny","version":"1.0.0"}""", "'trainKey'")]
    [InlineData("""{"model":"Tiny","version":"one","trainKey":"k","engineVersion":"0","sdkVersion":"0","seed":1,"settings":{},"inputs":[],"outputs":[]}""", "not a SemVer")]
    [InlineData("""{"model":"Tiny","version":"1.0.0","trainKey":"k","engineVersion":"0","sdkVersion":"0","seed":1,"settings":{},"inputs":[],"outputs":[{"kind":"gguf","path":"../../secret","bytes":1,"sha256":"00"}]}""", "outside the lock's folder")]
    [InlineData("""{"model":"Tiny","version":"1.0.0","trainKey":"k","engineVersion":"0","sdkVersion":"0","seed":1,"settings":{},"inputs":[{"role":"TrainingData","path":"a"}],"outputs":[]}""", "'inputs[0].sha256'")]
    public void A_broken_lock_is_refused_naming_the_file_and_what_is_wrong(string json, string expected)
    {
        File.WriteAllText(_model.LockPath, json);

        var e = Assert.Throws<ErtasException>(() => ModelLock.Read(_model.LockPath));

        Assert.Equal(ErrorCode.LockInvalid, e.Code);
        Assert.Equal(Path.GetFullPath(_model.LockPath), e.File);
        Assert.Contains(ModelLock.FileName, e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }
}
