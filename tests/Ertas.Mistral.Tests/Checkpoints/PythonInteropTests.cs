using System.Diagnostics;
using Ertas.Core;
using Ertas.Mistral.Checkpoints;

namespace Ertas.Mistral.Tests.Checkpoints;

/// <summary>
/// Cross-checks the byte format against an independent implementation: a few lines of Python using only struct and
/// json (safetensors' Python package is not installable here), reading our files and writing files for us to read.
/// </summary>
public class PythonInteropTests
{
    private static string? RunPython(string script, params string[] args)
    {
        var start = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(script);
        foreach (var a in args)
            start.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
        using (process)
        {
            var output = process.StandardOutput.ReadToEnd();
            var error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"python failed: {error}");
            return output;
        }
    }

    private const string ReadScript = """
        import json, struct, sys
        data = open(sys.argv[1], 'rb').read()
        (n,) = struct.unpack('<Q', data[:8])
        header = json.loads(data[8:8 + n])
        base = 8 + n
        for name, info in header.items():
            if name == '__metadata__':
                print('meta', json.dumps(info, sort_keys=True)); continue
            b, e = info['data_offsets']
            raw = data[base + b: base + e]
            if info['dtype'] == 'F32':
                vals = struct.unpack('<%df' % (len(raw) // 4), raw)
            elif info['dtype'] == 'BF16':
                vals = [struct.unpack('<f', struct.pack('<I', h << 16))[0] for h in struct.unpack('<%dH' % (len(raw) // 2), raw)]
            else:
                vals = struct.unpack('<%de' % (len(raw) // 2), raw)
            print(name, info['dtype'], info['shape'], ' '.join(repr(float(v)) for v in vals))
        """;

    [SkippableFact]
    public void Python_ReadsOurFile_WithTheSameNamesShapesAndValues()
    {
        using var dir = new TempDirectory();
        var path = dir.File("ours.safetensors");
        float[] values = [1.5f, -2.25f, 0.1f, 65504f, 3.0e-6f, -0f];
        SafeTensorsWriter.Write(path,
        [
            new SafeTensorEntry("f32", DType.F32, [2, 3], b => FloatConversions.SingleToSingleBytes(values, b)),
            new SafeTensorEntry("f16", DType.F16, [6], b => FloatConversions.SingleToHalfBytes(values, b)),
            new SafeTensorEntry("bf16", DType.BF16, [3, 2], b => FloatConversions.SingleToBFloat16Bytes(values, b)),
        ], new Dictionary<string, string> { ["format"] = "pt" });

        var output = RunPython(ReadScript, path);
        Skip.If(output is null, "python3 is not installed");
        var lines = output!.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("meta {\"format\": \"pt\"}", lines[0]);

        using var file = SafeTensorsFile.Open(path);
        foreach (var line in lines[1..])
        {
            var parts = line.Split(' ');
            var name = parts[0];
            var ours = new float[file.Tensors[name].ElementCount];
            file.ReadFloat32(name, ours);
            Assert.Equal(file.Tensors[name].DType.SafetensorsName(), parts[1]);
            var theirs = line[(line.IndexOf(']') + 2)..].Split(' ').Select(v => float.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(ours, theirs);
        }
        Assert.Equal(4, lines.Length);
    }

    [SkippableFact]
    public void We_ReadAFileWrittenByPython_WithUnorderedOffsetsAndUnpaddedHeader()
    {
        using var dir = new TempDirectory();
        var path = dir.File("theirs.safetensors");
        // Data stored in a different order from the header's keys, and a header length that is not a multiple of 8.
        const string writeScript = """
            import json, struct, sys
            f32 = struct.pack('<4f', 1.0, -2.5, 3.25, 1e-3)
            f16 = struct.pack('<3e', 0.5, -1.0, 2049.0)
            header = {'b.f16': {'dtype': 'F16', 'shape': [3], 'data_offsets': [0, 6]},
                      'a.f32': {'dtype': 'F32', 'shape': [2, 2], 'data_offsets': [6, 22]},
                      '__metadata__': {'source': 'python'}}
            h = json.dumps(header, indent=1).encode()
            open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + f16 + f32)
            print(len(h) % 8)
            """;
        var output = RunPython(writeScript, path);
        Skip.If(output is null, "python3 is not installed");
        Assert.NotEqual("0", output!.Trim());

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(["b.f16", "a.f32"], file.TensorNames);
        Assert.Equal("python", file.Metadata["source"]);
        var a = new float[4];
        file.ReadFloat32("a.f32", a);
        Assert.Equal([1.0f, -2.5f, 3.25f, 1e-3f], a);
        var b = new float[3];
        file.ReadFloat32("b.f16", b);
        Assert.Equal([0.5f, -1.0f, 2048f], b); // 2049 is a tie between halves 2048 and 2050: Python rounds to even
    }
}
