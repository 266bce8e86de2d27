//! Pipe calls (being written).
