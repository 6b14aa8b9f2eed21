namespace Ertas.Gguf;
