namespace Ertas.Data;

/// <summary>The JSON Lines shapes a dataset file may take; <see cref="Auto"/> detects it per file.</summary>
public enum DatasetFormat
{
    /// <summary>Detected from the keys of the file's first valid line.</summary>
    Auto,

    /// <summary><c>{"messages":[{"role":"system|user|assistant","content":"..."}]}</c></summary>
    Chat,

    /// <summary><c>{"conversations":[{"from":"system|human|gpt","value":"..."}]}</c></summary>
    ShareGpt,

    /// <summary><c>{"instruction":"...","input":"...","output":"..."}</c>, <c>input</c> optional.</summary>
    Alpaca,

    /// <summary><c>{"text":"..."}</c>: plain text, trained on every token.</summary>
    Completion,
}

/// <summary>What happens to an example whose templated ids do not fit in one sequence.</summary>
public enum LengthPolicy
{
    /// <summary>An error: nothing is trained until the example is shortened or removed.</summary>
    Error,

    /// <summary>The example is left out, with a warning.</summary>
    Drop,

    /// <summary>The example keeps its first <c>SequenceLength</c> ids, with a warning.</summary>
    Truncate,
}

/// <summary>What happens to an example identical to an earlier one (in any of the files).</summary>
public enum DuplicatePolicy
{
    /// <summary>Kept and trained again, with a warning naming the first occurrence.</summary>
    Warn,

    /// <summary>Left out, with a warning naming the first occurrence.</summary>
    Drop,

    /// <summary>An error naming the first occurrence.</summary>
    Error,
}

/// <summary>How examples are laid into fixed-length rows.</summary>
public enum PackingMode
{
    /// <summary>Each example goes into the first row (in creation order) with room for it: fewest rows.</summary>
    FirstFit,

    /// <summary>Examples fill rows in order; a new row starts when the next example does not fit.</summary>
    Sequential,

    /// <summary>One example per row, the rest padding.</summary>
    None,
}
