"""Model repository (on-disk, versioned), registry (loaded, per process), runtimes."""
