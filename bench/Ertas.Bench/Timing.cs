using System.Diagnostics;

namespace Ertas.Bench;

public static class Timing
{
    /// <summary>
    /// The median seconds of <paramref name="runs"/> timed calls of <paramref name="action"/>, after
    /// <paramref name="warmUpCalls"/> untimed ones and, when given, until <paramref name="warmUpAtLeast"/> has passed.
    /// </summary>
    public static double MedianSeconds(Action action, int runs, int warmUpCalls = 1, TimeSpan warmUpAtLeast = default)
    {
        var warmUp = Stopwatch.StartNew();
        for (var i = 0; i < warmUpCalls || warmUp.Elapsed < warmUpAtLeast; i++)
            action();
        var seconds = new double[runs];
        for (var i = 0; i < runs; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            seconds[i] = clock.Elapsed.TotalSeconds;
        }
        Array.Sort(seconds);
        return seconds[runs / 2];
    }
}
