// The integration tests run dotnet builds that train models: on 2 cores they must not run beside each other.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
