//! Mailslot calls (being written).
