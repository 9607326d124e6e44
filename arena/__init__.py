"""A real-memory arena allocator modelled on Go's linear heap arena (Go 1.8 – 1.10)."""
