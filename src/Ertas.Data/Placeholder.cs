namespace Ertas.Data;
