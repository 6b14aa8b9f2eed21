using Ertas.Modeling.Native;

namespace Ertas.Training.Tests;

public sealed class GlibcMallocTests
{
    [SkippableFact]
    public void KeepLargeBlocksMapped_OnGlibcLinux_IsAcceptedByMallopt()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "mallopt is glibc's");
        Skip.If(File.Exists("/etc/alpine-release"), "musl has no mallopt");
        Assert.True(GlibcMalloc.KeepLargeBlocksMapped());
    }
}
