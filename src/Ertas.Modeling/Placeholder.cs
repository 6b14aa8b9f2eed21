namespace Ertas.Modeling;
