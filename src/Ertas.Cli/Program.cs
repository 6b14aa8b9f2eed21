using Ertas.Cli;

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    // The first Ctrl+C asks long work to stop cleanly (no partial outputs); a second one kills the process.
    if (cancel.IsCancellationRequested) return;
    e.Cancel = true;
    cancel.Cancel();
};
return CliApp.Run(args, Console.Out, Console.Error, cancel.Token);
