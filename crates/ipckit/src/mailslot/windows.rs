//! Mailslots on Windows: the system's own (being written).
