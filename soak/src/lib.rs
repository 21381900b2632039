//! Cross-process races and a soak workload with a checker (work in progress).
