"""Backend-agnostic drivers: data layouts, schedules, epochs and early stopping."""
