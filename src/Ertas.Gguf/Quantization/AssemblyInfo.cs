using System.Runtime.CompilerServices;

// The tests compare the vector paths of the quantization helpers with their scalar transcriptions of ggml.
[assembly: InternalsVisibleTo("Ertas.Gguf.Tests")]
