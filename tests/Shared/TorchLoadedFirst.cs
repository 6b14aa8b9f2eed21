using System.Runtime.CompilerServices;
using Ertas.Modeling.Native;

namespace Ertas.TestSupport;

internal static class TorchLoadedFirst
{
    // A test may call torch before any Ertas.Modeling method runs. Loading libtorch here, through the real code path,
    // gives every test what every Ertas.Modeling consumer gets: the libLibTorchSharp.so fix, the tensor block cache,
    // and MKL's kernel choice made before MKL's first call (else a test's matmul could make it first, and this process
    // would compute other bits than a child `ertas` process does).
    [ModuleInitializer]
    internal static void LoadTorchThroughErtasModeling()
    {
        RuntimeHelpers.RunModuleConstructor(typeof(TorchSharpNativeFix).Module.ModuleHandle);
        try
        {
            TorchSharpNativeFix.EnsureTorchLoaded();
        }
        catch (Exception)
        {
            // Each test that needs torch reports the load failure itself, with the real cause.
        }
    }
}
