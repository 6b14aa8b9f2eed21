using Ertas.Eval;
using Snapshooter.Xunit;

namespace Ertas.Eval.Tests;

public sealed class EvalSnapshotTests
{
    [Fact]
    public void ASnapshot_RoundTripsThroughItsJson_ToTheSameBytes()
    {
        foreach (var q in SampleReports.TwoQuantizations().Quants)
        {
            var json = q.Now.ToJson();
            var again = EvalSnapshot.FromJson(System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject()).ToJson();
            Assert.Equal(json, again);
        }
    }

    [Fact]
    public void Floats_AreRoundedToFourDecimals_CasesSortedById_AndKeysInAFixedOrder()
    {
        var snapshot = new EvalSnapshot
        {
            Model = "m", Quantization = "Q8_0", File = "m.Q8_0.gguf", Sha256 = new string('c', 64),
            Runtime = new Dictionary<string, string> { ["llamasharp"] = "0.30.0", ["ertas"] = "0.1.0" },
            Decode = new DecodeSettings(64, 64, 2, 8), SuiteHash = "s",
            Cases =
            [
                new CaseResult { Id = "z", Hash = "h", Pass = true, Score = 1, Output = "x", TargetNll = 0.123456789 },
                new CaseResult { Id = "a", Hash = "h", Pass = false, Score = 1.0 / 3, Output = "y", TargetNll = -0.00001 },
            ],
        };
        var json = snapshot.ToJson();
        Assert.Contains("\"target_nll\": 0.1235", json);
        Assert.Contains("\"score\": 0.3333", json);
        Assert.Contains("\"target_nll\": 0\n", json); // no "-0"
        Assert.True(json.IndexOf("\"id\": \"a\"", StringComparison.Ordinal) < json.IndexOf("\"id\": \"z\"", StringComparison.Ordinal));
        Assert.True(json.IndexOf("\"ertas\"", StringComparison.Ordinal) < json.IndexOf("\"llamasharp\"", StringComparison.Ordinal));
        Assert.EndsWith("}\n", json);
        Assert.DoesNotContain('\r', json);
    }

    [Fact]
    public void ReportMarkdown_OfTwoQuantizations_MatchesItsSnapshot()
    {
        // A reviewer reads this text in pull requests: its snapshot shows any change of wording or layout.
        EvalMarkdown.Render(SampleReports.TwoQuantizations()).MatchSnapshot();
    }

    [Fact]
    public void ReportMarkdown_StaysUnderSixtyThousandCharacters_WhateverTheSuiteSize()
    {
        var baseline = Many(pass: true);
        var now = Many(pass: false);
        var report = new EvalReport("big", [EvalGate.Compare(baseline, now, new GateOptions())]);
        var text = EvalMarkdown.Render(report);
        Assert.True(text.Length < EvalMarkdown.MaxCharacters, $"{text.Length} characters");
        Assert.Matches(@"… and \d+ more changed case\(s\)", text);
        Assert.StartsWith("❌ **Eval gate failed** for big: 3000 regression(s)", text);
        Assert.EndsWith("</sub>\n", text); // the footer survives truncation

        static EvalSnapshot Many(bool pass) => new()
        {
            Model = "big", Quantization = "Q4_K_M", File = "big.Q4_K_M.gguf", Sha256 = new string(pass ? 'a' : 'b', 64),
            Runtime = new Dictionary<string, string> { ["ertas"] = "0.1.0" }, Decode = new DecodeSettings(64, 64, 2, 8), SuiteHash = "s",
            Cases = Enumerable.Range(0, 3000).Select(i => new CaseResult
            {
                Id = $"case-{i:D5}", Hash = "h", Pass = pass, Score = pass ? 1 : 0, Output = new string('w', 300) + i,
            }).ToList(),
        };
    }
}
