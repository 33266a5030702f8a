"""Musical measurements of recorded or generated notes, shared by tests, benchmarks and model cards."""
