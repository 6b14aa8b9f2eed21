namespace Ertas.Training;
