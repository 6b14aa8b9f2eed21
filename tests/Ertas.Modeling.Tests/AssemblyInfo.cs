// Tests here seed and draw from libtorch's process-wide random generator (manual_seed, dropout, init); test classes
// running in parallel would interleave their draws and make seeded results flaky.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
