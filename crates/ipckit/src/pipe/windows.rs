//! Named and anonymous pipes on Windows: the system's own (being written).
