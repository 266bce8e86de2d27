//! The shared map on Windows: a section, a named mutex and a change event (being written).
