// The parity and CLI tests load libtorch and llama.cpp models; one test class at a time keeps the seeded torch runs
// and the 2-core CI machine free of interleaved native work.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
